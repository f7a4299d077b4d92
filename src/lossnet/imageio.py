"""Reading and writing images as float tensors in [0, 1], with errors that name the file.

Formats: anything Pillow decodes (PNG, JPEG, BMP, TIFF, ...), and TIFF through ``tifffile`` when
Pillow cannot (multi-channel float TIFF). Values are scaled by the file's bit depth:

- 8-bit: ``v / 255`` (exactly as before);
- 16-bit (``I;16`` greyscale PNG/TIFF, and 16-bit RGB(A) TIFF read with tifffile): ``v / 65535``
  -- not clipped to 8 bits. Pillow decodes 16-bit *RGB(A)* PNGs to 8 bits per channel itself (the
  high byte), so those keep 8-bit precision but the right scale;
- float (``F`` TIFF, float TIFF via tifffile): used as is; values must lie in [0, 1] (a
  :class:`DataError` names the file and its range otherwise).

EXIF orientation is applied (``PIL.ImageOps.exif_transpose``): a phone photo stored sideways with
orientation 6 reads as every viewer shows it. An animated image (GIF, APNG, WebP) uses its first
frame, with a warning naming the file; a 32-bit integer TIFF is refused (its scale is unknown: 0-255,
0-65535 and full range all occur) rather than read as 16-bit; an image over :data:`LARGE_PIXELS`
pixels warns with the memory a comparison needs and points to ``--resize``.

Greyscale and palette images are converted on request; RGBA is composited onto white (what a
viewer shows) rather than dropping alpha silently. Decompression bombs (more pixels than
``PIL.Image.MAX_IMAGE_PIXELS`` allows), symlink loops and broken symlinks are :class:`DataError`\\ s
naming the file, like every other unreadable file, so callers that skip bad files skip them too.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from lossnet.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "load_image",
    "load_image_array",
    "load_image_float",
    "decode_image",
    "save_image",
    "list_images",
    "to_tensor",
    "check_file",
    "image_decode_errors",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")

_TIFF = (".tif", ".tiff")

#: Above this many pixels a warning gives the memory estimate and the ``--resize`` hint (a 100 Mpx
#: pair needs tens of GB of activations in a VGG/AlexNet forward pass).
LARGE_PIXELS = 40_000_000


def _check_pixels(p: Path, width: int, height: int) -> None:
    pixels = width * height
    if pixels > LARGE_PIXELS:
        # float32 RGB input plus the first conv block's activations (64 channels) dominate
        need = pixels * 4 * (3 + 64 * 2)
        warnings.warn(
            f"image {p} is {width}x{height} ({pixels / 1e6:.0f} Mpx): comparing it needs roughly "
            f"{need / 1e9:.0f} GB of memory; downscale it first or pass --resize",
            stacklevel=3,
        )


def check_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Check ``path`` is an existing, readable regular file (symlinks followed).

    Raises:
        DataError: missing, a symlink loop, a broken symlink, not a regular file, or unreadable;
            the message says which and names the file.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{what} is a symlink loop: {p}") from None
        if p.is_symlink():
            raise DataError(f"{what} is a broken symlink: {p} -> {os.readlink(p)}") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DataError(f"{what} not found: {p}") from None
        raise DataError(f"{what} cannot be accessed: {p} ({exc.strerror})") from None
    import stat

    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{what} is not a regular file: {p}")
    if not os.access(p, os.R_OK):
        raise DataError(f"{what} is not readable: {p}")
    return p


def image_decode_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "this file cannot be decoded" (Pillow's, including
    ``DecompressionBombError``, which is not an ``OSError``), for callers that decode themselves."""
    from PIL import Image, UnidentifiedImageError

    return (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError)


def _bomb_message(p: Path, pixels: int | None = None) -> str:
    from PIL import Image

    size = f" ({pixels} pixels)" if pixels else ""
    return (
        f"image {p} is too large to decode safely{size}: more than twice PIL.Image.MAX_IMAGE_PIXELS "
        f"({Image.MAX_IMAGE_PIXELS}); a decompression bomb? Raise PIL.Image.MAX_IMAGE_PIXELS if the file is trusted"
    )


