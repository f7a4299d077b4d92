"""Reading the BAPPS dataset (Zhang et al., CVPR 2018) from its on-disk layout.

Layout (as unpacked by the LPIPS authors' ``scripts/download_dataset.sh``)::

    BAPPS/2afc/{train,val}/<subset>/{ref,p0,p1}/*.png  judge/*.npy
    BAPPS/jnd/val/<subset>/{p0,p1}/*.png               same/*.npy

Files of one item share their stem and are paired by sorted name. ``judge`` is the fraction of
humans who preferred ``p1`` (closer to the reference); ``same`` the fraction who judged the pair
identical; both are ``.npy`` arrays of shape ``(1,)``. Patches are 64x64 PNGs; other sizes are
resized to 64x64 (bilinear with antialiasing, as the LPIPS authors' ``transforms.Resize(64)``).

Patches are decoded straight into preallocated uint8 arrays (optionally in threads) and kept, so a
sweep over many networks reads the files once (:func:`load_subset` caches per process; the full
2AFC val split is ~1.3 GB as uint8); :func:`load_subsets` decodes the next subset in a background
thread while the caller scores the current one.

References:
    Zhang, Isola, Efros, Shechtman, Wang. "The Unreasonable Effectiveness of Deep Features as a
    Perceptual Metric", CVPR 2018. https://github.com/richzhang/PerceptualSimilarity
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lossnet.errors import DataError

__all__ = [
    "SUBSETS_2AFC_VAL",
    "SUBSETS_2AFC_TRAIN",
    "SUBSETS_JND_VAL",
    "BappsItems",
    "BappsDataset",
    "list_items",
    "decode",
    "load_subset",
    "load_subsets",
    "clear_cache",
    "read_patch",
    "load_patch",
    "png_codec",
]

#: 2AFC validation subsets, in the LPIPS authors' order (``test_dataset_model.py``).
SUBSETS_2AFC_VAL = ("traditional", "cnn", "superres", "deblur", "color", "frameinterp")
#: 2AFC training subsets.
SUBSETS_2AFC_TRAIN = ("traditional", "cnn", "mix")
#: JND subsets (validation only).
SUBSETS_JND_VAL = ("traditional", "cnn")

_FOLDERS = {
    "2afc": (("ref", "png"), ("p0", "png"), ("p1", "png"), ("judge", "npy")),
    "jnd": (("p0", "png"), ("p1", "png"), ("same", "npy")),
}
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class BappsItems:
    """The file lists of one subset: ``files[folder][i]`` for item ``i``."""

    kind: str
    root: Path
    files: dict[str, list[Path]]

    def __len__(self) -> int:
        return len(next(iter(self.files.values())))


def _list(folder: Path, ext: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"BAPPS folder not found: {folder}")
    exts = _IMAGE_EXT if ext == "png" else (".npy",)
    # scandir: is_file() from the directory entry, no stat per file; sorted by name, the order
    # Path comparison gives within one folder, without its slow __lt__
    with os.scandir(folder) as entries:
        names = sorted(
            e.name for e in entries if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(exts)
        )
    return [folder / name for name in names]


def list_items(root: str | os.PathLike, kind: str, split: str, subset: str) -> BappsItems:
    """The files of ``<root>/<kind>/<split>/<subset>``, checked for presence and pairing.

    Args:
        root: the BAPPS folder (containing ``2afc`` and/or ``jnd``).
        kind: ``"2afc"`` or ``"jnd"``.
        split: ``"val"`` or ``"train"`` (JND has only ``val``).
        subset: e.g. ``"traditional"``.

    Raises:
        DataError: a folder is missing or empty, the folders hold different numbers of files, or
            the i-th files of two folders have different names (the first offending file is named).
    """
    if kind not in _FOLDERS:
        raise DataError(f"unknown BAPPS kind {kind!r}; use '2afc' or 'jnd'")
    base = Path(root) / kind / split / subset
    if not base.is_dir():
        raise DataError(f"BAPPS subset folder not found: {base}")
    files = {name: _list(base / name, ext) for name, ext in _FOLDERS[kind]}
    counts = {name: len(v) for name, v in files.items()}
    if len(set(counts.values())) != 1:
        # Name the first file that has no partner in the other folders.
        for i in range(max(counts.values())):
            stems = {name: (v[i].stem if i < len(v) else None) for name, v in files.items()}
            if len(set(stems.values())) != 1:
                first = next(v[i] for v in files.values() if i < len(v))
                break
        else:  # pragma: no cover - counts differ, so some index differs
            first = base
        detail = ", ".join(f"{k}={c}" for k, c in counts.items())
        raise DataError(f"BAPPS subset {base} has mismatched file counts ({detail}); first unpaired file: {first}")
    if counts and next(iter(counts.values())) == 0:
        raise DataError(f"BAPPS subset {base} is empty")
    for i in range(len(next(iter(files.values())))):
        stems = {v[i].stem for v in files.values()}
        if len(stems) != 1:
            bad = [v[i] for v in files.values()]
            raise DataError(f"BAPPS files are not paired by name in {base}: {', '.join(str(p) for p in bad)}")
    return BappsItems(kind=kind, root=base, files=files)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@lru_cache(maxsize=1)
def png_codec() -> Callable[[bytes], np.ndarray] | None:
    """libpng's decoder from ``imagecodecs`` when installed (``pip install lossnet[fast-png]``), else None.

    For a 64x64 patch it takes ~0.13 ms where Pillow takes ~0.22 ms (its per-file Python parsing
    dominates at this size; ``benchmarks/bench_bapps.py``), and decoding is a third of a cold
    BAPPS evaluation. ``LOSSNET_PNG_DECODER=pillow`` turns it off.
    """
    if os.environ.get("LOSSNET_PNG_DECODER", "").lower() == "pillow":
        return None
    try:
        import imagecodecs
    except ImportError:
        return None
    return imagecodecs.png_decode if getattr(imagecodecs.PNG, "available", False) else None


def _read_png_rgb8(path: Path, size: int) -> np.ndarray | None:
    """An 8-bit RGB ``size`` x ``size`` PNG decoded by :func:`png_codec`; None for anything else.

    The IHDR header (bytes 16-29) is checked before decoding, so a large or unusual file (16-bit,
    palette, grey, alpha, another size, a decompression bomb) goes to Pillow, which converts,
    resizes, guards against bombs and words the errors; so does a file libpng rejects.
    """
    codec = png_codec()
    if codec is None:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(29)
            if len(head) < 29 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
                return None
            width, height, depth, color_type = struct.unpack(">IIBB", head[16:26])
            if (width, height, depth, color_type) != (size, size, 8, 2):
                return None
            array = codec(head + f.read())
    except Exception:  # noqa: BLE001 - any failure: Pillow decodes it again and reports it properly
        return None
    return array if array.shape == (size, size, 3) and array.dtype == np.uint8 else None


def read_patch(path: Path, size: int, what: str = "BAPPS image") -> np.ndarray:
    """One patch as an ``(S, S, 3)`` uint8 array (RGB; other sizes resized bilinearly).

    8-bit RGB PNGs of the right size go through :func:`png_codec` when available (same pixels);
    everything else through Pillow.

    Raises:
        DataError: ``"cannot decode <what> <path>: ..."`` (a decompression-bomb header included).
    """
    from PIL import Image, UnidentifiedImageError

    if str(path).lower().endswith(".png"):
        array = _read_png_rgb8(Path(path), size)
        if array is not None:
            return array
    try:
        with Image.open(path) as img:
            if img.mode != "RGB":
                img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # a decompression-bomb header is a bad file like any other (--skip-bad skips it), not a crash
        raise DataError(f"cannot decode {what} {path}: {exc}") from exc


def load_patch(path: Path, size: int, what: str = "BAPPS image") -> torch.Tensor:
    """One patch as a ``(3, S, S)`` uint8 tensor (:func:`read_patch`)."""
    return torch.from_numpy(read_patch(path, size, what).transpose(2, 0, 1).copy())


#: .npy header bytes already parsed by np.load -> dtype of the one value they describe
_NPY_HEADERS: dict[bytes, np.dtype] = {}


def _npy_header(data: bytes) -> bytes | None:
    """The magic + header bytes of a .npy file (format versions 1-3), or None."""
    if data[:6] != b"\x93NUMPY" or len(data) < 12:
        return None
    if data[6] == 1:
        end = 10 + int.from_bytes(data[8:10], "little")
    else:
        end = 12 + int.from_bytes(data[8:12], "little")
    return data[:end] if end <= len(data) else None


def _load_scalar(path: Path) -> float:
    try:
        with open(path, "rb") as f:
            data = f.read(4097)  # a judgment file is ~136 bytes
        if data[:6] != b"\x93NUMPY":
            # not np.load: on a non-.npy file it falls back to pickle and its refusal advises
            # allow_pickle=True, which a judgment file never needs
            raise DataError(f"cannot read BAPPS judgment {path}: not a .npy file")
        if len(data) > 4096:
            data = None  # large: leave it to np.load
        header = _npy_header(data) if data is not None else None
        dtype = _NPY_HEADERS.get(header) if header is not None else None
        if dtype is not None and len(data) == len(header) + dtype.itemsize:
            # A header seen before (BAPPS's judgment files all share one): skip np.load's
            # ast-based header parsing, which costs as much per item as decoding a patch.
            value = np.frombuffer(data, dtype=dtype, count=1, offset=len(header)).astype(np.float64)
        else:
            value = np.load(path, allow_pickle=False)
            if header is not None and value.size == 1 and value.dtype.kind in "biuf":
                _NPY_HEADERS[header] = value.dtype
            value = np.asarray(value, dtype=np.float64).reshape(-1)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read BAPPS judgment {path}: {exc}") from exc
    if value.size != 1 or not np.isfinite(value[0]) or not 0.0 <= value[0] <= 1.0:
        raise DataError(f"BAPPS judgment {path} must hold one value in [0, 1], got {value[:4].tolist()}")
    return float(value[0])


class BappsDataset(Dataset):
    """Decodes the items of one subset: ``{"index", "ok", "bad_file", "error", <image folders>: uint8 (3,S,S), <judgment>: float}``.

    An undecodable item comes back with ``ok=False``, the file and the message (and zero tensors);
    :func:`decode` raises or skips it.

    Args:
        items: from :func:`list_items`.
        indices: which items (default all).
        size: patch side length after resizing.
        skip_bad: kept for the caller (:func:`decode`); items are never raised here.
    """

    def __init__(
        self, items: BappsItems, indices: Sequence[int] | None = None, size: int = 64, skip_bad: bool = False
    ) -> None:
        self.items = items
        self.indices = list(range(len(items))) if indices is None else list(indices)
        self.size = size
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        index = self.indices[i]
        out: dict = {"index": index, "ok": True, "bad_file": "", "error": ""}
        for name, ext in _FOLDERS[self.items.kind]:
            path = self.items.files[name][index]
            try:
                out[name] = load_patch(path, self.size) if ext == "png" else _load_scalar(path)
            except DataError as exc:
                # Reported, not raised: an exception inside a DataLoader worker reaches the caller
                # wrapped in a multi-line traceback; the caller raises the clean message instead.
                out.update(ok=False, bad_file=str(path), error=str(exc))
                break
        if not out["ok"]:
            for name, ext in _FOLDERS[self.items.kind]:
                out[name] = torch.zeros(3, self.size, self.size, dtype=torch.uint8) if ext == "png" else 0.0
        return out


@dataclass
class DecodedSubset:
    """A decoded subset: uint8 image tensors ``(N,3,S,S)`` per image folder, float64 judgments ``(N,)``."""

    kind: str
    subset: str
    images: dict[str, torch.Tensor]
    judgments: np.ndarray
    n_bad: int
    bad_files: list[str]

    def __len__(self) -> int:
        return int(self.judgments.shape[0])


def _read_item(items: BappsItems, index: int, size: int, images: dict[str, np.ndarray], slot: int):
    """Decode item ``index`` straight into row ``slot`` of the NHWC ``images`` arrays.

    Returns ``(judgment, "", "")`` or ``(None, bad_file, message)``.
    """
    judgment = None
    for name, ext in _FOLDERS[items.kind]:
        path = items.files[name][index]
        try:
            if ext == "png":
                images[name][slot] = read_patch(path, size)
            else:
                judgment = _load_scalar(path)
        except DataError as exc:
            return None, str(path), str(exc)
    return judgment, "", ""


def decode(
    items: BappsItems,
    subset: str,
    indices: Sequence[int] | None = None,
    size: int = 64,
    skip_bad: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
) -> DecodedSubset:
    """Decode the items of a subset into memory.

    Each patch is decoded straight into a preallocated ``(N, S, S, 3)`` uint8 array; the images
    are returned as ``(N, 3, S, S)`` views of it, i.e. in channels_last memory format, the layout
    the evaluation feeds the network. No DataLoader: with 64x64 patches its per-item dicts and
    collation cost more than the PNG decoding itself (``benchmarks/bench_bapps.py``).

    Args:
        num_workers: decoding threads (0: the calling thread). Pillow releases the GIL while it
            inflates a PNG, so threads help where spare cores exist.
        batch_size: items per progress-bar step.

    Raises:
        DataError: an undecodable file (its path is in the message) unless ``skip_bad``; or every
            item was bad.
    """
    from tqdm.auto import tqdm

    order = list(range(len(items))) if indices is None else list(indices)
    n = len(order)
    img_names = [name for name, ext in _FOLDERS[items.kind] if ext == "png"]
    images = {name: np.empty((n, size, size, 3), dtype=np.uint8) for name in img_names}
    judgments = np.zeros(n, dtype=np.float64)
    ok = np.ones(n, dtype=bool)
    bad: list[str] = []

    def read_chunk(start: int) -> list[tuple]:
        return [_read_item(items, order[k], size, images, k) for k in range(start, min(start + batch_size, n))]

    starts = range(0, n, max(1, batch_size))
    bar = tqdm(total=n, desc=f"read {items.kind}/{subset}", disable=not progress, leave=False, unit="item")
    pool = None
    if num_workers > 0:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="bapps-decode")
    try:
        chunks = pool.map(read_chunk, starts) if pool is not None else map(read_chunk, starts)
        for start, results in zip(starts, chunks):
            for k, (judgment, bad_file, message) in enumerate(results, start):
                if judgment is None:
                    if not skip_bad:
                        raise DataError(message)
                    ok[k] = False
                    bad.append(bad_file)
                else:
                    judgments[k] = judgment
            bar.update(len(results))
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if n and len(bad) == n:
        raise DataError(f"every item of BAPPS subset {items.root} is unreadable (first: {bad[0]})")
    keep = None if ok.all() else ok
    return DecodedSubset(
        kind=items.kind,
        subset=subset,
        images={
            name: torch.from_numpy(a if keep is None else a[keep]).permute(0, 3, 1, 2) for name, a in images.items()
        },
        judgments=judgments if keep is None else judgments[keep],
        n_bad=len(bad),
        bad_files=bad,
    )


_CACHE: dict[tuple, DecodedSubset] = {}


def clear_cache() -> None:
    """Forget the decoded subsets kept by :func:`load_subset`."""
    _CACHE.clear()


def load_subset(
    root: str | os.PathLike,
    kind: str,
    split: str,
    subset: str,
    *,
    max_items: int | None = None,
    seed: int = 0,
    size: int = 64,
    skip_bad: bool = False,
    num_workers: int = 0,
    progress: bool = True,
) -> DecodedSubset:
    """List, check, optionally subsample, and decode one subset (cached per process).

    Args:
        max_items: keep a random subset of this many items (seeded by ``seed``; sorted order kept).
    """
    items = list_items(root, kind, split, subset)
    key = (str(Path(root).resolve()), kind, split, subset, max_items, seed if max_items else None, size, skip_bad)
    if key in _CACHE:
        return _CACHE[key]
    indices = None
    if max_items is not None and max_items < len(items):
        rng = np.random.default_rng(seed)
        indices = sorted(rng.choice(len(items), size=max_items, replace=False).tolist())
    decoded = decode(items, subset, indices, size=size, skip_bad=skip_bad, num_workers=num_workers, progress=progress)
    _CACHE[key] = decoded
    return decoded


def load_subsets(
    root: str | os.PathLike, requests: Sequence[tuple[str, str, str]], **options
) -> Iterator[DecodedSubset]:
    """:func:`load_subset` for each ``(kind, split, subset)`` of ``requests``, in order.

    While the caller works on one subset (runs the network on it), the next one is decoded in a
    background thread, so reading the files overlaps the computation. ``options`` are those of
    :func:`load_subset`. A decoding error is raised when its subset is reached.
    """
    from concurrent.futures import ThreadPoolExecutor

    requests = list(requests)
    if not requests:
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bapps-prefetch")
    try:
        pending = pool.submit(load_subset, root, *requests[0], **options)
        for i in range(len(requests)):
            current = pending.result()
            if i + 1 < len(requests):
                pending = pool.submit(load_subset, root, *requests[i + 1], **options)
            yield current
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
