"""The module forms: :class:`PerceptualLoss` (training) and :class:`PerceptualMetric` (evaluation),
on one shared construction (:class:`_Perceptual`); see :mod:`lossnet.loss` for the formula."""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import torch
from torch import nn

from lossnet.distances import DISTANCES, Distance
from lossnet.errors import InputError
from lossnet.loss.presets import (
    DEFAULT_LAYER,
    DEFAULT_NET,
    _check_default_layer,
    _resolve_heads,
    _resolve_preset,
    check_heads_backbone,
)
from lossnet.loss.ranges import _apply_range, _parse_mode, _parse_range, _RangeState
from lossnet.weights import WeightsSpec

__all__ = ["PerceptualLoss", "PerceptualMetric", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum", "none")

Features = Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


def _layer_weight_values(layer_weights) -> list[float] | None:
    """``layer_weights`` as a list of floats (InputError for a scalar, a string, None entries ...)."""
    if layer_weights is None:
        return None
    if isinstance(layer_weights, (str, bytes)) or not hasattr(layer_weights, "__iter__"):
        raise InputError(
            f"layer_weights must be a sequence of numbers, one per layer, got {type(layer_weights).__name__}"
        )
    values = []
    for w in layer_weights:
        try:
            values.append(float(w))
        except (TypeError, ValueError, RuntimeError):  # None, a string, a tensor of several values
            raise InputError(f"layer_weights must be numbers, got {repr(w).splitlines()[0]}") from None
    return values


def _parse_layer_weights(layer_weights, layers: Sequence[str]) -> list[float] | None:
    """``layer_weights`` as floats, one per layer, finite and >= 0 (a NaN weight gives a NaN loss
    and a negative one a loss that training would drive to -inf; both are caught here, once)."""
    values = _layer_weight_values(layer_weights)
    if values is None:
        return None
    if len(values) != len(layers):
        raise InputError(f"{len(values)} layer weights for {len(layers)} layers ({', '.join(layers)})")
    if not all(math.isfinite(w) and w >= 0 for w in values):
        raise InputError(f"layer_weights must be finite and >= 0, got {values}")
    return values


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
        channels_last: bool | None = None,
        range_check: str = "error",
        normalize: str | None = None,
        transform_input: bool | None = None,
        loss_net_mode: str = "eval",
        heads=None,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__()
        from lossnet.network import LossNetwork

        self.input_range = _parse_range(input_range)
        self.range_check = _parse_mode(range_check)
        self._range_state = _RangeState()
        self.preset = preset
        self.lpips_version: str | None = None
        self.heads_label = "none"
        pooling, backbone = "max", None
        heads_backbone = (None, "")
        if isinstance(layers, str):
            layers = [n.strip() for n in layers.split(",") if n.strip()]
        if model is not None and (net is not None or preset is not None):
            raise InputError(f"pass model= or {'net' if net is not None else 'preset'}=, not both")
        if model is not None and layers is None and heads is None:
            raise InputError("model= needs layers=: FX node names or module paths of the module")
        if heads is not None:
            r = _resolve_heads(heads, preset, net, layers, distance, channel_weights, normalize, model)
            net, layers, distance, channel_weights, normalize = (
                r["net"],
                r["layers"],
                r["distance"],
                r["channel_weights"],
                r["normalize"],
            )
            self.heads_label = r["heads"]
            heads_backbone = (r["backbone_sha256"], r["where"])
        elif preset is not None:
            r = _resolve_preset(preset, net, layers, distance, channel_weights)
            net, layers, distance, channel_weights, pooling = (
                r["net"],
                r["layers"],
                r["distance"],
                r["channel_weights"],
                r["pooling"],
            )
            self.heads_label, self.lpips_version = r["heads"], r["lpips_version"]
            backbone = r.get("backbone")  # a preset's own trained backbone (ST-LPIPS)
        elif channel_weights is not None and any(w is not None for w in channel_weights):
            from lossnet.signature import tensors_digest

            self.heads_label = (
                "custom:"
                + tensors_digest({str(i): torch.as_tensor(w) for i, w in enumerate(channel_weights) if w is not None})[
                    :16
                ]
            )
        if layers is None and net:
            _check_default_layer(net)
        if model is not None:
            net = None
        else:
            net = net or DEFAULT_NET
        normalize = normalize or "imagenet"
        layers = list(layers) if layers is not None else [DEFAULT_LAYER]
        distance = distance or default_distance
        if distance not in DISTANCES:
            raise InputError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
        layer_weights = _parse_layer_weights(layer_weights, layers)
        own = backbone is not None and WeightsSpec.parse(weights).kind == "imagenet"
        self.network = LossNetwork(
            net,
            layers,
            weights=None if own else weights,
            weights_dir=weights_dir,
            transform_input=transform_input,
            model=model,
            normalize=normalize,
            loss_net_mode=loss_net_mode,
            pooling=pooling,
        )
        if own:  # the preset's backbone weights take the place of ImageNet's
            from lossnet.weights import load_into

            load_into(self.network.body, backbone[0], backbone[1])
            self.network.weights_spec, self.network.weights_source = WeightsSpec.parse(backbone[1]), backbone[1]
        check_heads_backbone(self.network, *heads_backbone)
        if channels_last is None:
            # NHWC everywhere except DISTS: its L2 pooling's 1/sqrt amplifies the NHWC kernels' other
            # rounding in the gradient (max |error| vs float64 ~9x NCHW's); NCHW matches dists-pytorch
            channels_last = preset not in ("dists", "adists")
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

    @property
    def signature(self) -> str:
        """Reproducibility signature of this configuration (:mod:`lossnet.signature`)."""
        from lossnet.signature import signature

        return signature(self)

    def extra_repr(self) -> str:
        extra = f", preset={self.preset!r}" if self.preset else ""
        return f"input_range={self.input_range}, range_check={self.range_check!r}{extra}"

    def _on_meta(self) -> bool:
        return self.network.mean.is_meta

    def _features(self, x: torch.Tensor, name: str = "input") -> list[torch.Tensor]:
        # One check per image: the range check (tensor, float, values), then the network's shape
        # check, which also repeats grey to RGB; the network then runs without checking again.
        x = _apply_range(x, self.input_range, name, self.range_check, self._range_state)
        if x.is_meta != self._on_meta():
            where = "a meta network (call .to('meta') first: it computes shapes only)" if x.is_meta else "real tensors"
            raise InputError(f"{name}: got a {'meta' if x.is_meta else x.device.type} tensor; this needs {where}")
        batched = x.ndim == 4
        x = self.network.prepare(x, dtype_checked=True)
        layout = torch.channels_last if self.channels_last and batched else None
        return list(self.network(x, prepared=True, memory_format=layout).values())

    def compare(
        self, feats_a: Features, feats_b: Features, *, mask: torch.Tensor | None = None, per_layer: bool = False
    ) -> torch.Tensor:
        """Distance between two feature lists (as returned by ``features``): ``(N,)``, or the
        ``(N, L)`` per-layer terms with ``per_layer``; ``mask`` weights positions (see ``forward``)."""
        fa, fb = _as_list(feats_a, len(self.layers)), _as_list(feats_b, len(self.layers))
        return self.distance(fa, fb, masks=mask, per_layer=per_layer)

    def compare_map(
        self, feats_a: Features, feats_b: Features, size: tuple[int, int], *, per_layer: bool = False
    ) -> torch.Tensor:
        """Spatial map ``(N, 1, *size)`` (``(N, L, *size)`` per layer) of two feature lists."""
        fa, fb = _as_list(feats_a, len(self.layers)), _as_list(feats_b, len(self.layers))
        return self.distance.map(fa, fb, size, per_layer=per_layer)


def _as_list(feats: Features, n_layers: int) -> list[torch.Tensor]:
    if isinstance(feats, torch.Tensor):
        raise InputError("expected a list/dict of per-layer feature tensors, got a single tensor")
    out = list(feats.values()) if isinstance(feats, Mapping) else list(feats)
    if len(out) != n_layers:
        raise InputError(f"got features of {len(out)} layers, the network has {n_layers}")
    return out


def _check_is_tensor(x, name: str) -> None:
    # isinstance only (no host sync, no graph break): a list or array must not get as far as
    # .device/.shape (AttributeError) or be taken for a list of per-layer features
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("a", "b")) -> None:
    _check_is_tensor(a, names[0])
    _check_is_tensor(b, names[1])
    if a.shape[-2:] != b.shape[-2:]:
        raise InputError(f"images differ in size: {tuple(a.shape)} vs {tuple(b.shape)} (resize them first)")


