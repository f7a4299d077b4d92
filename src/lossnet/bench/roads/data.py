"""Massachusetts Roads tiles: finding image/mask pairs on disk and sampling training crops.

Accepted layouts of ``root`` (``split`` is ``train``, ``valid``/``val`` or ``test``):

* original (Mnih 2013) and the ``../shared`` subset: ``root/<split>/sat/*`` + ``root/<split>/map/*``;
* the authors' code (Pihlgren et al.): ``root/<split>/input/*`` + ``root/<split>/output/*`` with
  splits ``train``, ``val`` and ``test``;
* the common re-packaging: ``root/tiff/<split>/*`` + ``root/tiff/<split>_labels/*`` (also with
  ``root`` being the ``tiff`` folder itself).

Training samplers (``sampler`` option):

* :class:`TileEpochCrops` (``reference``, the authors' sampler): every tile once per pass in a
  shuffled order, a uniformly random crop, and a horizontal flip with probability 1/2;
* :class:`RandomCrops` (``random``): tiles drawn with replacement, crops with too much white
  no-data rejected, horizontal and vertical flips.

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

__all__ = [
    "RoadTile",
    "find_tiles",
    "load_tile",
    "nodata_fraction",
    "RandomCrops",
    "TileEpochCrops",
    "split_holdout",
    "parse_holdout",
    "canonical_split",
    "has_split",
    "ROAD_EXTENSIONS",
    "LAYOUTS",
]

ROAD_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
_SPLIT_ALIASES = {"train": ("train",), "valid": ("valid", "val"), "val": ("valid", "val"), "test": ("test",)}
#: (image folder, mask folder) names inside ``root/<split>``: Mnih's and the authors' code's.
LAYOUTS = (("sat", "map"), ("input", "output"))


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
        for images, masks in LAYOUTS:
            if (root / name / images).is_dir() or (root / name / masks).is_dir():
                return root / name / images, root / name / masks
        for base in (root / "tiff", root):
            if (base / name).is_dir() and (base / f"{name}_labels").is_dir():
                return base / name, base / f"{name}_labels"
    return None


def has_split(root: str | os.PathLike, split: str) -> bool:
    """Whether ``root`` has ``split`` in one of the accepted layouts (``val``/``valid`` alike)."""
    root = Path(root).expanduser()
    return root.is_dir() and _layout_dirs(root, split) is not None


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
            f"no {split!r} split in {root}: expected {split}/sat + {split}/map, {split}/input + {split}/output, "
            f"or tiff/{split} + tiff/{split}_labels"
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
        raise DataError(
            f"image {tile.image} is {image.shape[1]}x{image.shape[0]} but mask {tile.mask} is {mask.shape[1]}x{mask.shape[0]}"
        )
    return image, mask


def tile_cache_dir() -> Path:
    """Folder of the decoded-tile cache of :func:`load_tile_mapped`: ``$LOSSNET_TILE_CACHE``, else
    ``<user cache>/lossnet/tiles`` (``~/.cache/lossnet/tiles`` on Linux). Per user, not a shared
    temporary folder: another user must not be able to plant arrays that a run would read."""
    env = os.environ.get("LOSSNET_TILE_CACHE")
    if env:
        return Path(env).expanduser()
    from lossnet.datasets.store import data_root

    return data_root().parent / "tiles" if not os.environ.get("LOSSNET_DATA") else data_root() / ".tiles"


def load_tile_mapped(tile: RoadTile) -> tuple[np.ndarray, np.ndarray]:
    """:func:`load_tile` through a disk cache of decoded arrays, memory-mapped read-only.

    DataLoader workers cannot share an in-process cache (each would hold its own copy of the decoded
    tiles, about 10 GB for the 1,108 training tiles), and decoding a 1500 x 1500 tile for every
    224 px crop makes data loading the bottleneck of a GPU step. The first read of a tile writes
    ``<cache>/<hash>.{img,mask}.npy`` (keyed by path, size and modification time; written
    atomically); later reads map them, so a crop reads only its pages and the OS page cache is
    shared by all workers.
    """
    import hashlib

    stats = [(p, p.stat()) for p in (tile.image, tile.mask)]
    key = hashlib.sha1(repr([(str(p.resolve()), st.st_size, st.st_mtime_ns) for p, st in stats]).encode()).hexdigest()[
        :20
    ]
    folder = tile_cache_dir()
    img_path, mask_path = folder / f"{key}.img.npy", folder / f"{key}.mask.npy"
    if not (img_path.exists() and mask_path.exists()):
        image, mask = load_tile(tile)
        folder.mkdir(parents=True, exist_ok=True)
        for path, arr in ((img_path, image), (mask_path, mask)):
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
            os.replace(tmp, path)
        return image, mask
    return np.load(img_path, mmap_mode="r", allow_pickle=False), np.load(mask_path, mmap_mode="r", allow_pickle=False)


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
        image, mask = load_tile(self.tiles[i]) if self.cache else load_tile_mapped(self.tiles[i])
        if min(mask.shape) < self.crop:
            raise DataError(
                f"tile {self.tiles[i].image} ({mask.shape[1]}x{mask.shape[0]}) is smaller than the {self.crop} px crop"
            )
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
        return _to_tensors(img, mask)


def _to_tensors(img: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    image_t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)
    mask_t = torch.from_numpy(np.ascontiguousarray(mask))[None].float()
    return image_t, mask_t


class TileEpochCrops(RandomCrops):
    """The authors' training sampler: every tile once per pass, in a shuffled order.

    Item ``i`` of epoch ``e`` is tile ``order[i]``, where ``order`` concatenates random
    permutations of all tiles (generator seeded by ``(seed, e)``). ``length`` None is one pass (a
    DataLoader without ``drop_last`` then ends with a smaller batch, as in the authors' code); a
    larger ``length`` continues with further permutations. Each item is a uniformly random
    ``crop x crop`` window at native resolution and a horizontal flip with probability 1/2
    (generator seeded by ``(seed, e, i)``, so a resumed run sees the same crops). There is no
    vertical flip and no no-data rejection.

    Returns per item: ``(image float32 (3, crop, crop) in [0, 1], mask float32 (1, crop, crop) in {0, 1})``.
    """

    def __init__(
        self, tiles: list[RoadTile], crop: int, length: int | None = None, seed: int = 0, cache: bool = True
    ) -> None:
        super().__init__(tiles, crop, len(tiles) if length is None else length, seed=seed, max_nodata=1.0, cache=cache)
        self._order_epoch: int | None = None
        self._order: np.ndarray | None = None

    def order(self) -> np.ndarray:
        """Tile indices of this epoch's items (``len(self)`` of them)."""
        if self._order_epoch != self.epoch or self._order is None:
            rng = np.random.default_rng((self.seed, self.epoch))
            n = len(self.tiles)
            passes = -(-self.length // n)
            self._order = np.concatenate([rng.permutation(n) for _ in range(passes)])[: self.length]
            self._order_epoch = self.epoch
        return self._order

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        image, mask = self._tile(int(self.order()[index]))
        rng = np.random.default_rng((self.seed, self.epoch, index))
        y = int(rng.integers(mask.shape[0] - self.crop + 1))
        x = int(rng.integers(mask.shape[1] - self.crop + 1))
        img, m = image[y : y + self.crop, x : x + self.crop], mask[y : y + self.crop, x : x + self.crop]
        if rng.random() < 0.5:
            img, m = img[:, ::-1], m[:, ::-1]
        return _to_tensors(img, m)


HOLDOUT_PREFIX = "holdout:"


def parse_holdout(split: str) -> int | None:
    """``"holdout:N"`` -> N (tiles held out of the training split for validation); another name -> None.

    Raises:
        ValueError: ``holdout:`` without a positive integer.
    """
    if not str(split).lower().startswith(HOLDOUT_PREFIX):
        return None
    try:
        n = int(str(split)[len(HOLDOUT_PREFIX) :])
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"expected {HOLDOUT_PREFIX}N with N >= 1 training tiles to hold out, got {split!r}")
    return n


def split_holdout(tiles: list[RoadTile], n: int) -> tuple[list[RoadTile], list[RoadTile]]:
    """``(training tiles, held-out tiles)``: ``n`` evenly spaced tiles of the (sorted) list are held out.

    Raises:
        DataError: fewer than ``n + 1`` tiles (at least one must remain for training).
    """
    if len(tiles) <= n:
        raise DataError(
            f"cannot hold out {n} of {len(tiles)} training tiles for validation: at least one must remain for training"
        )
    held = sorted({round((i + 0.5) * len(tiles) / n - 0.5) for i in range(n)})
    held_set = set(held)
    return [t for i, t in enumerate(tiles) if i not in held_set], [tiles[i] for i in held]


def canonical_split(name: str) -> str:
    """The split a name refers to (``val`` and ``valid`` are the same split)."""
    return "valid" if name in ("val", "valid") else name