def _float_checked(array: np.ndarray, p: Path) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise DataError(f"image {p} contains NaN/Inf values")
    lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise DataError(f"float image {p} has values in [{lo:.4g}, {hi:.4g}]; lossnet reads float images as [0, 1]")
    return np.clip(array, 0.0, 1.0)


def _to_mode(array: np.ndarray, mode: str, p: Path) -> np.ndarray:
    """HxW / HxWxC array (uint8, uint16 or float32) to ``mode`` ("RGB": HxWx3, "L": HxW), same dtype."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] in (2, 4):  # grey+alpha / RGBA: composite onto white
        full = float(np.iinfo(array.dtype).max) if array.dtype.kind == "u" else 1.0
        colour, alpha = array[:, :, :-1].astype(np.float64) / full, array[:, :, -1:].astype(np.float64) / full
        comp = colour * alpha + (1.0 - alpha)
        array = (comp * full + 0.5).astype(array.dtype) if array.dtype.kind == "u" else comp.astype(np.float32)
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2) if mode == "RGB" else array
    if array.ndim != 3 or array.shape[2] != 3:
        raise DataError(f"cannot decode image {p}: unsupported layout {array.shape}")
    if mode == "RGB":
        return array
    # ITU-R 601-2 luma, as Pillow's convert("L")
    luma = array[:, :, 0] * 0.299 + array[:, :, 1] * 0.587 + array[:, :, 2] * 0.114
    if array.dtype.kind == "u":
        return (luma + 0.5).astype(array.dtype)
    return luma.astype(np.float32)


def _decode_tifffile(p: Path, mode: str) -> np.ndarray | None:
    """A TIFF through tifffile (None when tifffile is missing or cannot read it either)."""
    try:
        import tifffile
    except ImportError:
        return None
    from PIL import Image

    try:
        with tifffile.TiffFile(p) as tif:
            page = tif.pages[0]
            pixels = int(np.prod(page.shape[:2])) if page.shape else 0
            if Image.MAX_IMAGE_PIXELS and pixels > 2 * Image.MAX_IMAGE_PIXELS:
                raise DataError(_bomb_message(p, pixels))
            array = page.asarray()
    except DataError:
        raise
    except Exception:  # not decodable by tifffile (compression codec missing, ...)
        return None
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 2, 3, 4):
        array = array.transpose(1, 2, 0)  # planar
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        pass
    elif array.dtype.kind == "f":
        array = _float_checked(array, p)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    else:
        raise DataError(f"cannot decode image {p}: unsupported sample type {array.dtype}")
    return _to_mode(array, mode, p)


def _tiff_deeper_than_8_bits(img) -> bool:
    if getattr(img, "format", None) != "TIFF" or img.mode not in ("RGB", "RGBA", "CMYK"):
        return False
    bits = img.tag_v2.get(258, (8,)) if hasattr(img, "tag_v2") else (8,)
    bits = bits if isinstance(bits, tuple) else (bits,)
    return max(bits) > 8


def _tiff_bits(img) -> int:
    bits = img.tag_v2.get(258, (0,)) if hasattr(img, "tag_v2") else (0,)
    bits = bits if isinstance(bits, tuple) else (bits,)
    return max(bits) if bits else 0


def _upright(img):
    """The image as displayed: EXIF orientation applied (a no-op without the tag)."""
    from PIL import ImageOps

    try:
        out = ImageOps.exif_transpose(img)
    except (ValueError, SyntaxError, OSError, KeyError, TypeError):  # a corrupt EXIF block: use the stored pixels
        return img
    return img if out is None else out


def decode_image(path: str | os.PathLike, mode: str = "RGB") -> np.ndarray:
    """Decode an image file at its own bit depth: ``uint8`` (8-bit), ``uint16`` (16-bit) or
    ``float32`` in [0, 1] (float files); HxWx3 for ``mode="RGB"``, HxW for ``"L"``.

    Raises:
        DataError: the file is missing, a symlink loop, too large (decompression bomb), or cannot
            be decoded; the message names the file.
    """
    from PIL import Image, UnidentifiedImageError

    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    p = check_file(path, "image")
    try:
        with Image.open(p) as img:
            if _tiff_deeper_than_8_bits(img):
                array = _decode_tifffile(p, mode)  # Pillow would keep only the high byte of each channel
                if array is not None:
                    return array
            frames = getattr(img, "n_frames", 1) or 1
            if frames > 1 and getattr(img, "is_animated", False):
                warnings.warn(f"image {p} is animated ({frames} frames); only the first frame is used", stacklevel=2)
            _check_pixels(p, *img.size)
            if img.mode == "I" and getattr(img, "format", None) == "TIFF" and _tiff_bits(img) == 32:
                raise DataError(
                    f"cannot decode image {p}: 32-bit integer TIFF samples have no known scale "
                    "(0-255? 0-65535? full range?); save it as 8-bit, 16-bit or float TIFF"
                )
            img.load()
            img = _upright(img)
            if img.mode.startswith("I;16") or img.mode == "I":
                array = np.asarray(img)
                if img.mode == "I" and array.size and (array.min() < 0 or array.max() > 65535):
                    raise DataError(f"cannot decode image {p}: 32-bit integer samples are not supported")
                return _to_mode(array.astype(np.uint16), mode, p)
            if img.mode == "F":
                return _to_mode(_float_checked(np.asarray(img), p), mode, p)
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
            if has_alpha:
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            if img.mode != mode:
                img = img.convert(mode)
            return np.asarray(img, dtype=np.uint8).copy()
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(_bomb_message(p)) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        if p.suffix.lower() in _TIFF:
            array = _decode_tifffile(p, mode)
            if array is not None:
                return array
        raise DataError(f"cannot decode image {p}: {exc}") from exc


def load_image_array(path: str | os.PathLike, mode: str = "RGB") -> np.ndarray:
    """Decode an image file to a ``uint8`` array, HxWx3 for ``mode="RGB"``, HxW for ``"L"``.

    16-bit and float files are rounded to 8 bits (``round(v / 65535 * 255)``); use
    :func:`load_image` / :func:`load_image_float` to keep their precision.

    Raises:
        DataError: the file is missing or cannot be decoded; the message names the file.
    """
    array = decode_image(path, mode)
    if array.dtype == np.uint8:
        return array
    return (_as_float(array) * 255.0 + 0.5).astype(np.uint8)


def _as_float(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535.0)
    return array.astype(np.float32)


def load_image_float(path: str | os.PathLike, mode: str = "RGB") -> np.ndarray:
    """Decode to a ``float32`` array in [0, 1] scaled by the file's bit depth (HxWx3 or HxW)."""
    return _as_float(decode_image(path, mode))


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC array -> float32 CxHxW tensor in [0, 1]: ``uint8 / 255``, ``uint16 / 65535``,
    float as is."""
    if array.ndim == 2:
        array = array[:, :, None]
    t = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    if array.dtype == np.uint8:
        return t.float().div_(255.0)
    if array.dtype == np.uint16:
        return t.to(torch.int32).float().div_(65535.0)
    return t.float()


def load_image(path: str | os.PathLike, mode: str = "RGB") -> torch.Tensor:
    """Load an image as a float32 ``(C, H, W)`` tensor in [0, 1] (C = 3 for RGB, 1 for L), scaled
    by the file's bit depth (8-bit, 16-bit or float)."""
    return to_tensor(decode_image(path, mode))


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


def list_images(
    folder: str | os.PathLike, extensions: Iterable[str] = IMAGE_EXTENSIONS, *, include_unreadable: bool = False
) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped).

    Args:
        include_unreadable: also list entries with an image extension that are not readable
            regular files (broken symlinks, symlink loops, ...), so that a caller reports them per
            file (:func:`load_image` raises a :class:`DataError` naming the problem) instead of
            them silently missing. By default they are left out.
    """
    d = Path(folder)
    if not d.exists():
        raise DataError(f"folder not found: {d}")
    if not d.is_dir():
        raise DataError(f"not a folder: {d}")
    exts = tuple(e.lower() for e in extensions)
    out = []
    for p in d.iterdir():
        if p.name.startswith(".") or p.suffix.lower() not in exts:
            continue
        try:
            regular = p.is_file()
        except OSError:  # e.g. ELOOP on some Python versions
            regular = False
        if regular or (include_unreadable and (p.is_symlink() or not p.is_dir())):
            out.append(p)
    return sorted(out)