def _check_loss_inputs(pred, target) -> None:
    """``pred`` a tensor; ``target`` a tensor or per-layer feature tensors (a list/tuple/dict)."""
    _check_is_tensor(pred, "pred")
    if isinstance(target, torch.Tensor):
        return
    got = type(target).__name__
    if isinstance(target, (list, tuple, Mapping)):
        # precomputed features: one tensor per layer (a nested list of pixels is not that)
        for f in target.values() if isinstance(target, Mapping) else target:
            if not isinstance(f, torch.Tensor):
                break
        else:
            return
        got += f" of {type(f).__name__}"
    raise InputError(f"target: expected a torch.Tensor (or its features from target_features), got {got}")


class PerceptualLoss(_Perceptual):
    """Deep perceptual loss: distance between loss-network features of ``pred`` and ``target``.

    Args:
        net: torchvision architecture of the loss network (default ``"vgg16"``; taken from
            ``preset`` / ``heads`` when given).
        layers: extraction layers (E/S/M/L, aliases like ``"relu2_2"``, or FX nodes). Default
            ``("relu2_2",)`` (the preset's / heads file's when given); a net other than
            VGG16/VGG19 needs explicit layers (:class:`InputError` otherwise).
        distance: ``"mse"`` (default; Eq. 3 of Pihlgren et al.), ``"spatial"`` (Eq. 1 / LPIPS),
            ``"l1"``, ``"gram"``, ``"meanpool"`` or ``"dists"`` (:mod:`lossnet.distances`); the
            preset's when given. Explicit ``net``/``layers``/``distance`` that contradict ``preset``
            raise :class:`InputError`.
        layer_weights: per-layer factors :math:`\\lambda_l` (default 1), finite and >= 0, one per layer.
        reduction: ``"mean"`` | ``"sum"`` over the batch, or ``"none"`` for ``(N,)``.
        weights: ``"imagenet"``, ``None``/``"none"`` (random init) or a state-dict path
            (:meth:`lossnet.weights.WeightsSpec.parse`).
        weights_dir: folder with local ImageNet weights.
        input_range: ``(0, 1)`` (default) or ``(-1, 1)``; other values raise :class:`InputError`.
        preset: ``"lpips-alex"`` / ``"lpips-vgg"`` / ``"lpips-squeeze"`` to train with LPIPS,
            ``"dists"`` to train with DISTS.
        channel_weights: per-layer channel weights for ``distance="spatial"`` / ``"dists"``.
        heads: a heads file (:mod:`lossnet.heads`, e.g. from ``lossnet heads fit``): net, layers,
            normalisation and channel weights of a calibrated spatial distance are read from it;
            explicit ``net``/``layers``/``distance``/``normalize`` must agree with it.
        channels_last: run the network in NHWC memory format (faster oneDNN convolutions on CPU;
            results equal NCHW to float rounding). Inputs are converted; any layout is accepted.
            Default (None): True, except for the ``"dists"`` preset, which runs NCHW as
            dists-pytorch does (its gradients then match to ~1e-6).
        range_check: ``"clamp"`` (default), ``"error"``, ``"warn"`` or ``"off"`` (module docstring).
        normalize: ``"imagenet"`` (default; None means it; for ``timm:`` nets the statistics of the
            model's pretrained config), ``"none"`` or ``(mean, std)`` (:class:`~lossnet.network.LossNetwork`).
        model: your own ``nn.Module`` as the loss network instead of ``net`` (with ``layers`` = its
            FX node names or module paths); see :class:`~lossnet.network.LossNetwork`.
        transform_input: googlenet / inception_v3 only; None = torchvision's default for the weights.
        loss_net_mode: ``"eval"`` (default) or ``"train"`` (:class:`~lossnet.network.LossNetwork`).
        ensemble: None, or N (an int), a dict of :class:`lossnet.loss.ensemble.Ensemble` arguments or an
            ``Ensemble``: the loss is the mean over N seeded random transforms (shifts, flips, small
            scales, colour changes) applied identically to ``pred`` and ``target`` (E-LPIPS-style,
            differentiable; :mod:`lossnet.loss.ensemble`); ``target`` must then be an image.

    Shape:
        ``pred``: ``(N, C, H, W)`` with C in {1, 3}; ``target`` the same, or precomputed features
        from :meth:`target_features` (a list or dict of per-layer tensors). ``mask``: optional
        non-negative weights ``(N, 1, H, W)`` (or ``(1, 1, H, W)``) at the image size: every
        spatial mean becomes a weighted mean (:func:`lossnet.distances.layer_masks`). Output:
        scalar, or ``(N,)`` with ``reduction="none"``; with ``per_layer=True`` one more trailing
        dimension L (the terms that sum to the loss).

    An empty batch (N = 0) gives an empty ``(0,)`` result with ``reduction="none"``, 0 with
    ``"sum"``, and raises :class:`InputError` with ``"mean"`` (a mean over no samples).

    Example:
        >>> loss_fn = PerceptualLoss("vgg16", ["relu2_2"], weights=None)
        >>> loss = loss_fn(torch.rand(2, 3, 32, 32, requires_grad=True), torch.rand(2, 3, 32, 32))
    """

    def __init__(
        self,
        net: str | None = None,
        layers: Sequence[str] | str | None = None,
        distance: str | None = None,
        layer_weights: Sequence[float] | None = None,
        reduction: str = "mean",
        weights: WeightsSpec | str | os.PathLike | None = "imagenet",
        weights_dir: str | os.PathLike | None = None,
        input_range: Sequence[float] = (0, 1),
        preset: str | None = None,
        channel_weights: Sequence[torch.Tensor | None] | None = None,
        channels_last: bool | None = None,
        range_check: str = "clamp",
        normalize: str | None = None,
        transform_input: bool | None = None,
        loss_net_mode: str = "eval",
        heads: str | os.PathLike | None = None,
        ensemble=None,
        *,
        model: nn.Module | None = None,
    ) -> None:
        if reduction not in REDUCTIONS:
            raise InputError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        # net/layers/distance default to None (= vgg16, relu2_2, mse, resolved in _Perceptual) so that
        # an explicit value which contradicts a preset or heads file is told apart from the default
        super().__init__(
            net,
            layers,
            distance,
            layer_weights,
            weights,
            weights_dir,
            input_range,
            preset,
            channel_weights,
            "mse",
            channels_last,
            range_check,
            normalize,
            transform_input,
            loss_net_mode,
            heads,
            model,
        )
        self.reduction = reduction
        from lossnet.loss.ensemble import make_ensemble

        self.ensemble = make_ensemble(ensemble)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer features of ``x`` (autograd enabled: gradients flow to ``x``)."""
        return self._features(x, "pred")

    @torch.no_grad()
    def target_features(self, target: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer features of ``target`` without autograd; pass the result as ``target`` to
        reuse it across steps (e.g. a fixed style or content image)."""
        return [f.detach() for f in self._features(target, "target")]

    def _target(self, pred: torch.Tensor, target: torch.Tensor | Features) -> list[torch.Tensor]:
        _check_loss_inputs(pred, target)
        if isinstance(target, torch.Tensor):
            if target.shape[-2:] != pred.shape[-2:] and target.ndim == pred.ndim:
                raise InputError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in size")
            return self.target_features(target)
        return _as_list(target, len(self.layers))

    def _reduce(self, d: torch.Tensor) -> torch.Tensor:
        if self.reduction == "mean":
            if d.shape[0] == 0:
                raise InputError(
                    "empty batch (N = 0): the mean over no samples is undefined; "
                    "use reduction='sum' (gives 0) or 'none' (gives an empty tensor)"
                )
            return d.mean() if d.ndim == 1 else d.mean(0)
        if self.reduction == "sum":
            return d.sum() if d.ndim == 1 else d.sum(0)
        return d

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor | Features,
        *,
        mask: torch.Tensor | None = None,
        per_layer: bool = False,
    ) -> torch.Tensor:
        if self.ensemble is not None:
            _check_loss_inputs(pred, target)
            if not isinstance(target, torch.Tensor):
                raise InputError("ensemble= transforms both images: pass the target image, not precomputed features")
            return self._reduce(self.ensemble(self._single, pred, target, mask, per_layer))
        return self._reduce(self._single(pred, target, mask, per_layer))

    def _single(self, pred, target, mask=None, per_layer=False) -> torch.Tensor:
        ft = self._target(pred, target)
        if self.distance.name == "adists":  # its first argument is the reference: the target
            return self.compare(ft, self.features(pred), mask=mask, per_layer=per_layer)
        return self.compare(self.features(pred), ft, mask=mask, per_layer=per_layer)

    def spatial_map(
        self, pred: torch.Tensor, target: torch.Tensor | Features, *, per_layer: bool = False
    ) -> torch.Tensor:
        """Per-position distance ``(N, 1, H, W)`` at the size of ``pred`` (``(N, L, H, W)`` per
        layer), with gradients to ``pred``; only for the position-wise distances (spatial, mse, l1)."""
        ft = self._target(pred, target)
        return self.compare_map(self.features(pred), ft, tuple(pred.shape[-2:]), per_layer=per_layer)


