"""Deep perceptual loss and metric: a frozen :class:`~lossnet.network.LossNetwork` + a distance.

.. math:: \\mathcal{L}(\\hat y, y) = \\sum_l \\lambda_l \\, d_l(\\phi_l(\\hat y), \\phi_l(y))

:class:`PerceptualLoss` is the training loss (gradients to ``pred`` only; the target path runs
without autograd and its features can be precomputed once); :class:`PerceptualMetric` is the
evaluation form (``torch.inference_mode``; ``features`` / ``compare`` let a caller reuse reference
features); :func:`perceptual_distance` is the functional form with cached networks.

Both give per-layer values (``per_layer=True``), masked values (``mask=``: spatial weights
``(N, 1, H, W)``), spatial distance maps (:meth:`~PerceptualMetric.spatial_map`, ``(N, 1, H, W)``
at the input size, equal to lpips's ``spatial=True``) and a reproducibility :attr:`signature`.

Input range checking (``range_check``):

- ``"error"``: values outside (beyond a 0.1 % tolerance) raise :class:`InputError` naming the
  range they fit; one host sync per image.
- ``"warn"``: one :class:`RangeWarning`, values used as they are; one host sync per image until it
  has warned, none afterwards.
- ``"clamp"``: values clamped into ``input_range``; the first batch of ``pred`` and of ``target``
  is inspected once and a warning says when it overshoots by more than 5 % (a wrong
  ``input_range``?); no host sync after that.
- ``"off"``: values used as they are; no host sync.

NaN/Inf raise in every mode ("contains NaN/Inf"): an :class:`InputError` (CPU, eager), or, where a
check would need a host sync (accelerators, ``torch.compile``), an asynchronous device assertion
(``torch._assert_async``) that fails the step when it reaches the host. Inside ``torch.compile``
the ``"error"`` mode's range test is such an assertion too (a ``RuntimeError`` without the value
range in its message), so ``error``, ``clamp`` and ``off`` compile without graph breaks; ``warn``
needs the host (one clean break per image until it has warned). Defaults:
:class:`PerceptualMetric` / :func:`perceptual_distance` ``"error"`` (a metric checks strictly);
:class:`PerceptualLoss` ``"clamp"`` (a training loss must not kill a run over a 1 % overshoot of an
unclamped generator output, costs no sync per step and compiles without graph breaks; clamping
gives overshooting pixels no gradient from this loss, exactly as clamping the output would).

References:
    Johnson, Alahi, Fei-Fei. "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
    ECCV 2016.
    Pihlgren et al. "A Systematic Performance Analysis of Deep Perceptual Loss Networks", 2024.
    Zhang et al. "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from lossnet.distances import DISTANCES, Distance
from lossnet.errors import InputError
from lossnet.weights import WeightsSpec

__all__ = ["PerceptualLoss", "PerceptualMetric", "perceptual_distance", "check_range", "REDUCTIONS", "RANGE_CHECKS",
           "RangeWarning"]

REDUCTIONS = ("mean", "sum", "none")
#: ``range_check`` modes (see the module docstring).
RANGE_CHECKS = ("error", "warn", "clamp", "off")

#: Slack on the declared input range, so rounding (e.g. 8-bit decode, bilinear resize) never trips it.
RANGE_TOLERANCE = 1e-3
#: ``range_check="clamp"`` warns (first batch only) when values overshoot by more than this fraction
#: of the range: a generator's few-percent overshoot is clamped silently, [-1, 1] or 0..255 data is not.
CLAMP_WARN_MARGIN = 0.05

Features = Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


class RangeWarning(UserWarning):
    """Input values outside the declared ``input_range`` (``range_check="warn"`` / ``"clamp"``)."""


def _parse_range(input_range: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise InputError(f"input_range must be (0, 1) or (-1, 1), got {input_range!r}") from None
    if (lo, hi) not in ((0.0, 1.0), (-1.0, 1.0)):
        raise InputError(f"input_range must be (0, 1) or (-1, 1), got {input_range!r}")
    return lo, hi


def _parse_mode(mode: str) -> str:
    if mode not in RANGE_CHECKS:
        raise InputError(f"range_check must be one of {', '.join(RANGE_CHECKS)}, got {mode!r}")
    return mode


def _check_tensor(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise InputError(f"{name}: expected a float tensor, got dtype {x.dtype} (convert with x.float() / 255)")


def _nonfinite_message(x: torch.Tensor, name: str) -> str:
    n_nan = int(torch.isnan(x).sum())
    n_inf = int(torch.isinf(x).sum())
    return f"{name}: contains NaN/Inf ({n_nan} NaN, {n_inf} Inf of {x.numel()} values)"


def _assert_finite(x: torch.Tensor, name: str) -> None:
    """NaN/Inf raise; without a host sync where one would be needed (accelerators, torch.compile)."""
    if x.is_meta or x.numel() == 0:
        return
    if x.device.type == "cpu" and not torch.compiler.is_compiling():
        # one reduction pass (NaN/Inf propagate into the sum) instead of isfinite's four; only a
        # non-finite sum (NaN/Inf, or an overflow of huge finite values) pays for the exact test
        if not math.isfinite(float(x.detach().sum(dtype=torch.float32))) and not bool(torch.isfinite(x).all()):
            raise InputError(_nonfinite_message(x, name))
    else:
        torch._assert_async(torch.isfinite(x).all(), f"{name}: contains NaN/Inf")


@torch.compiler.disable  # a host check: under torch.compile one clean graph break per image, not a failed trace
def _range_message(x: torch.Tensor, input_range: tuple[float, float], name: str,
                   tolerance: float = RANGE_TOLERANCE) -> str | None:
    """None when ``x`` is within ``input_range`` (plus ``tolerance`` of its width); else the message.
    One host sync; raises :class:`InputError` for NaN/Inf."""
    lo, hi = input_range
    mn, mx = torch.stack(torch.aminmax(x.detach())).float().tolist()
    if not (math.isfinite(mn) and math.isfinite(mx)):
        raise InputError(_nonfinite_message(x, name))
    tol = tolerance * (hi - lo)
    if mn >= lo - tol and mx <= hi + tol:
        return None
    hint = ""
    if lo == 0.0 and mn >= -1.0 - tol and mx <= 1.0 + tol:
        hint = "; pass input_range=(-1, 1)"
    elif lo == -1.0 and mn >= -tol and mx > 1.0 + tol and mx <= 255.0 + tol:
        hint = "; 8-bit values? divide by 255 and use input_range=(0, 1)"
    elif lo == 0.0 and mn >= -tol and mx <= 255.0 + tol:
        hint = "; 8-bit values? divide by 255"
    return f"{name}: values in [{mn:.4g}, {mx:.4g}] but input_range=({lo:g}, {hi:g}){hint}"


def check_range(
    x: torch.Tensor,
    input_range: tuple[float, float] = (0.0, 1.0),
    name: str = "input",
    mode: str = "error",
) -> torch.Tensor:
    """Check ``x`` against ``input_range`` as ``mode`` says and map it to [0, 1].

    Args:
        mode: ``"error"`` (raise), ``"warn"`` (warn, use as is), ``"clamp"`` (clamp into the range)
            or ``"off"``. NaN/Inf raise in every mode. This stateless form warns on every call in
            ``"warn"`` mode; the modules warn once.

    Raises:
        InputError: ``x`` is not a float tensor, contains NaN/Inf ("contains NaN/Inf"), or (mode
            ``"error"``) has values outside the range (the message says which range the values
            fit, e.g. ``pass input_range=(-1, 1)``).
    """
    return _apply_range(x, input_range, name, _parse_mode(mode), None)


class _RangeState:
    __slots__ = ("warned", "inspected")

    def __init__(self) -> None:
        self.warned = False
        self.inspected: set[str] = set()  # the image names ("pred", "target") whose first batch was inspected


def _apply_range(x: torch.Tensor, input_range: tuple[float, float], name: str, mode: str,
                 state: _RangeState | None) -> torch.Tensor:
    _check_tensor(x, name)
    lo, hi = input_range
    checkable = x.numel() > 0 and not x.is_meta
    if mode == "error" and checkable and torch.compiler.is_compiling():
        # inside a compiled graph: the same test as a device assertion (no graph break, no host sync)
        tol = RANGE_TOLERANCE * (hi - lo)
        ok = torch.isfinite(x).all() & (x >= lo - tol).all() & (x <= hi + tol).all()
        torch._assert_async(ok, f"{name}: contains NaN/Inf or values outside input_range=({lo:g}, {hi:g})")
    elif mode == "error" or (mode == "warn" and not (state is not None and state.warned)):
        if checkable:
            msg = _range_message(x, input_range, name)
            if msg is not None:
                if mode == "error":
                    raise InputError(msg)
                warnings.warn(f"{msg} (range_check='warn': values are used as they are; warned once)", RangeWarning,
                              stacklevel=4)
                if state is not None:
                    state.warned = True
    elif mode == "clamp":
        if state is not None and name not in state.inspected and checkable and not torch.compiler.is_compiling():
            # one look at the first batch: a clamp must not silently hide a wrong input_range
            state.inspected.add(name)
            msg = _range_message(x, input_range, name, CLAMP_WARN_MARGIN)
            if msg is not None:
                warnings.warn(f"{msg} (range_check='clamp': values are clamped; only the first batch is inspected)",
                              RangeWarning, stacklevel=4)
        else:
            _assert_finite(x, name)
        x = x.clamp(lo, hi)
    else:  # "off", or "warn" after its warning
        _assert_finite(x, name)
    if lo == -1.0:
        x = (x + 1.0) * 0.5
    return x


#: The network and layer used when neither a preset, a heads file, ``net`` nor ``layers`` is given.
DEFAULT_NET = "vgg16"
DEFAULT_LAYER = "relu2_2"


def _check_default_layer(net: str) -> None:
    """``net`` given without ``layers``: the default layer relu2_2 is a VGG alias (vgg16/vgg19, not
    vgg11/vgg13), so for other nets say that no layers were given rather than let the registry
    complain about a layer the caller never named."""
    from lossnet.registry import get_spec

    spec = get_spec(net)  # an unknown net raises its own error here
    if DEFAULT_LAYER in spec.aliases:
        return
    points = f"layers='E'/'S'/'M'/'L' ({net}'s extraction points, see lossnet.registry) or " if spec.layers else ""
    raise InputError(f"no layers given for net={net!r}, and the default layer {DEFAULT_LAYER} exists only in VGG16/VGG19; "
                     f"pass {points}layers=<node name> ('lossnet nets show {net} --nodes' lists them)")


def _layer_weight_values(layer_weights) -> list[float] | None:
    """``layer_weights`` as a list of floats (InputError for a scalar, a string, None entries ...)."""
    if layer_weights is None:
        return None
    if isinstance(layer_weights, (str, bytes)) or not hasattr(layer_weights, "__iter__"):
        raise InputError(f"layer_weights must be a sequence of numbers, one per layer, got {type(layer_weights).__name__}")
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


def _resolve_preset(preset: str, net, layers, distance, channel_weights) -> dict:
    """The network/layers/distance/heads a preset fixes (errors when the arguments contradict it)."""
    from lossnet.dists_preset import DISTS_ARCH, DISTS_LAYERS, DISTS_PRESET, dists_channel_weights, dists_version
    from lossnet.lpips_presets import PRESETS, get_preset, lpips_heads
    from lossnet.registry import resolve_layers

    if preset == DISTS_PRESET:
        arch, p_layers, p_distance, pooling = DISTS_ARCH, DISTS_LAYERS, "dists", "l2"
    elif preset not in PRESETS:
        # get_preset's own message lists the LPIPS presets only; "dists" is accepted here too
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join([*PRESETS, DISTS_PRESET])}")
    else:
        p = get_preset(preset)
        arch, p_layers, p_distance, pooling = p.arch, p.layers, "spatial", "max"
    if net is not None and net != arch:
        raise InputError(f"preset {preset!r} uses {arch}, not net={net!r}")
    if layers is not None and list(resolve_layers(arch, list(layers))) != list(p_layers):
        raise InputError(f"preset {preset!r} uses layers {', '.join(p_layers)}, not {', '.join(layers)}")
    if distance not in (None, p_distance):
        raise InputError(f"preset {preset!r} uses the {p_distance!r} distance, not {distance!r}")
    if channel_weights is not None:
        raise InputError(f"preset {preset!r} brings its own channel weights; do not pass channel_weights")
    if preset == DISTS_PRESET:
        return dict(net=arch, layers=list(layers) if layers is not None else list(p_layers), distance=p_distance,
                    channel_weights=dists_channel_weights(), pooling=pooling, heads=f"dists-{dists_version()}",
                    lpips_version=None)
    from lossnet.lpips_presets import lpips_version

    version = lpips_version()
    return dict(net=arch, layers=list(layers) if layers is not None else list(p_layers), distance=p_distance,
                channel_weights=lpips_heads(p), pooling=pooling, heads="lpips-v0.1", lpips_version=version)


def _resolve_heads(heads, preset, net, layers, distance, channel_weights, normalize) -> dict:
    """The network/layers/normalisation/channel weights a heads file fixes (errors when the
    arguments contradict it). ``heads``: a path or a :class:`lossnet.heads.Heads`."""
    from lossnet.heads.file import Heads, heads_digest, load_heads
    from lossnet.registry import get_spec, resolve_layers

    if isinstance(heads, Heads):
        h, where = heads, "heads"
        from lossnet.signature import tensors_digest

        label = "custom:" + tensors_digest({str(i): w for i, w in enumerate(h.weights)})[:16]
    else:
        h, where = load_heads(heads), f"heads file {os.fspath(heads)}"
        label = "file:" + heads_digest(heads)[:16]
    if preset is not None:
        raise InputError(f"pass either preset={preset!r} or heads=, not both")
    if channel_weights is not None:
        raise InputError(f"{where} brings its own channel weights; do not pass channel_weights")
    if net is not None and get_spec(net).name != get_spec(h.net).name:
        raise InputError(f"{where} is for net {h.net}, not net={net!r}")
    if layers is not None and list(resolve_layers(h.net, list(layers))) != list(resolve_layers(h.net, list(h.layers))):
        raise InputError(f"{where} is for layers {','.join(h.layers)}, not {','.join(layers)}")
    if distance not in (None, "spatial"):
        raise InputError(f"{where} calibrates the 'spatial' distance, not {distance!r}")
    if normalize not in (None, h.normalize):
        raise InputError(f"{where} was fitted with normalize={h.normalize!r}, not {normalize!r}")
    return dict(net=h.net, layers=list(h.layers), distance="spatial", channel_weights=[w.clone() for w in h.weights],
                normalize=h.normalize, heads=label)


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
    ) -> None:
        super().__init__()
        from lossnet.network import LossNetwork

        self.input_range = _parse_range(input_range)
        self.range_check = _parse_mode(range_check)
        self._range_state = _RangeState()
        self.preset = preset
        self.lpips_version: str | None = None
        self.heads_label = "none"
        pooling = "max"
        if isinstance(layers, str):
            layers = [n.strip() for n in layers.split(",") if n.strip()]
        if heads is not None:
            r = _resolve_heads(heads, preset, net, layers, distance, channel_weights, normalize)
            net, layers, distance, channel_weights, normalize = r["net"], r["layers"], r["distance"], r["channel_weights"], r["normalize"]
            self.heads_label = r["heads"]
        elif preset is not None:
            r = _resolve_preset(preset, net, layers, distance, channel_weights)
            net, layers, distance, channel_weights, pooling = r["net"], r["layers"], r["distance"], r["channel_weights"], r["pooling"]
            self.heads_label, self.lpips_version = r["heads"], r["lpips_version"]
        elif channel_weights is not None and any(w is not None for w in channel_weights):
            from lossnet.signature import tensors_digest

            self.heads_label = "custom:" + tensors_digest({str(i): torch.as_tensor(w) for i, w in enumerate(channel_weights)
                                                            if w is not None})[:16]
        if layers is None and net:
            _check_default_layer(net)
        net = net or DEFAULT_NET
        normalize = normalize or "imagenet"
        layers = list(layers) if layers is not None else [DEFAULT_LAYER]
        distance = distance or default_distance
        if distance not in DISTANCES:
            raise InputError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
        layer_weights = _parse_layer_weights(layer_weights, layers)
        self.network = LossNetwork(net, layers, weights=weights, weights_dir=weights_dir, transform_input=transform_input,
                                   normalize=normalize, loss_net_mode=loss_net_mode, pooling=pooling)
        if channels_last is None:
            # NHWC everywhere except DISTS: its L2 pooling's 1/sqrt amplifies the NHWC kernels' other
            # rounding in the gradient (max |error| vs float64 ~9x NCHW's); NCHW matches dists-pytorch
            channels_last = preset != "dists"
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

    def compare(self, feats_a: Features, feats_b: Features, *, mask: torch.Tensor | None = None,
                per_layer: bool = False) -> torch.Tensor:
        """Distance between two feature lists (as returned by ``features``): ``(N,)``, or the
        ``(N, L)`` per-layer terms with ``per_layer``; ``mask`` weights positions (see ``forward``)."""
        fa, fb = _as_list(feats_a, len(self.layers)), _as_list(feats_b, len(self.layers))
        return self.distance(fa, fb, masks=mask, per_layer=per_layer)

    def compare_map(self, feats_a: Features, feats_b: Features, size: tuple[int, int], *,
                    per_layer: bool = False) -> torch.Tensor:
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
        for f in (target.values() if isinstance(target, Mapping) else target):
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
        normalize: ``"imagenet"`` (default; None means it) or ``"none"`` (:class:`~lossnet.network.LossNetwork`).
        transform_input: googlenet / inception_v3 only; None = torchvision's default for the weights.
        loss_net_mode: ``"eval"`` (default) or ``"train"`` (:class:`~lossnet.network.LossNetwork`).

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
    ) -> None:
        if reduction not in REDUCTIONS:
            raise InputError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        # net/layers/distance default to None (= vgg16, relu2_2, mse, resolved in _Perceptual) so that
        # an explicit value which contradicts a preset or heads file is told apart from the default
        super().__init__(net, layers, distance, layer_weights, weights, weights_dir, input_range, preset, channel_weights, "mse",
                         channels_last, range_check, normalize, transform_input, loss_net_mode, heads)
        self.reduction = reduction

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
                raise InputError("empty batch (N = 0): the mean over no samples is undefined; "
                                 "use reduction='sum' (gives 0) or 'none' (gives an empty tensor)")
            return d.mean() if d.ndim == 1 else d.mean(0)
        if self.reduction == "sum":
            return d.sum() if d.ndim == 1 else d.sum(0)
        return d

    def forward(self, pred: torch.Tensor, target: torch.Tensor | Features, *, mask: torch.Tensor | None = None,
                per_layer: bool = False) -> torch.Tensor:
        ft = self._target(pred, target)
        d = self.compare(self.features(pred), ft, mask=mask, per_layer=per_layer)
        return self._reduce(d)

    def spatial_map(self, pred: torch.Tensor, target: torch.Tensor | Features, *, per_layer: bool = False) -> torch.Tensor:
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
    ) -> None:
        super().__init__(net, layers, distance, layer_weights, weights, weights_dir, input_range, preset, channel_weights, "spatial",
                         channels_last, range_check, normalize, transform_input, loss_net_mode, heads)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer features ``[(N, C_l, H_l, W_l), ...]`` of a batch ``x``."""
        with torch.inference_mode():
            return self._features(x)

    def compare(self, feats_a: Features, feats_b: Features, *, mask: torch.Tensor | None = None,
                per_layer: bool = False) -> torch.Tensor:
        with torch.inference_mode():
            return super().compare(feats_a, feats_b, mask=mask, per_layer=per_layer)

    def compare_map(self, feats_a: Features, feats_b: Features, size: tuple[int, int], *,
                    per_layer: bool = False) -> torch.Tensor:
        with torch.inference_mode():
            return super().compare_map(feats_a, feats_b, size, per_layer=per_layer)

    def forward(self, a: torch.Tensor, b: torch.Tensor, *, mask: torch.Tensor | None = None,
                per_layer: bool = False) -> torch.Tensor:
        _check_pair(a, b)
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


