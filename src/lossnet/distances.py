"""Distances between deep feature maps, as used by deep perceptual losses and metrics.

Every distance takes two lists of per-layer feature maps ``feats_a[l], feats_b[l]`` of shape
``(N, C_l, H_l, W_l)`` and returns one value per sample, shape ``(N,)``:

.. math::
    d(a, b) = \\sum_l \\lambda_l \\, d_l(\\phi_l(a), \\phi_l(b))

with optional per-layer weights :math:`\\lambda_l` (default 1). Distances are computed in float32
(or float64 when the features are float64) whatever the feature dtype, so they behave the same under
``torch.autocast``.

References:
    Pihlgren, Nikolaidou, Chhipa, Abid, Saini, Simistira, Liwicki. "A Systematic Performance
    Analysis of Deep Perceptual Loss Networks: Breaking Transfer Learning Conventions", 2024
    (Eq. 1: spatial, Eq. 3: mse).
    Zhang, Isola, Efros, Shechtman, Wang. "The Unreasonable Effectiveness of Deep Features as a
    Perceptual Metric", CVPR 2018 (LPIPS: spatial with channel weights).
    Johnson, Alahi, Fei-Fei. "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
    ECCV 2016 (feature reconstruction = mse, style = gram).
    Gatys, Ecker, Bethge. "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016.
    Kumar, Houlsby, Kalchbrenner, Cubuk. "Do better ImageNet classifiers assess perceptual
    similarity better?", TMLR 2022 (meanpool).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from lossnet.errors import InputError

__all__ = [
    "EPS",
    "DISTANCES",
    "unit_normalize",
    "spatial",
    "mse",
    "l1",
    "gram",
    "gram_matrix",
    "meanpool",
    "compute_distance",
    "Distance",
]

#: Epsilon of the unit normalisation (the value lpips uses).
EPS = 1e-10

FeatureList = Sequence[torch.Tensor]
WeightList = Sequence[float | torch.Tensor | None] | None


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check(name: str, feats_a: FeatureList, feats_b: FeatureList, layer_weights: WeightList) -> list[float | torch.Tensor]:
    if isinstance(feats_a, torch.Tensor) or isinstance(feats_b, torch.Tensor):
        raise InputError(f"{name}: expected lists of per-layer feature tensors, got a single tensor (wrap it in a list)")
    if len(feats_a) != len(feats_b):
        raise InputError(f"{name}: feats_a has {len(feats_a)} layers but feats_b has {len(feats_b)}")
    if len(feats_a) == 0:
        raise InputError(f"{name}: no feature layers given")
    for i, (a, b) in enumerate(zip(feats_a, feats_b)):
        if a.ndim != 4 or b.ndim != 4:
            raise InputError(f"{name}: layer {i}: expected (N, C, H, W) features, got {tuple(a.shape)} and {tuple(b.shape)}")
        if a.shape[1:] != b.shape[1:] or (a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0])):
            raise InputError(f"{name}: layer {i}: feature shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if layer_weights is None:
        return [1.0] * len(feats_a)
    if len(layer_weights) != len(feats_a):
        raise InputError(f"{name}: {len(layer_weights)} layer weights for {len(feats_a)} layers")
    return [1.0 if w is None else w for w in layer_weights]


def unit_normalize(x: torch.Tensor, dim: int = 1, eps: float = EPS) -> torch.Tensor:
    """Scale each feature vector along ``dim`` to unit L2 norm.

    .. math:: \\hat x = x / \\sqrt{\\textstyle\\sum_c x_c^2 + \\epsilon^2}

    lpips computes ``x / (sqrt(sum x^2) + eps)``; its gradient is NaN where a feature vector is
    all zero (a dead ReLU position), because the derivative of ``sqrt`` at 0 is infinite. Putting
    the epsilon under the root keeps the gradient finite everywhere, and for non-zero vectors the
    two differ by a relative ~``eps / ||x||`` (< 1e-7 for any realistic activation).
    """
    return x * torch.rsqrt(x.pow(2).sum(dim, keepdim=True) + eps * eps)


def _channel_weight(w: torch.Tensor, c: int, layer: int) -> torch.Tensor:
    w = torch.as_tensor(w)
    if w.numel() != c or (w.ndim == 4 and w.shape[1] != c) or w.ndim not in (1, 4):
        raise InputError(f"spatial: layer {layer}: channel weights must have shape ({c},) or (1, {c}, 1, 1), got {tuple(w.shape)}")
    if bool((w < 0).any()):
        raise InputError(f"spatial: layer {layer}: channel weights must be non-negative")
    return w.reshape(1, c, 1, 1)


def spatial(
    feats_a: FeatureList,
    feats_b: FeatureList,
    layer_weights: WeightList = None,
    channel_weights: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Spatial distance (Eq. 1 of Pihlgren et al.; LPIPS when ``channel_weights`` are the linear heads).

    .. math::
        d_l = \\frac{1}{H_l W_l} \\sum_{h,w} \\sum_c w_{l,c}
              \\left(\\hat\\phi_l(a)_{c,h,w} - \\hat\\phi_l(b)_{c,h,w}\\right)^2

    where :math:`\\hat\\phi` is unit-normalised over channels at every position
    (:func:`unit_normalize`) and :math:`w_{l,c} = 1` without channel weights (lpips's
    ``lpips=False`` baseline).

    Args:
        feats_a, feats_b: per-layer features ``(N, C_l, H_l, W_l)``.
        layer_weights: per-layer factors :math:`\\lambda_l` (default 1).
        channel_weights: per-layer non-negative weights of shape ``(C_l,)`` or ``(1, C_l, 1, 1)``
            (an lpips ``NetLinLayer`` 1x1-conv weight), or None entries.

    Returns:
        ``(N,)`` distances.
    """
    lw = _check("spatial", feats_a, feats_b, layer_weights)
    if channel_weights is not None and len(channel_weights) != len(feats_a):
        raise InputError(f"spatial: {len(channel_weights)} channel-weight entries for {len(feats_a)} layers")
    total = None
    for i, (a, b) in enumerate(zip(feats_a, feats_b)):
        dt = _work_dtype(a)
        diff = (unit_normalize(a.to(dt)) - unit_normalize(b.to(dt))).pow(2)
        if channel_weights is not None and channel_weights[i] is not None:
            w = _channel_weight(channel_weights[i], a.shape[1], i).to(diff.device, dt)
            d = (diff * w).sum(1).mean((1, 2))
        else:
            d = diff.sum(1).mean((1, 2))
        total = lw[i] * d if total is None else total + lw[i] * d
    return total


