"""Exact tiled evaluation of a perceptual metric on large images (``PerceptualMetric(..., tile=T)``).

A convolutional network in eval mode is translation-equivariant up to its stride: feature position
``i`` of a layer with total stride ``S`` depends only on the image pixels ``[S*i - A, S*i + B]``
(``A``, ``B``: the reach of its receptive field before/after, padding included). So a layer's
features can be computed crop by crop:

- the image is cut into ``T x T`` tiles whose origins are multiples of ``T``, itself a multiple of
  ``S*`` (the least common multiple of every stride in the truncated network), so that every
  crop starts on the pooling grid of every layer (a crop off the grid would pool other windows);
- each tile is run with a halo of ``ceil(max A / S*) * S*`` pixels before and the largest ``B``
  after, clipped at the image border: at the border the crop *has* the true border, so the
  convolutions' zero padding (and any pooling with ``ceil_mode``) sees what it sees on the whole
  image; inside, the halo is real pixels;
- of each layer's features only the positions ``i`` with ``S*i`` inside the tile are kept (the
  last tile in a row or column keeps everything to the end): these depend only on pixels of the
  crop or on the true border, so they equal the whole-image features, and the tiles partition
  every layer's positions exactly once.

The distance is then accumulated from per-tile sums (in float64): for ``spatial``/``mse``/``l1``
the per-position values and their count, for ``gram`` the sums of outer products, for
``meanpool`` the feature sums, and for ``dists`` the per-channel sums of ``a, b, a^2, b^2, ab``
(means, variances and covariance follow from them). The result equals the whole-image value to
float rounding while the peak memory is that of one crop.

Refused, with a one-line reason, where this cannot be exact: global (adaptive) pooling, attention,
layers that mix positions in any other way (anything this module does not know), BatchNorm or
dropout in train mode (batch statistics of a tile are not those of the image), and masks.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
from torch import nn

from lossnet.distances import DISTS_C1, DISTS_C2, checked_channel_weights, layer_positions, unit_normalize
from lossnet.errors import InputError

__all__ = ["TilingError", "TilePlan", "tile_plan", "tiled_distance", "layer_geometry"]


class TilingError(InputError):
    """The metric cannot be evaluated exactly in tiles (the message says why)."""


#: Modules that act on each position alone (in eval mode): they keep the geometry of their input.
_POINTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.BatchNorm2d,
)
#: Functions that combine inputs position by position (residual sums, channel concatenation, activations).
_POINTWISE_FUNCTIONS = {
    operator.add,
    operator.mul,
    torch.add,
    torch.mul,
    torch.cat,
    torch.relu,
    torch.nn.functional.relu,
}
_POINTWISE_METHODS = {"relu", "relu_", "add", "add_", "mul", "mul_", "contiguous"}
#: Distances whose value can be accumulated over tiles.
TILED_DISTANCES = ("spatial", "mse", "l1", "gram", "meanpool", "dists")


@dataclass(frozen=True)
class Axis:
    """Position ``i`` of a feature depends on pixels ``[stride*i - before, stride*i + after]``."""

    stride: int = 1
    before: int = 0
    after: int = 0


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _window(m: nn.Module, name: str):
    """(kernel, stride, padding-before, dilation, reflected) per axis of a sliding-window module, or None.
    ``reflected``: a reflect padding of that many positions (an output at the border then also
    depends on that many positions inward, which the halo must cover)."""
    tw = getattr(m, "tile_window", None)  # lossnet's composite modules (BlurPool, ConvBlur, ...) say it
    if tw is not None:
        k, s, p, r = tw
        return (k, k), (s, s), (p, p), (1, 1), (r, r)
    if isinstance(m, nn.Conv2d):
        k, s, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
        if isinstance(m.padding, str):  # 'valid' or 'same' (stride 1): PyTorch pads total//2 before
            p = (0, 0) if m.padding == "valid" else tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
        else:
            p = _pair(m.padding)
        r = p if m.padding_mode in ("reflect", "replicate", "circular") else (0, 0)
        return k, s, p, d, r
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        d = _pair(getattr(m, "dilation", 1))
        return k, s, _pair(m.padding), d, (0, 0)
    # DISTS's L2 pooling: a depthwise filter with zero padding
    filt = getattr(m, "filter", None)
    if type(m).__name__ == "L2Pool" and isinstance(filt, torch.Tensor):
        k = (int(filt.shape[-2]), int(filt.shape[-1]))
        return k, _pair(m.stride), _pair(m.padding), (1, 1), (0, 0)
    return None


def _refuse_module(m: nn.Module, target: str) -> str:
    kind = type(m).__name__
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return f"{kind} at {target} is global pooling: every output mixes the whole image"
    if isinstance(m, nn.MultiheadAttention) or "attention" in kind.lower():
        return f"{kind} at {target} is attention: every position sees the whole image"
    if isinstance(m, nn.Linear):
        return f"{kind} at {target} mixes every position (a linear layer over the feature map)"
    return f"{kind} at {target} is not a known translation-equivariant layer (convolution, pooling, pointwise)"


def layer_geometry(body: torch.fx.GraphModule, nodes: tuple[str, ...]) -> tuple[list[tuple[Axis, Axis]], int]:
    """Per requested node the (height, width) :class:`Axis` of its features, and the least common
    multiple of every stride in ``body``. ``nodes``: the names ``body`` returns its outputs under
    (``"input"`` is the image itself).

    Raises:
        TilingError: a layer mixes positions (global pooling, attention, ...) or a BatchNorm /
            dropout is in train mode.
    """
    geo: dict = {}
    strides = {1}
    out_map: dict = {}
    for node in body.graph.nodes:
        if node.op == "placeholder":
            geo[node] = (Axis(), Axis())
            continue
        if node.op == "output":
            out_map = node.args[0]
            continue
        if node.op == "get_attr":
            geo[node] = None
            continue
        ins = [geo[a] for a in node.all_input_nodes if geo.get(a) is not None]
        if not ins:
            geo[node] = None
            continue
        if any(g[0].stride != ins[0][0].stride or g[1].stride != ins[0][1].stride for g in ins):
            raise TilingError(f"node {node.name} combines features of different strides")
        merged = tuple(
            Axis(ins[0][i].stride, max(g[i].before for g in ins), max(g[i].after for g in ins)) for i in (0, 1)
        )
        if node.op == "call_module":
            m = body.get_submodule(node.target)
            if isinstance(m, (nn.BatchNorm2d, nn.Dropout, nn.Dropout2d)) and m.training:
                raise TilingError(
                    f"{type(m).__name__} at {node.target} is in train mode: a tile's batch statistics "
                    f"differ from the image's (use loss_net_mode='eval')"
                )
            win = _window(m, node.target)
            if win is not None:
                k, s, p, d, r = win
                merged = tuple(
                    Axis(
                        ax.stride * s[i],
                        ax.before + ax.stride * (p[i] + r[i]),
                        ax.after + ax.stride * (d[i] * (k[i] - 1) - p[i] + r[i]),
                    )
                    for i, ax in enumerate(merged)
                )
                strides.update(ax.stride for ax in merged)
            elif not isinstance(m, _POINTWISE):
                raise TilingError(_refuse_module(m, node.target))
        elif node.op == "call_function":
            if node.target is torch.cat and (
                node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0) not in (1, -3)
            ):
                raise TilingError(f"node {node.name} concatenates along a spatial dimension")
            if node.target not in _POINTWISE_FUNCTIONS:
                raise TilingError(
                    f"function {getattr(node.target, '__name__', node.target)} at node {node.name} "
                    f"is not known to act position by position"
                )
        elif node.op == "call_method":
            if node.target not in _POINTWISE_METHODS:
                raise TilingError(f"method {node.target} at node {node.name} is not known to act position by position")
        geo[node] = merged
    by_name = {name: geo[n] for name, n in out_map.items()}
    result = []
    for name in nodes:
        if name == "input":
            result.append((Axis(), Axis()))
        else:
            result.append(by_name[name])
    return result, math.lcm(*strides)


@dataclass(frozen=True)
class TilePlan:
    """What tiling a metric needs: the tile side, the per-layer geometry and the halos."""

    tile: int
    axes: tuple  # per layer: (Axis height, Axis width)
    grid: int  # every crop origin is a multiple of this (the lcm of all strides)
    halo_before: tuple[int, int]  # pixels (height, width), multiples of grid
    halo_after: tuple[int, int]


def tile_plan(metric, tile: int) -> TilePlan:
    """Check that ``metric`` (a :class:`~lossnet.loss.PerceptualMetric`) can be tiled exactly, and
    plan it. Raises :class:`TilingError` with the reason otherwise."""
    if isinstance(tile, bool) or not isinstance(tile, int) or tile <= 0:
        raise InputError(f"tile must be a positive integer (pixels), got {tile!r}")
    name = metric.distance.name
    if name not in TILED_DISTANCES:
        raise TilingError(f"the {name!r} distance cannot be accumulated over tiles")
    network = metric.network
    if network._patch:
        raise TilingError(f"{network.arch} is a vision transformer: attention sees the whole image")
    if network.body is None:
        axes, grid = [(Axis(), Axis()) for _ in network.nodes], 1
    else:
        axes, grid = layer_geometry(network.body, network.nodes)
    if tile % grid:
        raise InputError(
            f"tile {tile} is not a multiple of {network.arch}'s total stride {grid} up to "
            f"{', '.join(network.layers)} (try {max(grid, tile // grid * grid)})"
        )
    before = tuple(math.ceil(max(a[i].before for a in axes) / grid) * grid for i in (0, 1))
    after = tuple(max(0, max(a[i].after for a in axes)) for i in (0, 1))
    return TilePlan(tile, tuple(axes), grid, before, after)


class _Sums:
    """Per-layer sufficient statistics of one distance, accumulated over tiles (float64)."""

    def __init__(self, name: str, cw):
        self.name, self.cw, self.count, self.s = name, cw, 0, None

    def _add(self, values):
        self.s = list(values) if self.s is None else [t + v for t, v in zip(self.s, values)]

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        if a.shape[-1] == 0 or a.shape[-2] == 0:
            return
        if a.shape != b.shape:  # a batch of 1 against N
            a, b = torch.broadcast_tensors(a, b)
        self.count += a.shape[-1] * a.shape[-2]
        if self.name in ("spatial", "mse", "l1"):
            pos = layer_positions(self.name, a, b, self.cw)
            self._add([pos.double().sum((1, 2))])
            return
        x, y = a.double().flatten(2), b.double().flatten(2)  # (N, C, P)
        if self.name == "gram":
            self._add([torch.bmm(x, x.transpose(1, 2)), torch.bmm(y, y.transpose(1, 2))])
        elif self.name == "meanpool":
            self._add([x.sum(2), y.sum(2)])
        else:  # dists
            self._add([x.sum(2), y.sum(2), (x * x).sum(2), (y * y).sum(2), (x * y).sum(2)])

    def value(self) -> torch.Tensor:
        n = self.count
        if self.name in ("spatial", "mse", "l1"):
            return self.s[0] / n
        if self.name == "gram":
            c = self.s[0].shape[1]
            return (self.s[0] / (c * n) - self.s[1] / (c * n)).pow(2).sum((1, 2))
        if self.name == "meanpool":
            return (unit_normalize(self.s[0] / n) - unit_normalize(self.s[1] / n)).pow(2).sum(1)
        mx, my, xx, yy, xy = (t / n for t in self.s)
        c = mx.shape[1]
        if self.cw is None:
            alpha = beta = torch.full((1, c), 0.5 / c, dtype=mx.dtype, device=mx.device)
        else:
            w = self.cw.to(mx.device, mx.dtype)
            alpha, beta = w[0:1], w[1:2]
        s1 = (2 * mx * my + DISTS_C1) / (mx**2 + my**2 + DISTS_C1)
        # variances/covariance from raw moments: float64 keeps the cancellation far below 1e-7
        s2 = (2 * (xy - mx * my) + DISTS_C2) / ((xx - mx * mx) + (yy - my * my) + DISTS_C2)
        return (alpha + beta).sum(1) - (alpha * s1 + beta * s2).sum(1)


def _starts(size: int, tile: int):
    spans = [(t0, min(t0 + tile, size)) for t0 in range(0, size, tile)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < tile // 2:
        # a sliver at the end joins the previous tile: alone, its crop (sliver + halo) can be
        # smaller than a kernel of a network with a small halo, though it owns no features
        spans[-2:] = [(spans[-2][0], size)]
    return spans


def tiled_distance(
    metric, a: torch.Tensor, b: torch.Tensor, plan: TilePlan, *, per_layer: bool = False
) -> torch.Tensor:
    """The distance of ``metric`` between images ``a`` and ``b``, computed tile by tile (see the
    module docstring); ``(N,)``, or ``(N, L)`` with ``per_layer``."""
    if a.ndim == 3:
        a = a[None]
    if b.ndim == 3:
        b = b[None]
    h, w = a.shape[-2:]
    dist = metric.distance
    sums = None
    for y0, y1 in _starts(h, plan.tile):
        c0, c1 = max(0, y0 - plan.halo_before[0]), min(h, y1 + plan.halo_after[0])
        for x0, x1 in _starts(w, plan.tile):
            d0, d1 = max(0, x0 - plan.halo_before[1]), min(w, x1 + plan.halo_after[1])
            fa = metric._features(a[..., c0:c1, d0:d1], "a")
            fb = metric._features(b[..., c0:c1, d0:d1], "b")
            if sums is None:
                cws = checked_channel_weights(dist.name, fa, dist.channel_weights)
                sums = [_Sums(dist.name, cw) for cw in cws]
            for acc, (ay, ax), f, g in zip(sums, plan.axes, fa, fb):
                rows = slice(y0 // ay.stride - c0 // ay.stride, None if y1 == h else y1 // ay.stride - c0 // ay.stride)
                cols = slice(x0 // ax.stride - d0 // ax.stride, None if x1 == w else x1 // ax.stride - d0 // ax.stride)
                acc.add(f[..., rows, cols], g[..., rows, cols])
    weights = dist.layer_weights or [1.0] * len(sums)
    dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    terms = [lw * s.value() for lw, s in zip(weights, sums)]
    if per_layer:
        return torch.stack(terms, dim=1).to(dtype)
    return torch.stack(terms, dim=1).sum(1).to(dtype)
