"""Reading and writing images as float tensors in [0, 1], with errors that name the file.

Formats: anything Pillow decodes (PNG, JPEG, BMP, TIFF, ...). Greyscale and palette images are
converted on request; RGBA is composited onto white (what a viewer shows) rather than dropping
alpha silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from lossnet.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "load_image", "load_image_array", "save_image", "list_images", "to_tensor", "check_file"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")


def check_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Resolve ``path`` and check it is an existing, readable regular file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} not found: {p}")
    if not p.is_file():
        raise DataError(f"{what} is not a regular file: {p}")
    if not os.access(p, os.R_OK):
        raise DataError(f"{what} is not readable: {p}")
    return p


def load_image_array(path: str | os.PathLike, mode: str = "RGB") -> np.ndarray:
    """Decode an image file to a ``uint8`` array, HxWx3 for ``mode="RGB"``, HxW for ``"L"``.

    Raises:
        DataError: the file is missing or cannot be decoded; the message names the file.
    """
    from PIL import Image, UnidentifiedImageError

    p = check_file(path, "image")
    try:
        with Image.open(p) as img:
            img.load()
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
            if has_alpha:
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            if img.mode != mode:
                img = img.convert(mode)
            return np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot decode image {p}: {exc}") from exc


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """``uint8`` HxW or HxWxC array -> float32 CxHxW tensor in [0, 1]."""
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float().div_(255.0)


def load_image(path: str | os.PathLike, mode: str = "RGB") -> torch.Tensor:
    """Load an image as a float32 ``(C, H, W)`` tensor in [0, 1] (C = 3 for RGB, 1 for L)."""
    return to_tensor(load_image_array(path, mode))


def save_image(path: str | os.PathLike, image: torch.Tensor | np.ndarray) -> None:
    """Write a ``(C, H, W)`` or ``(H, W)`` image in [0, 1] (tensor) or uint8 (array) atomically."""
    from PIL import Image

    from lossnet.atomic import atomic_path

    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu().clamp(0, 1)
        if t.ndim == 3:
            t = t.permute(1, 2, 0)
            if t.shape[2] == 1:
                t = t[:, :, 0]
        array = (t.numpy() * 255.0 + 0.5).astype(np.uint8)
    else:
        array = np.asarray(image)
    p = Path(path)
    with atomic_path(p) as tmp:
        Image.fromarray(array).save(tmp, format=(p.suffix.lstrip(".").upper().replace("JPG", "JPEG") or "PNG"))


def list_images(folder: str | os.PathLike, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    d = Path(folder)
    if not d.exists():
        raise DataError(f"folder not found: {d}")
    if not d.is_dir():
        raise DataError(f"not a folder: {d}")
    exts = tuple(e.lower() for e in extensions)
    return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts)
