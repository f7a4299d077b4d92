"""Deep perceptual loss and metric: a frozen :class:`~lossnet.network.LossNetwork` + a distance.

.. math:: \\mathcal{L}(\\hat y, y) = \\sum_l \\lambda_l \\, d_l(\\phi_l(\\hat y), \\phi_l(y))

:class:`PerceptualLoss` is the training loss (gradients to ``pred`` only; the target path runs
without autograd and its features can be precomputed once); :class:`PerceptualMetric` is the
evaluation form (``torch.inference_mode``; ``features`` / ``compare`` let a caller reuse reference
features); :func:`perceptual_distance` is the functional form with cached networks.

References:
    Johnson, Alahi, Fei-Fei. "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
    ECCV 2016.
    Pihlgren et al. "A Systematic Performance Analysis of Deep Perceptual Loss Networks", 2024.
    Zhang et al. "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import torch
from torch import nn

from lossnet.distances import DISTANCES, Distance
from lossnet.errors import InputError
from lossnet.weights import WeightsSpec

__all__ = ["PerceptualLoss", "PerceptualMetric", "perceptual_distance", "check_range", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum", "none")

#: Slack on the declared input range, so rounding (e.g. 8-bit decode, bilinear resize) never trips it.
RANGE_TOLERANCE = 1e-3

Features = Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


def _parse_range(input_range: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise InputError(f"input_range must be (0, 1) or (-1, 1), got {input_range!r}") from None
    if (lo, hi) not in ((0.0, 1.0), (-1.0, 1.0)):
        raise InputError(f"input_range must be (0, 1) or (-1, 1), got {input_range!r}")
    return lo, hi


def check_range(x: torch.Tensor, input_range: tuple[float, float] = (0.0, 1.0), name: str = "input") -> torch.Tensor:
    """Check ``x`` lies in ``input_range`` and map it to [0, 1].

    Raises:
        InputError: ``x`` is not a float tensor, or has values outside the range (the message says
            which range the values fit, e.g. ``pass input_range=(-1, 1)``).
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise InputError(f"{name}: expected a float tensor, got dtype {x.dtype} (convert with x.float() / 255)")
    lo, hi = input_range
    if x.numel():
        mn, mx = (float(v) for v in torch.aminmax(x.detach()))
        tol = RANGE_TOLERANCE * (hi - lo)
        if not (mn >= lo - tol and mx <= hi + tol):
            hint = ""
            if lo == 0.0 and mn >= -1.0 - tol and mx <= 1.0 + tol:
                hint = "; pass input_range=(-1, 1)"
            elif lo == -1.0 and mn >= -tol and mx > 1.0 + tol and mx <= 255.0 + tol:
                hint = "; 8-bit values? divide by 255 and use input_range=(0, 1)"
            elif lo == 0.0 and mn >= -tol and mx <= 255.0 + tol:
                hint = "; 8-bit values? divide by 255"
            raise InputError(
                f"{name}: values in [{mn:.4g}, {mx:.4g}] but input_range=({lo:g}, {hi:g}){hint}"
            )
    if lo == -1.0:
        x = (x + 1.0) * 0.5
    return x