_CACHE: dict[tuple, _Perceptual] = {}
_CACHE_SIZE = 4


def _file_identity(path: str | os.PathLike | None) -> tuple | None:
    """``(resolved path, size, mtime_ns)`` of a file, so a cache keyed on it misses when the file
    changes; a missing file keys by its path alone (building the metric then reports it)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError:
        return (str(p),)
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


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
    *,
    range_check: str = "error",
    mask: torch.Tensor | None = None,
    per_layer: bool = False,
    spatial: bool = False,
    heads: str | os.PathLike | None = None,
) -> torch.Tensor:
    """Perceptual distance between image batches ``a`` and ``b``: ``(N,)``.

    The network is built once per argument combination and cached (the last few are kept).
    Gradients flow to ``a`` and ``b`` when autograd is enabled.

    Args:
        a, b: ``(N, C, H, W)`` images in ``input_range``.
        net, layers, distance, preset, weights, weights_dir, input_range, layer_weights,
            range_check: as :class:`PerceptualMetric`.
        mask: spatial weights ``(N, 1, H, W)`` (masked mean over space).
        per_layer: return the ``(N, L)`` per-layer terms.
        spatial: return the ``(N, 1, H, W)`` map (``(N, L, H, W)`` with ``per_layer``) instead.
        heads: a heads file (:mod:`lossnet.heads`), as :class:`PerceptualMetric`; a file rewritten
            in place is read again (its size and modification time are part of the cache key).

    Returns:
        ``(N,)`` distances (or as above).
    """
    _check_pair(a, b)  # before a.device is read and before a network is built
    layers_key = tuple(layers.split(",")) if isinstance(layers, str) else (None if layers is None else tuple(layers))
    weights = WeightsSpec.parse(weights, check=False)  # the file is checked when the network is built
    layer_weights = _layer_weight_values(layer_weights)  # floats: hashable for the cache key (checked in full when built)
    key = (net, layers_key, distance, preset, weights.label, str(weights_dir), tuple(input_range),
           None if layer_weights is None else tuple(layer_weights), range_check, _file_identity(heads))
    m = _cached_metric(key, net=net, layers=layers_key, distance=distance, preset=preset, weights=weights,
                       weights_dir=weights_dir, input_range=input_range, layer_weights=layer_weights,
                       range_check=range_check, heads=heads)
    m = m.to(a.device)
    fa, fb = m._features(a, "a"), m._features(b, "b")
    if spatial:
        return _Perceptual.compare_map(m, fa, fb, tuple(a.shape[-2:]), per_layer=per_layer)
    return _Perceptual.compare(m, fa, fb, mask=mask, per_layer=per_layer)