def _pointwise(name: str, fn: Callable[[torch.Tensor], torch.Tensor]):
    def distance(feats_a: FeatureList, feats_b: FeatureList, layer_weights: WeightList = None) -> torch.Tensor:
        lw = _check(name, feats_a, feats_b, layer_weights)
        total = None
        for w, a, b in zip(lw, feats_a, feats_b):
            dt = _work_dtype(a)
            d = fn(a.to(dt) - b.to(dt)).mean((1, 2, 3))
            total = w * d if total is None else total + w * d
        return total

    return distance


_mse = _pointwise("mse", lambda d: d.pow(2))
_l1 = _pointwise("l1", torch.abs)


def mse(feats_a: FeatureList, feats_b: FeatureList, layer_weights: WeightList = None) -> torch.Tensor:
    """Feature reconstruction distance (Eq. 3 of Pihlgren et al.; Johnson et al.).

    .. math:: d_l = \\frac{1}{C_l H_l W_l} \\lVert \\phi_l(a) - \\phi_l(b) \\rVert_2^2

    Args:
        feats_a, feats_b: per-layer features ``(N, C_l, H_l, W_l)``.
        layer_weights: per-layer factors (default 1).

    Returns:
        ``(N,)`` distances, :math:`\\sum_l \\lambda_l d_l`.
    """
    return _mse(feats_a, feats_b, layer_weights)


