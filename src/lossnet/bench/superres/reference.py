"""The super-resolution data pipeline and test protocol of Pihlgren et al.'s reference code.

Written from its description (``../shared/reference/AUDIT.md`` section 3, checked against the
reference repository's ``src/super_res``), not copied:

- **HR sample**: the image resized so that its shorter side is ``size`` (288; PIL bilinear, which
  antialiases), then the central ``size`` x ``size`` crop -- one fixed sample per image.
- **LR sample**: a PIL Gaussian blur of radius 1 applied to the *original* image, then resized so
  that its shorter side is ``size // scale`` (PIL bicubic, antialiased) and centre-cropped.
- **Test metrics** (``protocol = "reference"``): both images quantised to 8 bit as an image file
  would hold them (``round(255 x)``), then ``Y' = (65.738 R + 129.057 G + 25.064 B) / 256`` of RGB
  in [0, 1] (no +16 offset), a 2-pixel border shaved, scikit-image's ``peak_signal_noise_ratio``
  (data range 1) and ``structural_similarity`` with its default 7x7 uniform window (data range 1).

The quick preset keeps lossnet's own pipeline (random native-resolution crops, torch degradation,
full-image test protocol); the paper preset uses this one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

__all__ = ["reference_pair", "reference_y", "reference_metrics", "ReferencePairs", "SHAVE"]

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
