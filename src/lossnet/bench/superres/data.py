"""Image folders for super-resolution: training crops, validation and test images.

Images are decoded once and kept as ``uint8`` arrays (the ../shared training pool of 291 images is
~100 MB). A file that cannot be decoded, or is smaller than the training crop, is reported with a
warning naming it and skipped: one bad file in a 10,000-image folder must not end a run.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lossnet.errors import DataError
from lossnet.imageio import list_images, load_image_array, to_tensor

__all__ = ["BadImageWarning", "load_folder", "select", "RandomCrops", "center_crop"]


class BadImageWarning(UserWarning):
    """An image in a data folder was unreadable or too small and was skipped."""


def load_folder(
    folders: Sequence[str | os.PathLike] | str | os.PathLike, min_size: int = 1
) -> list[tuple[Path, np.ndarray]]:
    """Decode every image of one or more folders as RGB ``uint8`` HxWx3 (greyscale is repeated).

    Args:
        folders: folder(s) whose images (non-recursive, sorted by name) are read.
        min_size: images whose shorter side is below this are skipped with a warning.

    Returns:
        ``[(path, array), ...]`` in folder order, then name order.

    Raises:
        DataError: a folder is missing, or no usable image remains.
    """
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    out: list[tuple[Path, np.ndarray]] = []
    for folder in folders:
        for path in list_images(folder):
            try:
                arr = load_image_array(path, "RGB")
            except DataError as exc:
                warnings.warn(f"skipping unreadable image {path}: {exc}", BadImageWarning, stacklevel=2)
                continue
            if min(arr.shape[:2]) < min_size:
                warnings.warn(
                    f"skipping image {path}: {arr.shape[1]}x{arr.shape[0]} is smaller than {min_size} px",
                    BadImageWarning,
                    stacklevel=2,
                )
                continue
            out.append((path, arr))
    if not out:
        raise DataError(f"no usable images in {', '.join(str(f) for f in folders)}")
    return out


def select(items: list, count: int | None, seed: int) -> list:
    """A seeded random subset of ``count`` items (all of them when ``count`` is None/too large), in original order."""
    if count is None or count >= len(items):
        return list(items)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(items), size=count, replace=False))
    return [items[i] for i in idx]


def center_crop(arr: np.ndarray, size: int | None) -> np.ndarray:
    """Central ``size`` x ``size`` crop of an HxWxC array (whole image if ``size`` is None or larger)."""
    if size is None:
        return arr
    h, w = arr.shape[:2]
    s_h, s_w = min(size, h), min(size, w)
    top, left = (h - s_h) // 2, (w - s_w) // 2
    return arr[top : top + s_h, left : left + s_w]


class RandomCrops:
    """An endless stream of random ``crop`` x ``crop`` HR batches (uniform image, uniform position).

    The generator is the only source of randomness, so saving/restoring its state makes a resumed
    run draw the same crops an uninterrupted run would have.
    """

    def __init__(self, images: list[np.ndarray], crop: int, batch_size: int, generator: torch.Generator) -> None:
        if not images:
            raise DataError("no training images")
        self.images, self.crop, self.batch_size, self.generator = images, crop, batch_size, generator

    def next_batch(self) -> torch.Tensor:
        """``(batch_size, 3, crop, crop)`` float32 in [0, 1]."""
        batch = []
        for _ in range(self.batch_size):
            arr = self.images[int(torch.randint(len(self.images), (1,), generator=self.generator))]
            h, w = arr.shape[:2]
            top = int(torch.randint(h - self.crop + 1, (1,), generator=self.generator))
            left = int(torch.randint(w - self.crop + 1, (1,), generator=self.generator))
            batch.append(to_tensor(arr[top : top + self.crop, left : left + self.crop]))
        return torch.stack(batch)