def l1(feats_a: FeatureList, feats_b: FeatureList, layer_weights: WeightList = None) -> torch.Tensor:
    """Mean absolute feature difference.

    .. math:: d_l = \\frac{1}{C_l H_l W_l} \\lVert \\phi_l(a) - \\phi_l(b) \\rVert_1

    Returns:
        ``(N,)`` distances, :math:`\\sum_l \\lambda_l d_l`.
    """
    return _l1(feats_a, feats_b, layer_weights)


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by the feature size: :math:`G = F F^T / (C H W)`, ``(N, C, C)``
    for ``F`` the ``(N, C, H*W)`` reshaped features (Johnson et al., Eq. 3-4)."""
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def gram(feats_a: FeatureList, feats_b: FeatureList, layer_weights: WeightList = None) -> torch.Tensor:
    """Style distance: squared Frobenius distance of normalised Gram matrices (Gatys; Johnson).

    .. math:: d_l = \\lVert G(\\phi_l(a)) - G(\\phi_l(b)) \\rVert_F^2, \\quad G(F) = F F^T / (C_l H_l W_l)

    Returns:
        ``(N,)`` distances, :math:`\\sum_l \\lambda_l d_l`.
    """
    lw = _check("gram", feats_a, feats_b, layer_weights)
    total = None
    for w, a, b in zip(lw, feats_a, feats_b):
        dt = _work_dtype(a)
        d = (gram_matrix(a.to(dt)) - gram_matrix(b.to(dt))).pow(2).sum((1, 2))
        total = w * d if total is None else total + w * d
    return total


def meanpool(feats_a: FeatureList, feats_b: FeatureList, layer_weights: WeightList = None) -> torch.Tensor:
    """Mean-pooled distance (Kumar et al., Sec. 3): spatial average, unit-normalise, squared L2.

    .. math::
        m_l(x)_c = \\frac{1}{H_l W_l} \\sum_{h,w} \\phi_l(x)_{c,h,w}, \\qquad
        d_l = \\lVert \\hat m_l(a) - \\hat m_l(b) \\rVert_2^2

    with :math:`\\hat m = m / \\sqrt{\\lVert m \\rVert^2 + \\epsilon^2}`. It ignores spatial layout,
    so it is invariant to translations/permutations of positions; its value is in [0, 4].

    Returns:
        ``(N,)`` distances, :math:`\\sum_l \\lambda_l d_l`.
    """
    lw = _check("meanpool", feats_a, feats_b, layer_weights)
    total = None
    for w, a, b in zip(lw, feats_a, feats_b):
        dt = _work_dtype(a)
        ma = unit_normalize(a.to(dt).mean((2, 3)))
        mb = unit_normalize(b.to(dt).mean((2, 3)))
        d = (ma - mb).pow(2).sum(1)
        total = w * d if total is None else total + w * d
    return total


#: Distance name -> function ``f(feats_a, feats_b, layer_weights=None) -> (N,)``.
DISTANCES: dict[str, Callable[..., torch.Tensor]] = {
    "spatial": spatial,
    "mse": mse,
    "l1": l1,
    "gram": gram,
    "meanpool": meanpool,
}


def _get(name: str) -> Callable[..., torch.Tensor]:
    try:
        return DISTANCES[name]
    except KeyError:
        raise InputError(f"unknown distance {name!r}; choose one of {', '.join(DISTANCES)}") from None


def compute_distance(
    name: str,
    feats_a: FeatureList,
    feats_b: FeatureList,
    layer_weights: WeightList = None,
    channel_weights: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Distance ``name`` (a key of :data:`DISTANCES`) between two per-layer feature lists.

    Args:
        name: ``"spatial"``, ``"mse"``, ``"l1"``, ``"gram"`` or ``"meanpool"``.
        feats_a, feats_b: lists of ``(N, C_l, H_l, W_l)`` tensors.
        layer_weights: per-layer factors (default 1).
        channel_weights: per-layer channel weights; only ``"spatial"`` accepts them.

    Returns:
        ``(N,)`` tensor.
    """
    fn = _get(name)
    if channel_weights is not None and any(w is not None for w in channel_weights):
        if name != "spatial":
            raise InputError(f"channel weights apply only to the 'spatial' distance, not {name!r}")
        return fn(feats_a, feats_b, layer_weights, channel_weights)
    return fn(feats_a, feats_b, layer_weights)


class Distance(nn.Module):
    """Module form of :func:`compute_distance`; layer/channel weights are (non-trainable) buffers.

    Args:
        name: a key of :data:`DISTANCES`.
        layer_weights: per-layer factors (default 1).
        channel_weights: per-layer channel weights (``"spatial"`` only), e.g. LPIPS linear heads.
    """

    def __init__(
        self,
        name: str = "mse",
        layer_weights: Sequence[float] | None = None,
        channel_weights: Sequence[torch.Tensor | None] | None = None,
    ) -> None:
        super().__init__()
        _get(name)
        if channel_weights is not None and name != "spatial" and any(w is not None for w in channel_weights):
            raise InputError(f"channel weights apply only to the 'spatial' distance, not {name!r}")
        self.name = name
        self.layer_weights = None if layer_weights is None else [float(w) for w in layer_weights]
        self._n_channel = 0
        self._has_channel = []
        if channel_weights is not None:
            for i, w in enumerate(channel_weights):
                self._has_channel.append(w is not None)
                if w is not None:
                    self.register_buffer(f"channel_weight_{i}", torch.as_tensor(w).detach().float().reshape(-1).clone())
            self._n_channel = len(channel_weights)

    @property
    def channel_weights(self) -> list[torch.Tensor | None] | None:
        if not self._n_channel:
            return None
        return [getattr(self, f"channel_weight_{i}") if h else None for i, h in enumerate(self._has_channel)]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, layer_weights={self.layer_weights}, channel_weights={'yes' if self._n_channel else 'no'}"

    def forward(self, feats_a: FeatureList, feats_b: FeatureList) -> torch.Tensor:
        return compute_distance(self.name, feats_a, feats_b, self.layer_weights, self.channel_weights)
