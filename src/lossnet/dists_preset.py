"""The DISTS preset: VGG16 with L2 pooling, six feature layers and the calibrated alpha/beta weights.

DISTS (Ding, Ma, Wang, Simoncelli 2020) compares, channel by channel, the spatial means
("structure" in their terms, :math:`l`) and the variance/covariance ("texture", :math:`s`) of VGG16
features, after replacing VGG's max pooling by a Hanning-window L2 pooling:

.. math::
    D(x, y) = 1 - \\sum_{l=0}^{5} \\sum_c \\left(\\alpha_{l,c}\\, l_c(\\phi_l(x), \\phi_l(y)) +
              \\beta_{l,c}\\, s_c(\\phi_l(x), \\phi_l(y))\\right)

with :math:`\\phi_0` the [0, 1] image itself and :math:`\\phi_{1..5}` = relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3 (``features.3/8/15/22/29``). The weights are those of the
``dists-pytorch`` 0.1 wheel (``DISTS_pytorch/weights.pt``, MIT licence), converted unchanged into
``lossnet/data/presets/dists-alpha-beta.safetensors`` by ``scripts/convert_presets.py`` and shipped
inside lossnet: nothing is downloaded and ``dists-pytorch`` is not needed. The backbone gets the ordinary torchvision VGG16 ImageNet weights
(:mod:`lossnet.weights`), as ``DISTS_pytorch.DISTS`` does with ``vgg16(pretrained=True)``.

``PerceptualMetric(preset="dists")`` equals ``DISTS_pytorch.DISTS()`` (to ~1e-6, gradients
included); see :func:`lossnet.distances.dists` for the per-layer form.

References:
    Ding, Ma, Wang, Simoncelli. "Image Quality Assessment: Unifying Structure and Texture
    Similarity", IEEE TPAMI 2020. https://github.com/dingkeyan93/DISTS
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from lossnet.errors import WeightsError

if TYPE_CHECKING:  # torch is imported where the weights are read: the constants stay cheap (CLI --help)
    import torch

__all__ = [
    "DISTS_PRESET",
    "DISTS_ARCH",
    "DISTS_LAYERS",
    "DISTS_CHANNELS",
    "dists_weights_path",
    "dists_version",
    "dists_channel_weights",
]

#: The preset name (``PerceptualMetric(preset="dists")``, ``lossnet similarity --preset dists``).
DISTS_PRESET = "dists"
DISTS_ARCH = "vgg16"
#: The image itself, then relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of VGG16.
DISTS_LAYERS = ("input", "features.3", "features.8", "features.15", "features.22", "features.29")
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)

#: The shipped alpha/beta (``scripts/convert_presets.py``).
_WEIGHTS = Path(__file__).resolve().parent / "data" / "presets" / "dists-alpha-beta.safetensors"


def dists_weights_path() -> Path:
    """The shipped ``lossnet/data/presets/dists-alpha-beta.safetensors`` (the ``dists-pytorch``
    wheel's ``DISTS_pytorch/weights.pt``, converted unchanged)."""
    if not _WEIGHTS.is_file():
        raise WeightsError(f"DISTS weights not found: {_WEIGHTS} (a broken lossnet install? reinstall lossnet)")
    return _WEIGHTS


def dists_version() -> str:
    """Version of the ``dists-pytorch`` package the shipped alpha/beta were converted from (``0.1``)."""
    from safetensors import safe_open

    try:
        with safe_open(str(dists_weights_path()), framework="pt") as fh:
            return (fh.metadata() or {}).get("source_version", "unknown")
    except Exception as exc:
        raise WeightsError(f"cannot read DISTS weights {_WEIGHTS}: {exc}") from exc


@lru_cache(maxsize=None)
def _load(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        state = load_file(path)
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
