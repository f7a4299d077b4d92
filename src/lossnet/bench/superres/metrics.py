"""Super-resolution image quality on the luma channel, as the SR literature reports it.

Convention (Set5/Set14/BSD100 tables since Yang et al. 2010 / Dong et al. 2014): convert RGB to
Y of ITU-R BT.601 (studio swing), ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with RGB in [0, 1]
and Y in [16, 235] on a [0, 255] scale; drop ``scale`` pixels on every border (the upsampler has
no information there); PSNR with peak 255; SSIM with an 11x11 Gaussian window (sigma 1.5) and
data range 255 (torchmetrics). The model output is first quantised to 8 bit, as a saved PNG would be.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

__all__ = ["rgb_to_y", "quantize", "shave", "y_psnr", "y_ssim"]

_BT601 = (65.481, 128.553, 24.966)


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma ``(..., 3, H, W)`` RGB in [0, 1] -> ``(..., 1, H, W)`` Y in [16, 235].

    Formula: ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (same as MATLAB ``rgb2ycbcr`` and
    ``skimage.color.rgb2ycbcr``).
    """
    if rgb.shape[-3] != 3:
        raise ValueError(f"expected 3 RGB channels, got shape {tuple(rgb.shape)}")
    w = torch.tensor(_BT601, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    return 16.0 + (rgb * w).sum(dim=-3, keepdim=True)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] images to the nearest 8-bit level (what saving them as PNG does)."""
    return (x.clamp(0, 1) * 255.0).round() / 255.0


def shave(x: torch.Tensor, border: int) -> torch.Tensor:
    """Drop ``border`` pixels on each side of ``(..., H, W)``."""
    if border <= 0:
        return x
    if x.shape[-2] <= 2 * border or x.shape[-1] <= 2 * border:
        raise ValueError(f"image {tuple(x.shape[-2:])} too small to crop a {border}-pixel border")
    return x[..., border:-border, border:-border]


def _prep(pred: torch.Tensor, target: torch.Tensor, border: int) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim == 3:
        pred, target = pred[None], target[None]
    return shave(rgb_to_y(pred.double()), border), shave(rgb_to_y(target.double()), border)


def y_psnr(pred: torch.Tensor, target: torch.Tensor, border: int = 0) -> float:
    """PSNR (dB) on BT.601 Y, peak 255, after cropping ``border`` pixels: ``10 log10(255^2 / MSE)``.

    Args:
        pred, target: ``(3, H, W)`` or ``(1, 3, H, W)`` RGB in [0, 1].
        border: pixels dropped on each side (the scale factor in the benchmark).
    """
    p, t = _prep(pred, target, border)
    return float(peak_signal_noise_ratio(p, t, data_range=255.0))


def y_ssim(pred: torch.Tensor, target: torch.Tensor, border: int = 0) -> float:
    """SSIM (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5, K = (0.01, 0.03)) on Y, range 255."""
    p, t = _prep(pred, target, border)
    return float(
        structural_similarity_index_measure(p, t, data_range=255.0, gaussian_kernel=True, sigma=1.5, kernel_size=11)
    )
