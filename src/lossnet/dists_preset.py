"""The DISTS preset: VGG16 with L2 pooling, six feature layers and the calibrated alpha/beta weights.

DISTS (Ding, Ma, Wang, Simoncelli 2020) compares, channel by channel, the spatial means
("structure" in their terms, :math:`l`) and the variance/covariance ("texture", :math:`s`) of VGG16
features, after replacing VGG's max pooling by a Hanning-window L2 pooling:

.. math::
    D(x, y) = 1 - \\sum_{l=0}^{5} \\sum_c \\left(\\alpha_{l,c}\\, l_c(\\phi_l(x), \\phi_l(y)) +
              \\beta_{l,c}\\, s_c(\\phi_l(x), \\phi_l(y))\\right)

with :math:`\\phi_0` the [0, 1] image itself and :math:`\\phi_{1..5}` = relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3 (``features.3/8/15/22/29``). The weights are those shipped inside the
``dists-pytorch`` wheel (``DISTS_pytorch/weights.pt``); they are read from the installed package,
nothing is downloaded. The backbone gets the ordinary torchvision VGG16 ImageNet weights
(:mod:`lossnet.weights`), as ``DISTS_pytorch.DISTS`` does with ``vgg16(pretrained=True)``.

``PerceptualMetric(preset="dists")`` equals ``DISTS_pytorch.DISTS()`` (to ~1e-6, gradients
included); see :func:`lossnet.distances.dists` for the per-layer form.

References:
    Ding, Ma, Wang, Simoncelli. "Image Quality Assessment: Unifying Structure and Texture
    Similarity", IEEE TPAMI 2020. https://github.com/dingkeyan93/DISTS
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from lossnet.errors import WeightsError

if TYPE_CHECKING:  # torch is imported where the weights are read: the constants stay cheap (CLI --help)
    import torch

__all__ = ["DISTS_PRESET", "DISTS_ARCH", "DISTS_LAYERS", "DISTS_CHANNELS", "dists_weights_path", "dists_version",
           "dists_channel_weights"]

#: The preset name (``PerceptualMetric(preset="dists")``, ``lossnet similarity --preset dists``).
DISTS_PRESET = "dists"
DISTS_ARCH = "vgg16"
#: The image itself, then relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of VGG16.
DISTS_LAYERS = ("input", "features.3", "features.8", "features.15", "features.22", "features.29")
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)

_INSTALL = "the DISTS preset needs the 'dists-pytorch' package for its alpha/beta weights (pip install dists-pytorch)"


def dists_weights_path() -> Path:
    """``weights.pt`` inside the installed ``DISTS_pytorch`` package."""
    spec = importlib.util.find_spec("DISTS_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(_INSTALL)
    path = Path(list(spec.submodule_search_locations)[0]) / "weights.pt"
    if not path.is_file():
        raise WeightsError(f"DISTS weights not found: {path} ({_INSTALL})")
    return path


def dists_version() -> str:
    """Version of the installed ``dists-pytorch`` distribution."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("DISTS-pytorch")
    except PackageNotFoundError:
        raise WeightsError(_INSTALL) from None


@lru_cache(maxsize=None)
def _load(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        alpha, beta = state["alpha"], state["beta"]
    except Exception as exc:  # corrupt / truncated file, other layout
        raise WeightsError(f"cannot read DISTS weights {path}: {type(exc).__name__}: {exc}") from exc
    n = sum(DISTS_CHANNELS)
    if alpha.numel() != n or beta.numel() != n:
        raise WeightsError(f"DISTS weights {path} have {alpha.numel()}/{beta.numel()} entries, expected {n}")
    return alpha.detach().float().reshape(-1).clone(), beta.detach().float().reshape(-1).clone()


def dists_channel_weights() -> list[torch.Tensor]:
    """Per layer a ``(2, C_l)`` tensor ``(alpha; beta)``, normalised as DISTS does
    (divided by :math:`\\sum \\alpha + \\sum \\beta`, so that identical images score 0)."""
    import torch

    alpha, beta = _load(str(dists_weights_path()))
    w_sum = alpha.sum() + beta.sum()
    a = torch.split(alpha / w_sum, DISTS_CHANNELS)
    b = torch.split(beta / w_sum, DISTS_CHANNELS)
    return [torch.stack([x, y]) for x, y in zip(a, b)]
