"""Distances between deep feature maps, as used by deep perceptual losses and metrics.

Every distance takes two lists of per-layer feature maps ``feats_a[l], feats_b[l]`` of shape
``(N, C_l, H_l, W_l)`` and returns one value per sample, shape ``(N,)``:

.. math::
    d(a, b) = \\sum_l \\lambda_l \\, d_l(\\phi_l(a), \\phi_l(b))

with optional per-layer weights :math:`\\lambda_l` (default 1). Distances are computed in float32
(or float64 when the features are float64) whatever the feature dtype, so they behave the same under
``torch.autocast``.

Beyond the ``(N,)`` value, :func:`compute_distance` gives per-layer values (``per_layer=True``:
``(N, L)``, the terms :math:`\\lambda_l d_l` that sum to the value) and masked values (``masks``:
non-negative weights over space; every spatial mean becomes a weighted mean, see
:func:`layer_masks`), and :func:`distance_map` gives the per-position distance ``(N, 1, H, W)``
upsampled to the image size as lpips's ``spatial=True`` does (for the position-wise distances
``spatial``, ``mse`` and ``l1``; ``gram``, ``meanpool`` and ``dists`` compare global statistics and
have no map).

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
    Ding, Ma, Wang, Simoncelli. "Image Quality Assessment: Unifying Structure and Texture
    Similarity", TPAMI 2020 (dists).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lossnet.errors import InputError

__all__ = [
    "EPS",
    "DISTS_C1",
    "DISTS_C2",
    "DISTANCES",
    "MAP_DISTANCES",
    "CHANNEL_WEIGHTED",
    "unit_normalize",
    "spatial",
    "mse",
    "l1",
    "gram",
    "gram_matrix",
    "meanpool",
    "dists",
    "adists",
    "layer_masks",
    "layer_positions",
    "checked_channel_weights",
    "compute_distance",
    "distance_map",
    "Distance",
]

#: Epsilon of the unit normalisation (the value lpips uses).
EPS = 1e-10
#: Stabilising constants of DISTS's structure and texture terms (the DISTS paper and package).
DISTS_C1 = 1e-6
DISTS_C2 = 1e-6

FeatureList = Sequence[torch.Tensor]
WeightList = Sequence[float | torch.Tensor | None] | None
Masks = torch.Tensor | Sequence[torch.Tensor | None] | None


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check(
    name: str, feats_a: FeatureList, feats_b: FeatureList, layer_weights: WeightList
) -> list[float | torch.Tensor]:
    if isinstance(feats_a, torch.Tensor) or isinstance(feats_b, torch.Tensor):
        raise InputError(
            f"{name}: expected lists of per-layer feature tensors, got a single tensor (wrap it in a list)"
        )
    if len(feats_a) != len(feats_b):
        raise InputError(f"{name}: feats_a has {len(feats_a)} layers but feats_b has {len(feats_b)}")
    if len(feats_a) == 0:
        raise InputError(f"{name}: no feature layers given")
    for i, (a, b) in enumerate(zip(feats_a, feats_b)):
        if a.ndim != 4 or b.ndim != 4:
            raise InputError(
                f"{name}: layer {i}: expected (N, C, H, W) features, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
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


def _is_compiling() -> bool:
    return torch.compiler.is_compiling()


def _channel_weight(w: torch.Tensor, c: int, layer: int, *, check_sign: bool = True) -> torch.Tensor:
    w = torch.as_tensor(w)
    if w.numel() != c or (w.ndim == 4 and w.shape[1] != c) or w.ndim not in (1, 4):
        raise InputError(
            f"spatial: layer {layer}: channel weights must have shape ({c},) or (1, {c}, 1, 1), got {tuple(w.shape)}"
        )
    if check_sign and not w.is_meta and bool((w < 0).any()):
        raise InputError(f"spatial: layer {layer}: channel weights must be non-negative")
    return w.reshape(1, c, 1, 1)


def _dists_weight(w: torch.Tensor, c: int, layer: int, *, check_sign: bool = True) -> torch.Tensor:
    w = torch.as_tensor(w)
    if w.numel() != 2 * c or (w.ndim == 2 and w.shape != (2, c)) or w.ndim not in (1, 2):
        raise InputError(
            f"dists: layer {layer}: channel weights must be (alpha; beta) of shape (2, {c}), got {tuple(w.shape)}"
        )
    if check_sign and not w.is_meta and bool((w < 0).any()):
        raise InputError(f"dists: layer {layer}: channel weights must be non-negative")
    return w.reshape(2, c)


# ---- masks ------------------------------------------------------------------------------------


def _mask_4d(mask: torch.Tensor, what: str = "mask") -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"{what}: expected a tensor of weights (N, 1, H, W), got {type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise InputError(
            f"{what}: expected weights of shape (N, 1, H, W), (N, H, W) or (H, W), got {tuple(mask.shape)}"
        )
    if not mask.is_floating_point():
        mask = mask.float()
    if mask.device.type == "cpu" and not mask.is_meta and not _is_compiling() and bool((mask < 0).any()):
        raise InputError(f"{what}: weights must be non-negative")
    return mask


def layer_masks(mask: Masks, feats: FeatureList) -> list[torch.Tensor | None]:
    """One mask per layer, at that layer's resolution.

    A single mask ``(N, 1, H, W)`` (also ``(N, H, W)``, ``(H, W)``, or N = 1 for the whole batch),
    usually at the image size, is area-resized to every layer's ``(H_l, W_l)``
    (``adaptive_avg_pool2d``: a feature position gets the mean weight of the image pixels it
    covers). A list gives each layer its own mask (None = unmasked), resized the same way if needed.
    Weights are non-negative; the masked value of a layer is
    :math:`\\sum_{hw} m_{hw} d_{hw} / \\sum_{hw} m_{hw}` (0 where a sample's weights are all 0).
    """
    if mask is None:
        return [None] * len(feats)
    if isinstance(mask, torch.Tensor):
        masks = [mask] * len(feats)
    else:
        masks = list(mask)
        if len(masks) != len(feats):
            raise InputError(f"mask: {len(masks)} per-layer masks for {len(feats)} layers")
    out: list[torch.Tensor | None] = []
    cache: dict = {}
    for i, (m, f) in enumerate(zip(masks, feats)):
        if m is None:
            out.append(None)
            continue
        m = _mask_4d(m, f"mask (layer {i})")
        if m.shape[0] not in (1, f.shape[0]):
            raise InputError(f"mask: batch size {m.shape[0]} does not match the features' {f.shape[0]}")
        size = tuple(f.shape[-2:])
        key = (id(m), size)
        if key not in cache:
            cache[key] = m if tuple(m.shape[-2:]) == size else F.adaptive_avg_pool2d(m, size)
        out.append(cache[key])
    return out


def _masked_mean(pos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Weighted spatial mean of a per-position value ``pos`` ``(N, H, W)`` with weights ``(N|1, 1, H, W)``."""
    m = mask[:, 0].to(pos.dtype)
    return (pos * m).sum((1, 2)) / m.sum((1, 2)).clamp_min(torch.finfo(pos.dtype).tiny)


def _weighted_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Spatial mean over (H, W) of ``(N, C, H, W)``, keepdim, optionally weighted."""
    if mask is None:
        return x.mean((2, 3), keepdim=True)
    m = mask.to(x.dtype)
    return (x * m).sum((2, 3), keepdim=True) / m.sum((2, 3), keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


# ---- per-layer terms ----------------------------------------------------------------------------
# Each returns the unweighted d_l of one layer, (N,), or with ``position=True`` the per-position
# value (N, H_l, W_l) whose spatial mean is d_l. The unmasked paths are the exact op sequences of
# lossnet 0.1 (the benchmark numbers depend on them).


def _spatial_layer(a, b, w=None, mask=None, position=False):
    dt = _work_dtype(a)
    diff = (unit_normalize(a.to(dt)) - unit_normalize(b.to(dt))).pow(2)
    pos = (diff * w.to(diff.device, dt)).sum(1) if w is not None else diff.sum(1)
    if position:
        return pos
    return pos.mean((1, 2)) if mask is None else _masked_mean(pos, mask)


def _pointwise_layer(fn):
    def layer(a, b, w=None, mask=None, position=False):
        dt = _work_dtype(a)
        d = fn(a.to(dt) - b.to(dt))
        if position:
            return d.mean(1)
        return d.mean((1, 2, 3)) if mask is None else _masked_mean(d.mean(1), mask)

    return layer


def _mse_layer(a, b, w=None, mask=None, position=False):
    # F.mse_loss(reduction="none"): the same (a - b)^2 values as (a - b).pow(2), in one fused kernel
    # forward and backward (one feature-sized temporary instead of four; issue #21 profile)
    dt = _work_dtype(a)
    a, b = a.to(dt), b.to(dt)
    if a.shape != b.shape:  # a batch of 1 against N
        a, b = torch.broadcast_tensors(a, b)
    d = torch.nn.functional.mse_loss(a, b, reduction="none")
    if position:
        return d.mean(1)
    if mask is None:
        # sum / n rather than mean: the backward of a sum is a broadcast view, where the mean's
        # materialises a feature-sized gradient (equal to the mean up to float rounding)
        return d.sum((1, 2, 3)) / (d.shape[1] * d.shape[2] * d.shape[3])
    return _masked_mean(d.mean(1), mask)


_l1_layer = _pointwise_layer(torch.abs)


def _gram_weighted(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return gram_matrix(x)
    n, c, h, w = x.shape
    m = mask.to(x.dtype).expand(n, 1, h, w).reshape(n, 1, h * w)
    f = x.reshape(n, c, h * w)
    return torch.bmm(f * m, f.transpose(1, 2)) / (c * m.sum((1, 2)).clamp_min(torch.finfo(x.dtype).tiny)).view(n, 1, 1)


def _gram_layer(a, b, w=None, mask=None, position=False):
    dt = _work_dtype(a)
    return (_gram_weighted(a.to(dt), mask) - _gram_weighted(b.to(dt), mask)).pow(2).sum((1, 2))


def _meanpool_layer(a, b, w=None, mask=None, position=False):
    dt = _work_dtype(a)
    if mask is None:
        ma = unit_normalize(a.to(dt).mean((2, 3)))
        mb = unit_normalize(b.to(dt).mean((2, 3)))
    else:
        ma = unit_normalize(_weighted_mean(a.to(dt), mask)[:, :, 0, 0])
        mb = unit_normalize(_weighted_mean(b.to(dt), mask)[:, :, 0, 0])
    return (ma - mb).pow(2).sum(1)


def _dists_layer(a, b, w=None, mask=None, position=False):
    dt = _work_dtype(a)
    x, y = a.to(dt), b.to(dt)
    c = x.shape[1]
    if w is None:
        alpha = beta = torch.full((1, c), 0.5 / c, dtype=dt, device=x.device)
    else:
        w = w.to(x.device, dt)
        alpha, beta = w[0:1], w[1:2]
    x_mean, y_mean = _weighted_mean(x, mask), _weighted_mean(y, mask)
    s1 = (2 * x_mean * y_mean + DISTS_C1) / (x_mean**2 + y_mean**2 + DISTS_C1)
    xc, yc = x - x_mean, y - y_mean
    x_var, y_var = _weighted_mean(xc * xc, mask), _weighted_mean(yc * yc, mask)
    xy_cov = _weighted_mean(xc * yc, mask)
    s2 = (2 * xy_cov + DISTS_C2) / (x_var + y_var + DISTS_C2)
    sim = (alpha * s1[:, :, 0, 0] + beta * s2[:, :, 0, 0]).sum(1)
    return (alpha + beta).sum(1) - sim


_LAYER_FNS: dict[str, Callable[..., torch.Tensor]] = {
    "spatial": _spatial_layer,
    "mse": _mse_layer,
    "l1": _l1_layer,
    "gram": _gram_layer,
    "meanpool": _meanpool_layer,
    "dists": _dists_layer,
}

#: Distances with a per-position value (:func:`distance_map`).
MAP_DISTANCES = ("spatial", "mse", "l1")
#: Distances that take per-channel weights: ``spatial`` (w_c, e.g. LPIPS heads) and ``dists`` (alpha; beta).
CHANNEL_WEIGHTED = ("spatial", "dists")


def _layer_channel_weights(name: str, feats_a, channel_weights, validated: bool) -> list:
    """Per-layer channel weights checked against the features (``[None] * L`` without any)."""
    if channel_weights is None:
        return [None] * len(feats_a)
    if len(channel_weights) != len(feats_a):
        raise InputError(f"{name}: {len(channel_weights)} channel-weight entries for {len(feats_a)} layers")
    check = _channel_weight if name == "spatial" else _dists_weight
    return [
        None if w is None else check(w, a.shape[1], i, check_sign=not validated)
        for i, (w, a) in enumerate(zip(channel_weights, feats_a))
    ]


def layer_positions(
    name: str, a: torch.Tensor, b: torch.Tensor, channel_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-position value ``(N, H, W)`` of one layer for a position-wise distance (:data:`MAP_DISTANCES`):
    the quantity whose spatial mean is :math:`d_l` (``channel_weight`` as from :func:`checked_channel_weights`)."""
    if name not in MAP_DISTANCES:
        raise InputError(f"the {name!r} distance has no per-position value; those exist for {', '.join(MAP_DISTANCES)}")
    return _LAYER_FNS[name](a, b, channel_weight, None, position=True)


def checked_channel_weights(name: str, feats, channel_weights) -> list:
    """Per-layer channel weights of ``name`` checked and shaped against the features
    (``(1, C, 1, 1)`` for spatial, ``(2, C)`` for dists; ``[None] * L`` without any)."""
    return _layer_channel_weights(name, feats, channel_weights, True)


def _combine(name: str, feats_a, feats_b, layer_weights, channel_weights, masks, per_layer: bool, validated: bool):
    lw = _check(name, feats_a, feats_b, layer_weights)
    if name == "adists":  # layers depend on each other (layer 0 reuses layer 1's adaptive weights)
        if masks is not None:
            raise InputError("adists: masks are not supported (its local statistics use sliding windows)")
        from lossnet.adists import adists_terms

        terms = adists_terms(feats_a, feats_b, lw)
        return terms if per_layer else terms.sum(1)
    fn = _LAYER_FNS[name]
    cws = _layer_channel_weights(name, feats_a, channel_weights, validated)
    ms = layer_masks(masks, feats_a) if masks is not None else [None] * len(feats_a)
    if per_layer:
        return torch.stack([w * fn(a, b, cw, m) for w, a, b, cw, m in zip(lw, feats_a, feats_b, cws, ms)], dim=1)
    total = None
    for w, a, b, cw, m in zip(lw, feats_a, feats_b, cws, ms):
        d = fn(a, b, cw, m)
        total = w * d if total is None else total + w * d
    return total


# ---- the public distances -----------------------------------------------------------------------


def spatial(
    feats_a: FeatureList,
    feats_b: FeatureList,
    layer_weights: WeightList = None,
    channel_weights: Sequence[torch.Tensor | None] | None = None,
    *,
    masks: Masks = None,
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
        masks: spatial weights (:func:`layer_masks`); the spatial mean becomes a weighted mean.

    Returns:
        ``(N,)`` distances.
    """
    return _combine("spatial", feats_a, feats_b, layer_weights, channel_weights, masks, False, False)


def mse(
    feats_a: FeatureList, feats_b: FeatureList, layer_weights: WeightList = None, *, masks: Masks = None
) -> torch.Tensor:
    """Feature reconstruction distance (Eq. 3 of Pihlgren et al.; Johnson et al.).

    .. math:: d_l = \\frac{1}{C_l H_l W_l} \\lVert \\phi_l(a) - \\phi_l(b) \\rVert_2^2

    Args:
        feats_a, feats_b: per-layer features ``(N, C_l, H_l, W_l)``.
        layer_weights: per-layer factors (default 1).
        masks: spatial weights (:func:`layer_masks`).

    Returns:
        ``(N,)`` distances, :math:`\\sum_l \\lambda_l d_l`.
    """
    return _combine("mse", feats_a, feats_b, layer_weights, None, masks, False, False)


def l1(
    feats_a: FeatureList, feats_b: FeatureList, layer_weights: WeightList = None, *, masks: Masks = None
) -> torch.Tensor:
    """Mean absolute feature difference.

    .. math:: d_l = \\frac{1}{C_l H_l W_l} \\lVert \\phi_l(a) - \\phi_l(b) \\rVert_1

    Returns:
        ``(N,)`` distances, :math:`\\sum_l \\lambda_l d_l`.
    """
    return _combine("l1", feats_a, feats_b, layer_weights, None, masks, False, False)


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by the feature size: :math:`G = F F^T / (C H W)`, ``(N, C, C)``
    for ``F`` the ``(N, C, H*W)`` reshaped features (Johnson et al., Eq. 3-4)."""
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def gram(
    feats_a: FeatureList, feats_b: FeatureList, layer_weights: WeightList = None, *, masks: Masks = None
) -> torch.Tensor:
    """Style distance: squared Frobenius distance of normalised Gram matrices (Gatys; Johnson).

    .. math:: d_l = \\lVert G(\\phi_l(a)) - G(\\phi_l(b)) \\rVert_F^2, \\quad G(F) = F F^T / (C_l H_l W_l)

    With a mask :math:`m`, :math:`G = F \\operatorname{diag}(m) F^T / (C_l \\sum m)` (equal to the
    unmasked one for :math:`m \\equiv 1`).

    Returns:
        ``(N,)`` distances, :math:`\\sum_l \\lambda_l d_l`.
    """
    return _combine("gram", feats_a, feats_b, layer_weights, None, masks, False, False)


def meanpool(
    feats_a: FeatureList, feats_b: FeatureList, layer_weights: WeightList = None, *, masks: Masks = None
) -> torch.Tensor:
    """Mean-pooled distance (Kumar et al., Sec. 3): spatial average, unit-normalise, squared L2.

    .. math::
        m_l(x)_c = \\frac{1}{H_l W_l} \\sum_{h,w} \\phi_l(x)_{c,h,w}, \\qquad
        d_l = \\lVert \\hat m_l(a) - \\hat m_l(b) \\rVert_2^2

    with :math:`\\hat m = m / \\sqrt{\\lVert m \\rVert^2 + \\epsilon^2}`. It ignores spatial layout,
    so it is invariant to translations/permutations of positions; its value is in [0, 4]. A mask
    makes the average a weighted one.

    Returns:
        ``(N,)`` distances, :math:`\\sum_l \\lambda_l d_l`.
    """
    return _combine("meanpool", feats_a, feats_b, layer_weights, None, masks, False, False)


def dists(
    feats_a: FeatureList,
    feats_b: FeatureList,
    layer_weights: WeightList = None,
    channel_weights: Sequence[torch.Tensor | None] | None = None,
    *,
    masks: Masks = None,
) -> torch.Tensor:
    """DISTS structure + texture distance (Ding et al. 2020, Eq. 7-9), layer by layer.

    For every channel, with spatial means :math:`\\mu`, variances :math:`\\sigma^2` and covariance
    :math:`\\sigma_{ab}` of the two feature maps:

    .. math::
        l_c = \\frac{2\\mu_a\\mu_b + c_1}{\\mu_a^2 + \\mu_b^2 + c_1}, \\quad
        s_c = \\frac{2\\sigma_{ab} + c_2}{\\sigma_a^2 + \\sigma_b^2 + c_2}, \\quad
        d_l = \\sum_c (\\alpha_{l,c} + \\beta_{l,c}) - \\sum_c (\\alpha_{l,c} l_c + \\beta_{l,c} s_c)

    With the DISTS weights (normalised so that :math:`\\sum_{l,c} \\alpha + \\beta = 1`, the
    ``"dists"`` preset) :math:`\\sum_l d_l` is the DISTS score :math:`1 - \\sum (\\alpha l + \\beta s)`.
    Without channel weights every layer uses :math:`\\alpha = \\beta = 1 / (2 C_l)`, so
    :math:`d_l \\in [0, 2]` is 1 minus the mean of the two similarities. Identical inputs give 0.
    (The covariance is computed centred, which equals DISTS's ``E[ab] - E[a]E[b]`` up to rounding.)

    Args:
        channel_weights: per layer ``(2, C_l)`` non-negative ``(alpha; beta)``, or None entries.
        masks: spatial weights (:func:`layer_masks`): weighted means, variances and covariances.

    Returns:
        ``(N,)`` distances, :math:`\\sum_l \\lambda_l d_l`.
    """
    return _combine("dists", feats_a, feats_b, layer_weights, channel_weights, masks, False, False)


def adists(feats_a: FeatureList, feats_b: FeatureList, layer_weights: WeightList = None) -> torch.Tensor:
    """A-DISTS (Ding et al., ACM MM 2021) of the six DISTS feature maps; ``feats_a`` is the
    reference. Local (21 x 21 Gaussian window) structure and texture terms balanced per position by
    the reference's variance-to-mean ratio; see :mod:`lossnet.adists` for every formula's source.

    Returns:
        ``(N,)`` A-DISTS scores (0 for identical inputs).
    """
    return _combine("adists", feats_a, feats_b, layer_weights, None, None, False, False)


#: Distance name -> function ``f(feats_a, feats_b, layer_weights=None) -> (N,)``.
DISTANCES: dict[str, Callable[..., torch.Tensor]] = {
    "spatial": spatial,
    "mse": mse,
    "l1": l1,
    "gram": gram,
    "meanpool": meanpool,
    "dists": dists,
    "adists": adists,
}


def _get(name: str) -> Callable[..., torch.Tensor]:
    try:
        return DISTANCES[name]
    except KeyError:
        raise InputError(f"unknown distance {name!r}; choose one of {', '.join(DISTANCES)}") from None


def _check_channel_name(name: str, channel_weights) -> bool:
    has = channel_weights is not None and any(w is not None for w in channel_weights)
    if has and name not in CHANNEL_WEIGHTED:
        raise InputError(f"channel weights apply only to the 'spatial' and 'dists' distances, not {name!r}")
    return has


def compute_distance(
    name: str,
    feats_a: FeatureList,
    feats_b: FeatureList,
    layer_weights: WeightList = None,
    channel_weights: Sequence[torch.Tensor | None] | None = None,
    *,
    masks: Masks = None,
    per_layer: bool = False,
    check_sign: bool = True,
) -> torch.Tensor:
    """Distance ``name`` (a key of :data:`DISTANCES`) between two per-layer feature lists.

    Args:
        name: ``"spatial"``, ``"mse"``, ``"l1"``, ``"gram"``, ``"meanpool"`` or ``"dists"``.
        feats_a, feats_b: lists of ``(N, C_l, H_l, W_l)`` tensors.
        layer_weights: per-layer factors (default 1).
        channel_weights: per-layer channel weights; only ``"spatial"`` and ``"dists"`` accept them.
        masks: spatial weights, one mask for all layers or one per layer (:func:`layer_masks`).
        per_layer: return the ``(N, L)`` terms :math:`\\lambda_l d_l` (they sum to the value).
        check_sign: refuse negative channel weights (False: a heads fit's weights between an
            optimiser step and their clamp to >= 0, as lpips's trainer computes them).

    Returns:
        ``(N,)`` tensor, or ``(N, L)`` with ``per_layer``.
    """
    _get(name)
    has = _check_channel_name(name, channel_weights)
    return _combine(
        name, feats_a, feats_b, layer_weights, channel_weights if has else None, masks, per_layer, not check_sign
    )


def distance_map(
    name: str,
    feats_a: FeatureList,
    feats_b: FeatureList,
    layer_weights: WeightList = None,
    channel_weights: Sequence[torch.Tensor | None] | None = None,
    *,
    size: tuple[int, int] | None = None,
    per_layer: bool = False,
) -> torch.Tensor:
    """Per-position distance, upsampled to ``size``: ``(N, 1, H, W)``, or ``(N, L, H, W)`` per layer.

    Each layer's per-position value (the quantity whose spatial mean is :math:`d_l`) is upsampled
    bilinearly (``align_corners=False``) to ``size`` and weighted by :math:`\\lambda_l`, then the
    layers are summed -- exactly lpips's ``spatial=True`` output for the LPIPS presets.

    Args:
        name: one of :data:`MAP_DISTANCES` (``spatial``, ``mse``, ``l1``).
        size: output ``(H, W)`` (normally the image size); default the largest layer's size.

    Raises:
        InputError: ``name`` compares global statistics (gram, meanpool, dists) and has no map.
    """
    _get(name)
    if name not in MAP_DISTANCES:
        raise InputError(
            f"the {name!r} distance compares global statistics and has no spatial map; "
            f"maps exist for {', '.join(MAP_DISTANCES)}"
        )
    has = _check_channel_name(name, channel_weights)
    return _map(name, feats_a, feats_b, layer_weights, channel_weights if has else None, size, per_layer, False)


def _map(name, feats_a, feats_b, layer_weights, channel_weights, size, per_layer, validated):
    lw = _check(name, feats_a, feats_b, layer_weights)
    fn = _LAYER_FNS[name]
    cws = _layer_channel_weights(name, feats_a, channel_weights, validated)
    if size is None:
        size = max((tuple(f.shape[-2:]) for f in feats_a), key=lambda s: s[0] * s[1])
    size = (int(size[0]), int(size[1]))
    maps = []
    for w, a, b, cw in zip(lw, feats_a, feats_b, cws):
        pos = fn(a, b, cw, None, position=True)[:, None]
        if tuple(pos.shape[-2:]) != size:
            pos = F.interpolate(pos, size=size, mode="bilinear", align_corners=False)
        maps.append(pos if isinstance(w, float) and w == 1.0 else w * pos)
    if per_layer:
        return torch.cat(maps, dim=1)
    total = maps[0]
    for m in maps[1:]:
        total = total + m
    return total


class Distance(nn.Module):
    """Module form of :func:`compute_distance`; layer/channel weights are (non-trainable) buffers.

    Channel weights are checked once here (shape per layer, non-negative), not on every call.

    Args:
        name: a key of :data:`DISTANCES`.
        layer_weights: per-layer factors (default 1).
        channel_weights: per-layer channel weights (``"spatial"``: ``(C_l,)``, e.g. LPIPS linear
            heads; ``"dists"``: ``(2, C_l)`` alpha; beta).
    """

    def __init__(
        self,
        name: str = "mse",
        layer_weights: Sequence[float] | None = None,
        channel_weights: Sequence[torch.Tensor | None] | None = None,
    ) -> None:
        super().__init__()
        _get(name)
        _check_channel_name(name, channel_weights)
        self.name = name
        self.layer_weights = None if layer_weights is None else [float(w) for w in layer_weights]
        self._n_channel = 0
        self._has_channel = []
        if channel_weights is not None:
            for i, w in enumerate(channel_weights):
                self._has_channel.append(w is not None)
                if w is not None:
                    t = torch.as_tensor(w).detach().float()
                    if bool((t < 0).any()):
                        raise InputError(f"{name}: layer {i}: channel weights must be non-negative")
                    t = t.reshape(2, -1) if name == "dists" else t.reshape(-1)
                    self.register_buffer(f"channel_weight_{i}", t.clone())
            self._n_channel = len(channel_weights)

    @property
    def channel_weights(self) -> list[torch.Tensor | None] | None:
        if not self._n_channel:
            return None
        return [getattr(self, f"channel_weight_{i}") if h else None for i, h in enumerate(self._has_channel)]

    @property
    def has_map(self) -> bool:
        """Whether :meth:`map` exists for this distance (:data:`MAP_DISTANCES`)."""
        return self.name in MAP_DISTANCES

    def extra_repr(self) -> str:
        return f"name={self.name!r}, layer_weights={self.layer_weights}, channel_weights={'yes' if self._n_channel else 'no'}"

    def forward(
        self, feats_a: FeatureList, feats_b: FeatureList, *, masks: Masks = None, per_layer: bool = False
    ) -> torch.Tensor:
        return _combine(self.name, feats_a, feats_b, self.layer_weights, self.channel_weights, masks, per_layer, True)

    def map(
        self,
        feats_a: FeatureList,
        feats_b: FeatureList,
        size: tuple[int, int] | None = None,
        *,
        per_layer: bool = False,
    ) -> torch.Tensor:
        """:func:`distance_map` with this module's weights."""
        if self.name not in MAP_DISTANCES:
            raise InputError(
                f"the {self.name!r} distance compares global statistics and has no spatial map; "
                f"maps exist for {', '.join(MAP_DISTANCES)}"
            )
        return _map(self.name, feats_a, feats_b, self.layer_weights, self.channel_weights, size, per_layer, True)
