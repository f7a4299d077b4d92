"""The super-resolution data pipeline and test protocol of Pihlgren et al.'s reference code.

Written from its description (``../shared/reference/AUDIT.md`` section 3, checked against the
reference repository's ``src/super_res``), not copied:

- **HR sample**: the image resized so that its shorter side is ``size`` (288; PIL bilinear, which
  antialiases), then the central ``size`` x ``size`` crop -- one fixed sample per image.
- **LR sample**: a PIL Gaussian blur of radius 1 applied to the *original* image, then resized so
  that its shorter side is ``size // scale`` (PIL bicubic, antialiased) and centre-cropped.
- **Test metrics** (``protocol = "reference"``): the reference's test script prints four numbers
  per test set (``R:src/super_res/test.py:126-187,282``), and which of them fed the paper's tables is
  not known, so all four are computed (:func:`reference_metrics_all`):

  - ``psnr`` ("PSNR_2") and ``ssim`` ("Test MSSIM"): both images quantised to 8 bit as the PNG files
    it writes hold them (``round(255 x)``), then ``Y' = (65.738 R + 129.057 G + 25.064 B) / 256`` of
    RGB in [0, 1] (no +16 offset), a 2-pixel border shaved, scikit-image's
    ``peak_signal_noise_ratio`` (data range 1) and ``structural_similarity`` with its default 7x7
    uniform window (data range 1);
  - ``psnr_torchmetrics`` ("Test PSNR") and ``ssim_torchmetrics`` ("Tensor MSSIM"): the network's
    output as it is (not quantised) and the HR image, ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``,
    no shave; torchmetrics' PSNR with the range it inferred when no ``data_range`` was given
    (:func:`torchmetrics_range`) and its default SSIM (11x11 Gaussian, sigma 1.5, range inferred).

The quick preset keeps lossnet's own pipeline (random native-resolution crops, torch degradation,
full-image test protocol); the paper preset uses this one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

__all__ = [
    "reference_pair",
    "reference_y",
    "reference_metrics",
    "reference_metrics_all",
    "ycbcr_y",
    "torchmetrics_range",
    "torchmetrics_psnr",
    "torchmetrics_ssim",
    "ReferencePairs",
    "SHAVE",
    "REFERENCE_METRICS",
]

#: The four test numbers of the reference, in lossnet's names (the reference's print labels in the comments).
REFERENCE_METRICS = (
    "psnr",
    "ssim",
    "psnr_torchmetrics",
    "ssim_torchmetrics",
)  # PSNR_2, Test MSSIM, Test PSNR, Tensor MSSIM

#: Border (pixels) the reference shaves before its test metrics, at every scale.
SHAVE = 2


def _resize_center(img: Image.Image, size: int, resample: int) -> Image.Image:
    """Shorter side to ``size`` (aspect kept, as torchvision's ``Resize(int)``), then a central square crop."""
    w, h = img.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    img = img.resize((new_w, new_h), resample)
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def _to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def reference_pair(path: str | os.PathLike, scale: int, size: int = 288) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hr (3, size, size), lr (3, size // scale, size // scale))`` of one image file, in [0, 1].

    Raises:
        lossnet.errors.DataError: the file cannot be decoded.
    """
    from lossnet.errors import DataError

    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None
    hr = _resize_center(img, size, Image.BILINEAR)
    lr = _resize_center(img.filter(ImageFilter.GaussianBlur(radius=1)), size // scale, Image.BICUBIC)
    return _to_tensor(hr), _to_tensor(lr)


def reference_y(x: torch.Tensor) -> np.ndarray:
    """Y' of an RGB ``(3, H, W)`` image in [0, 1] after 8-bit quantisation, border shaved, float64."""
    # 8-bit as torchvision's save_image writes it (in float32), read back as float64 / 255
    q = (x.detach().float().cpu().mul(255.0).add_(0.5).clamp_(0, 255)).to(torch.uint8)
    rgb = q.numpy().astype(np.float64) / 255.0
    y = (rgb[0] * 65.738 + rgb[1] * 129.057 + rgb[2] * 25.064) / 256.0
    return y[SHAVE:-SHAVE, SHAVE:-SHAVE]


def reference_metrics(sr: torch.Tensor, hr: torch.Tensor) -> tuple[float, float]:
    """``(psnr, ssim)`` of the reference's test, for one image pair."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = reference_y(sr), reference_y(hr)
    return float(peak_signal_noise_ratio(b, a, data_range=1.0)), float(structural_similarity(a, b, data_range=1.0))


def ycbcr_y(x: torch.Tensor) -> torch.Tensor:
    """Y of the reference's ``rgb_to_ycbcr``: ``16 + 65.481 R + 128.553 G + 24.966 B`` of ``(N, 3, H, W)``
    RGB in [0, 1], as ``(N, 1, H, W)`` (values as given: no quantisation, no clamp)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return r * 65.481 + g * 128.553 + b * 24.966 + 16


def torchmetrics_range(target: torch.Tensor) -> float:
    """The data range torchmetrics' ``PeakSignalNoiseRatio()`` used when constructed without one (as
    the reference does): the running minimum and maximum of the targets *start at 0*, so the range is
    ``max(target.max(), 0) - min(target.min(), 0)`` -- for a Y in [16, 235] that is the target's
    maximum, not its max - min. (torchmetrics versions since then require ``data_range``.)"""
    return float(max(float(target.max()), 0.0) - min(float(target.min()), 0.0))


def torchmetrics_psnr(sr: torch.Tensor, hr: torch.Tensor) -> float:
    """The reference's "Test PSNR" of one batch: torchmetrics' PSNR on :func:`ycbcr_y` of the raw
    output and of the HR image, unshaved, range :func:`torchmetrics_range` of the HR Y."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    a, b = ycbcr_y(_batch(sr).float()), ycbcr_y(_batch(hr).float())  # float32, as the reference
    return float(peak_signal_noise_ratio(a, b, data_range=torchmetrics_range(b)))


def torchmetrics_ssim(sr: torch.Tensor, hr: torch.Tensor) -> float:
    """The reference's "Tensor MSSIM": torchmetrics' default SSIM (11x11 Gaussian window, sigma 1.5,
    range inferred from the images) on :func:`ycbcr_y` of the raw output and of the HR image, unshaved."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = ycbcr_y(_batch(sr).float()), ycbcr_y(_batch(hr).float())  # float32, as the reference
    return float(structural_similarity_index_measure(a, b, data_range=None))


def _batch(x: torch.Tensor) -> torch.Tensor:
    return x[None] if x.ndim == 3 else x


def reference_metrics_all(sr: torch.Tensor, hr: torch.Tensor, sr_raw: torch.Tensor | None = None) -> dict[str, float]:
    """The reference test's four numbers for one image pair (:data:`REFERENCE_METRICS`): ``sr`` the
    8-bit output as saved, ``sr_raw`` the network's output before that (default ``sr``)."""
    psnr, ssim = reference_metrics(sr, hr)
    raw = sr if sr_raw is None else sr_raw
    return {
        "psnr": psnr,
        "ssim": ssim,
        "psnr_torchmetrics": torchmetrics_psnr(raw, hr),
        "ssim_torchmetrics": torchmetrics_ssim(raw, hr),
    }


class ReferencePairs(torch.utils.data.Dataset):
    """``(lr, hr)`` pairs of :func:`reference_pair`, decoded lazily (one file per item) so that a
    DataLoader with workers reads COCO-scale folders without holding them in memory. Unreadable
    files are reported and replaced by the next readable one."""

    def __init__(self, paths: list[Path], scale: int, size: int = 288):
        self.paths, self.scale, self.size = list(paths), scale, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        import warnings

        from lossnet.errors import DataError

        from .data import BadImageWarning

        for k in range(len(self.paths)):
            path = self.paths[(i + k) % len(self.paths)]
            try:
                hr, lr = reference_pair(path, self.scale, self.size)
                return lr, hr
            except DataError as exc:
                warnings.warn(f"skipping unreadable image {path}: {exc}", BadImageWarning, stacklevel=2)
        raise DataError("no readable image among the training files")