class PerceptualMetric(_Perceptual):
    """Perceptual distance for evaluation (no gradients, ``torch.inference_mode``).

    Args:
        net: architecture (default ``"vgg16"``; taken from ``preset`` when given).
        layers: extraction layers (default ``("relu2_2",)``, a VGG16/VGG19 layer: other nets need
            explicit layers; the preset's when given).
        distance: a name in :data:`lossnet.distances.DISTANCES` (default ``"spatial"``).
        preset: ``None``, ``"lpips-alex"`` / ``"lpips-vgg"`` / ``"lpips-squeeze"`` (LPIPS v0.1:
            the lpips package's layers and linear heads; backbone weights from ``weights``), or
            ``"dists"`` (DISTS: VGG16 with L2 pooling and the dists-pytorch alpha/beta,
            :mod:`lossnet.dists_preset`).
        heads: a heads file (:mod:`lossnet.heads`): calibrated channel weights of the spatial
            distance with the net, layers and normalisation they were fitted for (explicit
            ``net``/``layers``/``distance``/``normalize`` must agree; not with ``preset``).
        weights, weights_dir, input_range, layer_weights, channel_weights, channels_last,
            normalize, transform_input, loss_net_mode: as :class:`PerceptualLoss`.
        range_check: ``"error"`` (default), ``"warn"``, ``"clamp"`` or ``"off"``.
        tile: evaluate large images exactly in ``tile x tile`` crops with a receptive-field halo
            (:mod:`lossnet.loss.tiled`: the same value as the whole image, the memory of one crop;
            ``tile`` a multiple of the network's total stride). Refused at construction where it
            cannot be exact (global pooling, attention, BatchNorm in train mode); not with masks;
            :meth:`spatial_map` and :meth:`features` still see the whole image.
        ensemble: as :class:`PerceptualLoss`: the value is the mean over N seeded transforms of both
            images (:func:`lossnet.loss.ensemble.ensemble_stats` gives mean and std); :meth:`spatial_map`
            is not ensembled.

    ``metric(a, b)`` returns ``(N,)``; ``metric(a, b, per_layer=True)`` the ``(N, L)`` per-layer
    terms; ``metric(a, b, mask=w)`` the masked distance (``w``: ``(N, 1, H, W)`` weights);
    :meth:`spatial_map` the ``(N, 1, H, W)`` map. For many comparisons against the same
    references, call :meth:`features` once per image batch and :meth:`compare` per pair. An empty
    batch gives an empty ``(0,)`` result.
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
        channels_last: bool | None = None,
        range_check: str = "error",
        normalize: str | None = None,
        transform_input: bool | None = None,
        loss_net_mode: str = "eval",
        heads: str | os.PathLike | None = None,
        tile: int | None = None,
        ensemble=None,
        *,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__(
            net,
            layers,
            distance,
            layer_weights,
            weights,
            weights_dir,
            input_range,
            preset,
            channel_weights,
            "spatial",
            channels_last,
            range_check,
            normalize,
            transform_input,
            loss_net_mode,
            heads,
            model,
        )
        self.tile = None
        if tile is not None:
            from lossnet.loss.tiled import tile_plan

            self._tile_plan = tile_plan(self, tile)
            self.tile = tile
        from lossnet.loss.ensemble import make_ensemble

        self.ensemble = make_ensemble(ensemble)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer features ``[(N, C_l, H_l, W_l), ...]`` of a batch ``x``."""
        with torch.inference_mode():
            return self._features(x)

    def compare(
        self, feats_a: Features, feats_b: Features, *, mask: torch.Tensor | None = None, per_layer: bool = False
    ) -> torch.Tensor:
        with torch.inference_mode():
            return super().compare(feats_a, feats_b, mask=mask, per_layer=per_layer)

    def compare_map(
        self, feats_a: Features, feats_b: Features, size: tuple[int, int], *, per_layer: bool = False
    ) -> torch.Tensor:
        with torch.inference_mode():
            return super().compare_map(feats_a, feats_b, size, per_layer=per_layer)

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, *, mask: torch.Tensor | None = None, per_layer: bool = False
    ) -> torch.Tensor:
        _check_pair(a, b)
        if self.ensemble is not None:
            with torch.inference_mode():
                return self.ensemble(self._single, a, b, mask, per_layer)
        return self._single(a, b, mask, per_layer)

    def _single(self, a, b, mask=None, per_layer=False) -> torch.Tensor:
        _check_pair(a, b)
        if self.tile is not None:
            if mask is not None:
                raise InputError("mask is not supported with tile= (evaluate masked distances on the whole image)")
            from lossnet.loss.tiled import tiled_distance

            with torch.inference_mode():
                return tiled_distance(self, a, b, self._tile_plan, per_layer=per_layer)
        return self.compare(self.features(a), self.features(b), mask=mask, per_layer=per_layer)

    def spatial_map(self, a: torch.Tensor, b: torch.Tensor, *, per_layer: bool = False) -> torch.Tensor:
        """Per-position distance ``(N, 1, H, W)`` at the input size (``(N, L, H, W)`` per layer).

        For the LPIPS presets this is lpips's ``LPIPS(spatial=True)`` output: every layer's
        channel-weighted squared difference of unit-normalised features, upsampled bilinearly
        (``align_corners=False``) to the input size, summed over layers. Only the position-wise
        distances (spatial, mse, l1) have a map.
        """
        _check_pair(a, b)
        return self.compare_map(self.features(a), self.features(b), tuple(a.shape[-2:]), per_layer=per_layer)
