"""Massachusetts Roads tiles: finding image/mask pairs on disk and sampling training crops.

Accepted layouts of ``root`` (``split`` is ``train``, ``valid``/``val`` or ``test``):

* original (Mnih 2013) and the ``../shared`` subset: ``root/<split>/sat/*`` + ``root/<split>/map/*``;
* the common re-packaging: ``root/tiff/<split>/*`` + ``root/tiff/<split>_labels/*`` (also with
  ``root`` being the ``tiff`` folder itself).

Images and masks are paired by file stem (``.tif``, ``.tiff``, ``.png``, ``.jpg``, ``.jpeg``);
masks are binarised at > 127.

References:
  Mnih, "Machine Learning for Aerial Image Labeling", PhD thesis, University of Toronto, 2013.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lossnet.errors import DataError

__all__ = ["RoadTile", "find_tiles", "load_tile", "nodata_fraction", "RandomCrops", "ROAD_EXTENSIONS"]

ROAD_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
_SPLIT_ALIASES = {"train": ("train",), "valid": ("valid", "val"), "val": ("valid", "val"), "test": ("test",)}


@dataclass(frozen=True)
class RoadTile:
    """One aerial image and its road mask."""

    name: str
    image: Path
    mask: Path


def _by_stem(folder: Path, what: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith(".") or p.suffix.lower() not in ROAD_EXTENSIONS:
            continue
        if p.stem in files:
            raise DataError(f"two {what} files with stem {p.stem!r}: {files[p.stem]} and {p}")
        files[p.stem] = p
    return files


def _layout_dirs(root: Path, split: str) -> tuple[Path, Path] | None:
    for name in _SPLIT_ALIASES.get(split, (split,)):
        if (root / name / "sat").is_dir() or (root / name / "map").is_dir():
            return root / name / "sat", root / name / "map"
        for base in (root / "tiff", root):
            if (base / name).is_dir() and (base / f"{name}_labels").is_dir():
                return base / name, base / f"{name}_labels"
    return None


def find_tiles(root: str | os.PathLike, split: str) -> list[RoadTile]:
    """Image/mask pairs of one split, sorted by name.

    Raises:
        DataError: the folder or split is missing, a folder is empty, or an image has no mask (or a
            mask no image); the message names the files.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"roads data folder not found: {root}")
    dirs = _layout_dirs(root, split)
    if dirs is None:
        raise DataError(
            f"no {split!r} split in {root}: expected {split}/sat + {split}/map, or tiff/{split} + tiff/{split}_labels"
        )
    sat_dir, map_dir = dirs
    for d in (sat_dir, map_dir):
        if not d.is_dir():
            raise DataError(f"folder not found: {d}")
    images, masks = _by_stem(sat_dir, "image"), _by_stem(map_dir, "mask")
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if no_mask or no_image:
        parts = []
        if no_mask:
            parts.append(f"images without mask in {map_dir}: {', '.join(str(images[s].name) for s in no_mask[:5])}")
        if no_image:
            parts.append(f"masks without image in {sat_dir}: {', '.join(str(masks[s].name) for s in no_image[:5])}")
        raise DataError("; ".join(parts))
    if not images:
        raise DataError(f"no image files ({'/'.join(ROAD_EXTENSIONS)}) in {sat_dir}")
    return [RoadTile(s, images[s], masks[s]) for s in sorted(images)]


def load_tile(tile: RoadTile) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8 (H, W, 3), mask bool (H, W))``.

    Raises:
        DataError: a file is missing/corrupt or image and mask sizes differ (names the files).
    """
    from lossnet.imageio import load_image_array

    image = load_image_array(tile.image, "RGB")
    mask = load_image_array(tile.mask, "L") > 127
    if image.shape[:2] != mask.shape:
        raise DataError(f"image {tile.image} is {image.shape[1]}x{image.shape[0]} but mask {tile.mask} is {mask.shape[1]}x{mask.shape[0]}")
    return image, mask


def nodata_fraction(image: np.ndarray, white: int = 250) -> float:
    """Fraction of pixels that are white no-data (every channel >= ``white``)."""
    return float((image >= white).all(axis=-1).mean())


class RandomCrops(torch.utils.data.Dataset):
    """Random ``crop x crop`` patches with random flips from a list of tiles.

    ``len`` is the number of patches per epoch; patch ``i`` of epoch ``e`` is drawn from a generator
    seeded by ``(seed, e, i)``, so a resumed run sees the same patches. A patch with more than
    ``max_nodata`` white no-data pixels is rejected and redrawn (up to ``max_tries`` times, then
    the least-white candidate is used so a fully white tile set cannot hang training).

    Returns per item: ``(image float32 (3, crop, crop) in [0, 1], mask float32 (1, crop, crop) in {0, 1})``.
    """

    def __init__(
        self,
        tiles: list[RoadTile],
        crop: int,
        length: int,
        seed: int = 0,
        max_nodata: float = 0.5,
        max_tries: int = 50,
        cache: bool = True,
    ) -> None:
        if not tiles:
            raise DataError("no training tiles")
        self.tiles, self.crop, self.length, self.seed = list(tiles), int(crop), int(length), int(seed)
        self.max_nodata, self.max_tries, self.cache = float(max_nodata), int(max_tries), cache
        self.epoch = 0
        self.rejected = 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.length

    def _tile(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i in self._cache:
            return self._cache[i]
        image, mask = load_tile(self.tiles[i])
        if min(mask.shape) < self.crop:
            raise DataError(f"tile {self.tiles[i].image} ({mask.shape[1]}x{mask.shape[0]}) is smaller than the {self.crop} px crop")
        if self.cache:
            self._cache[i] = (image, mask)
        return image, mask

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        best, best_white = None, 2.0
        for _ in range(self.max_tries):
            image, mask = self._tile(int(rng.integers(len(self.tiles))))
            y = int(rng.integers(mask.shape[0] - self.crop + 1))
            x = int(rng.integers(mask.shape[1] - self.crop + 1))
            img = image[y : y + self.crop, x : x + self.crop]
            white = nodata_fraction(img)
            if white <= self.max_nodata:
                return img, mask[y : y + self.crop, x : x + self.crop]
            self.rejected += 1
            if white < best_white:
                best, best_white = (img, mask[y : y + self.crop, x : x + self.crop]), white
        return best  # type: ignore[return-value]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        img, mask = self.sample(rng)
        if rng.random() < 0.5:
            img, mask = img[:, ::-1], mask[:, ::-1]
        if rng.random() < 0.5:
            img, mask = img[::-1], mask[::-1]
        image_t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)
        mask_t = torch.from_numpy(np.ascontiguousarray(mask))[None].float()
        return image_t, mask_t
