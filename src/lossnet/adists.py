"""A-DISTS: locally adaptive structure and texture similarity (Ding, Liu, Zou, Wang, Ma, ACM MM 2021).

A-DISTS compares the same six VGG16 feature maps as DISTS (the [0, 1] image, relu1_2, relu2_2,
relu3_3, relu4_3, relu5_3 of VGG16 with L2 pooling; :mod:`lossnet.dists_preset`), but with *local*
statistics and a per-position, content-adaptive balance of structure and texture instead of
DISTS's global statistics and learned alpha/beta. It has no learned weights beyond ImageNet VGG16.

Reimplemented from the official code, https://github.com/dingkeyan93/A-DISTS, file
``ADISTS(MM21).py`` (commit 3d20592, the version of the ACM MM 2021 paper; the repository's newer
``A-DISTS.py`` is a different, entropy-weighted extension and is not this). Where each formula
comes from (``ADISTS(MM21).py`` line numbers at that commit):

- windows (``gaussian``/``create_window``, l. 83-91): a 21 x 21 Gaussian, sigma = 21 / 3,
  normalised to sum 1 (1-D, outer product), one per channel;
- local statistics (``forward``, l. 126-131): depthwise "valid" convolution (padding 0) of
  ``x``, ``y``, ``x^2``, ``y^2``, ``xy`` with the window: means :math:`\\mu`, variances
  :math:`\\sigma^2 = E[x^2] - \\mu^2`, covariance :math:`\\sigma_{xy} = E[xy] - \\mu_x\\mu_y`;
  a layer smaller than the window in either side falls back to global statistics (the
  ``except`` branch, l. 132-137: centred variances, covariance ``E[xy] - E[x]E[y]``);
- structure and texture terms (l. 139-140), with :math:`c_1 = c_2 = 10^{-6}`:
  :math:`T = (2\\mu_x\\mu_y + c_1) / (\\mu_x^2 + \\mu_y^2 + c_1)`,
  :math:`S = (2\\sigma_{xy} + c_2) / (\\sigma_x^2 + \\sigma_y^2 + c_2)`
  (the code calls the mean term T and the covariance term S);
- adaptive weights (``compute_prob``, l. 69-80, and l. 142-144): for layer k > 0 the
  channel-mean of the reference's local variance-to-mean ratio
  :math:`r = \\operatorname{mean}_c(\\sigma_x^2 / (\\mu_x + 10^{-12}))` gives
  :math:`p_s = 1 / (1 + e^{-(r - \\theta_{k,0}) / \\theta_{k,1}})` and :math:`p_t = 1 - p_s` with
  :math:`\\theta = ((0, 0), (1.0, 0.29), (2.0, 0.52), (2.95, 0.56), (0.97, 0.25), (0.21, 0.10))`;
  the layers are visited from deep to shallow and layer 0 (the image) has none of its own: it
  reuses layer 1's :math:`p_s, p_t` (both are at full resolution), as the code does;
- pooling and score (l. 146-153): :math:`D = \\sum_k \\frac{1}{\\sum_l C_l}\\sum_c
  \\operatorname{mean}_{hw}(p_t T + p_s S)` and A-DISTS :math:`= 1 - D`
  (:math:`\\sum_l C_l = 1475`).

Only the reference image ``a`` (the first argument) sets the adaptive weights, so the distance is
not symmetric. Per-layer terms :math:`d_k = (C_k - \\sum_c \\operatorname{mean}_{hw}(p_t T + p_s S)) /
\\sum_l C_l` sum to the score. Golden values of the official script are in ``tests/distances/test_adists.py``.

Reference:
    Ding, Liu, Zou, Wang, Ma. "Locally Adaptive Structure and Texture Similarity for Image Quality
    Assessment", ACM Multimedia 2021. https://arxiv.org/abs/2110.08521
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from lossnet.errors import InputError

__all__ = ["ADISTS_PRESET", "ADISTS_WINDOW", "ADISTS_THETA", "adists_terms"]

ADISTS_PRESET = "adists"
#: Side of the Gaussian window of the local statistics (sigma = side / 3).
ADISTS_WINDOW = 21
#: (centre, scale) of the logistic that maps the variance-to-mean ratio of layer k to p_s.
ADISTS_THETA = ((0.0, 0.0), (1.0, 0.29), (2.0, 0.52), (2.95, 0.56), (0.97, 0.25), (0.21, 0.10))
_C1 = _C2 = 1e-6
_C0 = 1e-12


def _window(channels: int, dtype: torch.dtype, device, size: int = ADISTS_WINDOW) -> torch.Tensor:
    sigma = size / 3
    # the official op sequence: float32 list -> normalise -> outer product by mm
    g = torch.Tensor([math.exp(-((x - size // 2) ** 2) / float(2 * sigma**2)) for x in range(size)])
    g = (g / g.sum()).unsqueeze(1)
    w = g.mm(g.t()).float()[None, None]
    return w.expand(channels, 1, size, size).contiguous().to(device=device, dtype=dtype)


def _stats(x: torch.Tensor, y: torch.Tensor, size: int):
    c = x.shape[1]
    if x.shape[-2] >= size and x.shape[-1] >= size:
        w = _window(c, x.dtype, x.device, size)

        def conv(t):
            return F.conv2d(t, w, stride=1, padding=0, groups=c)

        xm, ym = conv(x), conv(y)
        return xm, ym, conv(x**2) - xm**2, conv(y**2) - ym**2, conv(x * y) - xm * ym
    xm, ym = x.mean([2, 3], keepdim=True), y.mean([2, 3], keepdim=True)
    xv, yv = ((x - xm) ** 2).mean([2, 3], keepdim=True), ((y - ym) ** 2).mean([2, 3], keepdim=True)
    return xm, ym, xv, yv, (x * y).mean([2, 3], keepdim=True) - xm * ym


def adists_terms(feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor], layer_weights=None) -> torch.Tensor:
    """Per-layer A-DISTS terms ``(N, 6)`` (summing to the score) of the six DISTS feature maps;
    ``feats_a`` is the reference (it sets the adaptive weights). ``layer_weights`` scale the terms."""
    if len(feats_a) != len(ADISTS_THETA):
        raise InputError(
            f"adists compares the {len(ADISTS_THETA)} DISTS layers (input, relu1_2 .. relu5_3 with L2 "
            f"pooling: preset='adists'), got {len(feats_a)} layers"
        )
    total = sum(int(f.shape[1]) for f in feats_a)
    terms: list[torch.Tensor | None] = [None] * len(feats_a)
    ps = pt = None
    for k in range(len(feats_a) - 1, -1, -1):
        dt = torch.float64 if feats_a[k].dtype == torch.float64 else torch.float32
        x, y = feats_a[k].to(dt), feats_b[k].to(dt)
        if x.shape != y.shape:
            x, y = torch.broadcast_tensors(x, y)
        xm, ym, xv, yv, cov = _stats(x, y, ADISTS_WINDOW)
        t = (2 * xm * ym + _C1) / (xm**2 + ym**2 + _C1)
        s = (2 * cov + _C2) / (xv + yv + _C2)
        if k > 0:
            ratio = torch.mean(xv / (xm + _C0), dim=1, keepdim=True)
            theta = ADISTS_THETA[k]
            ps = 1 / (1 + torch.exp(-(ratio - theta[0]) / theta[1]))
            pt = 1 - ps
        d_map = pt * t + ps * s
        terms[k] = (x.shape[1] - d_map.mean([2, 3]).sum(1)) / total
    out = torch.stack(terms, dim=1)
    if layer_weights is not None:
        out = out * torch.tensor([float(w) for w in layer_weights], dtype=out.dtype, device=out.device)
    return out
