"""Low-resolution inputs: Gaussian blur (sigma = 1) then bicubic downsampling, as Johnson et al.

Reference: Johnson et al., ECCV 2016, Sec. 4.2: "we ... blur with a Gaussian kernel of width
sigma = 1.0 and downsample with bicubic interpolation".
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

__all__ = ["crop_to_multiple", "degrade", "bicubic_upsample"]


def crop_to_multiple(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right of ``(..., H, W)`` so that H and W are multiples of ``scale``."""
    h, w = hr.shape[-2:]
    if h < scale or w < scale:
        raise ValueError(f"image of size {h}x{w} is smaller than the scale factor {scale}")
    return hr[..., : h - h % scale, : w - w % scale]


def degrade(hr: torch.Tensor, scale: int, sigma: float = 1.0) -> torch.Tensor:
    """HR ``(..., 3, H, W)`` in [0, 1] -> LR ``(..., 3, H // scale, W // scale)`` in [0, 1].

    The HR image is first cropped to a multiple of ``scale`` (:func:`crop_to_multiple`), blurred
    with a Gaussian of std ``sigma`` (kernel ``2 * ceil(3 sigma) + 1``, reflect padding), then
    resized with bicubic interpolation (antialias off: the blur already band-limits it).

    Args:
        hr: high-resolution image(s), float in [0, 1].
        scale: downsampling factor (4 or 8 in the benchmark).
        sigma: Gaussian blur standard deviation in HR pixels; 0 disables the blur.

    Returns:
        The low-resolution image(s), clamped to [0, 1].
    """
    hr = crop_to_multiple(hr, scale)
    h, w = hr.shape[-2:]
    if sigma > 0:
        k = 2 * math.ceil(3 * sigma) + 1
        hr = TF.gaussian_blur(hr, kernel_size=[k, k], sigma=[sigma, sigma])
    lr = TF.resize(hr, [h // scale, w // scale], interpolation=InterpolationMode.BICUBIC, antialias=False)
    return lr.clamp(0.0, 1.0)


def bicubic_upsample(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline: LR ``(..., H, W)`` -> ``(..., H * scale, W * scale)``, clamped to [0, 1]."""
    h, w = lr.shape[-2:]
    return TF.resize(lr, [h * scale, w * scale], interpolation=InterpolationMode.BICUBIC, antialias=False).clamp(
        0.0, 1.0
    )