class _Perceptual(nn.Module):
    """Shared construction of :class:`PerceptualLoss` and :class:`PerceptualMetric`."""

    def __init__(
        self,
        net: str | None,
        layers: Sequence[str] | str | None,
        distance: str | None,
        layer_weights: Sequence[float] | None,
        weights: WeightsSpec | str | os.PathLike | None,
        weights_dir: str | os.PathLike | None,
        input_range: Sequence[float],
        preset: str | None,
        channel_weights: Sequence[torch.Tensor | None] | None,
        default_distance: str,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        from lossnet.network import LossNetwork
        from lossnet.registry import resolve_layers

        self.input_range = _parse_range(input_range)
        self.preset = preset
        self.lpips_version: str | None = None
        if isinstance(layers, str):
            layers = [n.strip() for n in layers.split(",") if n.strip()]
        if preset is not None:
            from lossnet.lpips_presets import get_preset, lpips_heads, lpips_version

            p = get_preset(preset)
            if net is not None and net != p.arch:
                raise InputError(f"preset {preset!r} uses {p.arch}, not net={net!r}")
            if layers is not None and list(resolve_layers(p.arch, list(layers))) != list(p.layers):
                raise InputError(f"preset {preset!r} uses layers {', '.join(p.layers)}, not {', '.join(layers)}")
            if distance not in (None, "spatial"):
                raise InputError(f"preset {preset!r} uses the 'spatial' distance, not {distance!r}")
            if channel_weights is not None:
                raise InputError(f"preset {preset!r} brings its own channel weights; do not pass channel_weights")
            net, distance = p.arch, "spatial"
            layers = list(layers) if layers is not None else list(p.layers)
            channel_weights = lpips_heads(p)
            self.lpips_version = lpips_version()
        net = net or "vgg16"
        layers = list(layers) if layers is not None else ["relu2_2"]
        distance = distance or default_distance
        if distance not in DISTANCES:
            raise InputError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
        if layer_weights is not None and len(layer_weights) != len(layers):
            raise InputError(f"{len(layer_weights)} layer weights for {len(layers)} layers ({', '.join(layers)})")
        self.network = LossNetwork(net, layers, weights=weights, weights_dir=weights_dir)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            # oneDNN's CPU convolutions run ~1.3-1.5x faster in NHWC, forward and backward
            self.network.to(memory_format=torch.channels_last)
        self.distance = Distance(distance, layer_weights, channel_weights)

    @property
    def net(self) -> str:
        return self.network.arch

    @property
    def layers(self) -> tuple[str, ...]:
        return self.network.layers

    def extra_repr(self) -> str:
        extra = f", preset={self.preset!r}" if self.preset else ""
        return f"input_range={self.input_range}{extra}"

    def _features(self, x: torch.Tensor, name: str = "input") -> list[torch.Tensor]:
        # One check per image: check_range (tensor, float, value range), then the network's shape
        # check, which also repeats grey to RGB; the network then runs without checking again.
        x = check_range(x, self.input_range, name)
        batched = x.ndim == 4
        x = self.network.prepare(x, dtype_checked=True)
        if self.channels_last and batched:
            x = x.contiguous(memory_format=torch.channels_last)
        return list(self.network(x, prepared=True).values())

    def compare(self, feats_a: Features, feats_b: Features) -> torch.Tensor:
        """Distance between two feature lists (as returned by ``features``): ``(N,)``."""
        return self.distance(_as_list(feats_a, len(self.layers)), _as_list(feats_b, len(self.layers)))


def _as_list(feats: Features, n_layers: int) -> list[torch.Tensor]:
    if isinstance(feats, torch.Tensor):
        raise InputError("expected a list/dict of per-layer feature tensors, got a single tensor")
    out = list(feats.values()) if isinstance(feats, Mapping) else list(feats)
    if len(out) != n_layers:
        raise InputError(f"got features of {len(out)} layers, the network has {n_layers}")
    return out


class PerceptualLoss(_Perceptual):
    """Deep perceptual loss: distance between loss-network features of ``pred`` and ``target``.

    Args:
        net: torchvision architecture of the loss network.
        layers: extraction layers (E/S/M/L, aliases like ``"relu2_2"``, or FX nodes).
        distance: ``"mse"`` (Eq. 3 of Pihlgren et al.), ``"spatial"`` (Eq. 1 / LPIPS), ``"l1"``,
            ``"gram"`` or ``"meanpool"`` (:mod:`lossnet.distances`).
        layer_weights: per-layer factors :math:`\\lambda_l` (default 1).
        reduction: ``"mean"`` | ``"sum"`` over the batch, or ``"none"`` for ``(N,)``.
        weights: ``"imagenet"``, ``None``/``"none"`` (random init) or a state-dict path
            (:meth:`lossnet.weights.WeightsSpec.parse`).
        weights_dir: folder with local ImageNet weights.
        input_range: ``(0, 1)`` (default) or ``(-1, 1)``; other values raise :class:`InputError`.
        preset: ``"lpips-alex"`` / ``"lpips-vgg"`` / ``"lpips-squeeze"`` to train with LPIPS.
        channel_weights: per-layer channel weights for ``distance="spatial"``.
        channels_last: run the network in NHWC memory format (faster oneDNN convolutions on CPU;
            results equal NCHW to float rounding). Inputs are converted; any layout is accepted.

    Shape:
        ``pred``: ``(N, C, H, W)`` with C in {1, 3}; ``target`` the same, or precomputed features
        from :meth:`target_features` (a list or dict of per-layer tensors). Output: scalar, or
        ``(N,)`` with ``reduction="none"``.

    Example:
        >>> loss_fn = PerceptualLoss("vgg16", ["relu2_2"], weights=None)
        >>> loss = loss_fn(torch.rand(2, 3, 32, 32, requires_grad=True), torch.rand(2, 3, 32, 32))
    """

    def __init__(
        self,
        net: str = "vgg16",
        layers: Sequence[str] | str = ("relu2_2",),
        distance: str = "mse",
        layer_weights: Sequence[float] | None = None,
        reduction: str = "mean",
        weights: WeightsSpec | str | os.PathLike | None = "imagenet",
        weights_dir: str | os.PathLike | None = None,
        input_range: Sequence[float] = (0, 1),
        preset: str | None = None,
        channel_weights: Sequence[torch.Tensor | None] | None = None,
        channels_last: bool = True,
    ) -> None:
        if reduction not in REDUCTIONS:
            raise InputError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        if preset is not None:
            # A preset fixes net, layers and distance; the class defaults must not contradict it.
            net = None if net == "vgg16" else net
            names = [n.strip() for n in layers.split(",")] if isinstance(layers, str) else list(layers)
            layers = None if names == ["relu2_2"] else names
            distance = None if distance == "mse" else distance
        super().__init__(net, layers, distance, layer_weights, weights, weights_dir, input_range, preset, channel_weights, "mse",
                         channels_last)
        self.reduction = reduction

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer features of ``x`` (autograd enabled: gradients flow to ``x``)."""
        return self._features(x, "pred")

    @torch.no_grad()
    def target_features(self, target: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer features of ``target`` without autograd; pass the result as ``target`` to
        reuse it across steps (e.g. a fixed style or content image)."""
        return [f.detach() for f in self._features(target, "target")]

    def forward(self, pred: torch.Tensor, target: torch.Tensor | Features) -> torch.Tensor:
        if isinstance(target, torch.Tensor):
            if target.shape[-2:] != pred.shape[-2:] and target.ndim == pred.ndim:
                raise InputError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in size")
            ft = self.target_features(target)
        else:
            ft = _as_list(target, len(self.layers))
        d = self.compare(self.features(pred), ft)
        if self.reduction == "mean":
            return d.mean()
        if self.reduction == "sum":
            return d.sum()
        return d


class PerceptualMetric(_Perceptual):
    """Perceptual distance for evaluation (no gradients, ``torch.inference_mode``).

    Args:
        net: architecture (default ``"vgg16"``; taken from ``preset`` when given).
        layers: extraction layers (default ``("relu2_2",)``; the preset's when given).
        distance: a name in :data:`lossnet.distances.DISTANCES` (default ``"spatial"``).
        preset: ``None`` or ``"lpips-alex"`` / ``"lpips-vgg"`` / ``"lpips-squeeze"`` (LPIPS v0.1:
            the lpips package's layers and linear heads; backbone weights from ``weights``).
        weights, weights_dir, input_range, layer_weights, channel_weights, channels_last: as
            :class:`PerceptualLoss`.

    ``metric(a, b)`` returns ``(N,)``. For many comparisons against the same references, call
    :meth:`features` once per image batch and :meth:`compare` per pair.
    """

    def __init__(
        self,
        net: str | None = None,
        layers: Sequence[str] | str | None = None,
        distance: str | None = None,
        preset: str | None = None,
        weights: WeightsSpec | str | os.PathLike | None = "imagenet",
        weights_dir: str | os.PathLike | None = None,
        input_range: Sequence[float] = (0, 1),
        layer_weights: Sequence[float] | None = None,
        channel_weights: Sequence[torch.Tensor | None] | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__(net, layers, distance, layer_weights, weights, weights_dir, input_range, preset, channel_weights, "spatial",
                         channels_last)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer features ``[(N, C_l, H_l, W_l), ...]`` of a batch ``x``."""
        with torch.inference_mode():
            return self._features(x)

    def compare(self, feats_a: Features, feats_b: Features) -> torch.Tensor:
        with torch.inference_mode():
            return super().compare(feats_a, feats_b)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape[-2:] != b.shape[-2:]:
            raise InputError(f"images differ in size: {tuple(a.shape)} vs {tuple(b.shape)} (resize them first)")
        return self.compare(self.features(a), self.features(b))


_CACHE: dict[tuple, _Perceptual] = {}
_CACHE_SIZE = 4


def _cached_metric(key: tuple, **kwargs) -> PerceptualMetric:
    m = _CACHE.pop(key, None)
    if m is None:
        m = PerceptualMetric(**kwargs)
        while len(_CACHE) >= _CACHE_SIZE:  # least recently used goes first
            _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = m
    return m


def perceptual_distance(
    a: torch.Tensor,
    b: torch.Tensor,
    net: str | None = None,
    layers: Sequence[str] | str | None = None,
    distance: str | None = None,
    preset: str | None = None,
    weights: WeightsSpec | str | os.PathLike | None = "imagenet",
    weights_dir: str | os.PathLike | None = None,
    input_range: Sequence[float] = (0, 1),
    layer_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Perceptual distance between image batches ``a`` and ``b``: ``(N,)``.

    The network is built once per argument combination and cached (the last few are kept).
    Gradients flow to ``a`` and ``b`` when autograd is enabled.

    Args:
        a, b: ``(N, C, H, W)`` images in ``input_range``.
        net, layers, distance, preset, weights, weights_dir, input_range, layer_weights:
            as :class:`PerceptualMetric`.

    Returns:
        ``(N,)`` distances.
    """
    layers_key = tuple(layers.split(",")) if isinstance(layers, str) else (None if layers is None else tuple(layers))
    weights = WeightsSpec.parse(weights, check=False)  # the file is checked when the network is built
    key = (net, layers_key, distance, preset, weights.label, str(weights_dir), tuple(input_range),
           None if layer_weights is None else tuple(layer_weights))
    m = _cached_metric(key, net=net, layers=layers_key, distance=distance, preset=preset, weights=weights,
                       weights_dir=weights_dir, input_range=input_range, layer_weights=layer_weights)
    m = m.to(a.device)
    if a.shape[-2:] != b.shape[-2:]:
        raise InputError(f"images differ in size: {tuple(a.shape)} vs {tuple(b.shape)} (resize them first)")
    return _Perceptual.compare(m, m._features(a, "a"), m._features(b, "b"))
