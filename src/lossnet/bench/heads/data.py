"""2AFC training data for heads: the BAPPS 2AFC folders, or a CSV of a user's own judgments.

Every source is a :class:`torch.utils.data.Dataset` of items
``{"index", "ok", "error", "ref", "p0", "p1": uint8 (3, S, S), "judge": float}`` where ``judge``
is the fraction of people who judged ``p1`` closer to ``ref`` (the BAPPS convention). An
undecodable item comes back with ``ok=False`` and the message (it is raised, or skipped with
``skip_bad``, by the caller -- an exception inside a DataLoader worker would be wrapped).

CSV judgments: a header with the columns ``ref,p0,p1,judgment`` (``judge`` is accepted for
``judgment``), one triplet per row; image paths are relative to the CSV's folder (or absolute);
``judgment`` in [0, 1] is the fraction preferring ``p1`` (0 = p0 is closer, 1 = p1 is closer).
Every row is checked before training starts: a bad row raises :class:`~lossnet.errors.DataError`
naming the file, the row and the problem.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from lossnet.errors import DataError

__all__ = ["CsvJudgments", "read_judgments_csv", "bapps_2afc", "Triplets", "decode_triplets", "load_triplet_image"]

_IMAGES = ("ref", "p0", "p1")


def load_triplet_image(path: Path, size: int) -> torch.Tensor:
    """An image file as uint8 ``(3, size, size)`` (bilinear resize as BAPPS's loader)."""
    from lossnet.bench.similarity.bapps import load_patch

    return load_patch(path, size, what="image")


def read_judgments_csv(path: str | os.PathLike) -> list[tuple[Path, Path, Path, float]]:
    """The rows ``(ref, p0, p1, judgment)`` of a judgments CSV, all checked.

    Raises:
        DataError: missing file or columns, a row with missing fields, a judgment that is not a
            number in [0, 1], or an image file that does not exist (file, row and value named).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"judgments CSV not found: {p}")
    base = p.parent
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read judgments CSV {p}: {exc}") from None
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    dupes = sorted({f for f in fields if f and fields.count(f) > 1})
    if dupes:  # csv.DictReader would silently keep the last of them
        raise DataError(
            f"{p}: the header names {', '.join(repr(d) for d in dupes)} more than once; keep one column each"
        )
    jcol = "judgment" if "judgment" in fields else ("judge" if "judge" in fields else None)
    missing = [c for c in _IMAGES if c not in fields] + ([] if jcol else ["judgment"])
    if missing:
        raise DataError(f"{p}: needs the header columns ref,p0,p1,judgment; missing {', '.join(missing)}")
    rows: list[tuple[Path, Path, Path, float]] = []
    for line, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() if isinstance(v, str) else v for k, v in raw.items()}
        if None in raw or any(not row.get(c) for c in (*_IMAGES, jcol)):
            raise DataError(f"{p}: row {line}: expected the 4 fields ref,p0,p1,judgment, got {list(raw.values())}")
        try:
            value = float(row[jcol])
        except ValueError:
            raise DataError(f"{p}: row {line}: judgment {row[jcol]!r} is not a number") from None
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise DataError(f"{p}: row {line}: judgment {row[jcol]} is outside [0, 1] (fraction preferring p1)")
        files = []
        for c in _IMAGES:
            f = Path(row[c]).expanduser()
            f = f if f.is_absolute() else base / f
            if not f.is_file():
                raise DataError(f"{p}: row {line}: {c} image not found: {f}")
            files.append(f)
        rows.append((files[0], files[1], files[2], value))
    if not rows:
        raise DataError(f"{p}: no judgments (only a header)")
    return rows


class CsvJudgments(Dataset):
    """The triplets of a judgments CSV (:func:`read_judgments_csv`), decoded at ``size``."""

    def __init__(self, path: str | os.PathLike, size: int = 64) -> None:
        self.path = Path(path)
        self.rows = read_judgments_csv(path)
        self.size = size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        out: dict = {"index": i, "ok": True, "error": "", "judge": float(self.rows[i][3])}
        for name, f in zip(_IMAGES, self.rows[i][:3]):
            try:
                out[name] = load_triplet_image(f, self.size)
            except DataError as exc:
                out.update(ok=False, error=f"{self.path}: row {i + 2}: {exc}")
                break
        if not out["ok"]:
            for name in _IMAGES:
                out[name] = torch.zeros(3, self.size, self.size, dtype=torch.uint8)
        return out


class _Bapps(Dataset):
    """BAPPS 2AFC items as triplet dicts (wraps :class:`lossnet.bench.similarity.bapps.BappsDataset`)."""

    def __init__(self, root, split: str, subset: str, size: int) -> None:
        from lossnet.bench.similarity.bapps import BappsDataset, list_items

        self.ds = BappsDataset(list_items(root, "2afc", split, subset), size=size)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        item = self.ds[i]
        return {
            "index": i,
            "ok": item["ok"],
            "error": item["error"],
            "ref": item["ref"],
            "p0": item["p0"],
            "p1": item["p1"],
            "judge": float(item["judge"]),
        }


def bapps_2afc(
    root: str | os.PathLike, split: str = "train", subsets: Sequence[str] | None = None, size: int = 64
) -> Dataset:
    """The 2AFC items of ``ROOT/2afc/<split>/<subsets>`` as one dataset (default: every subset
    folder of the split, in sorted order).

    Raises:
        DataError: the split folder is missing, has no subsets, or a subset is missing/unpaired.
    """
    base = Path(root) / "2afc" / split
    if subsets is None:
        if not base.is_dir():
            raise DataError(
                f"BAPPS 2AFC folder not found: {base} (expected ROOT/2afc/{split}/SUBSET/{{ref,p0,p1,judge}})"
            )
        subsets = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not subsets:
            raise DataError(f"no 2AFC subsets in {base}")
    return ConcatDataset([_Bapps(root, split, s, size) for s in subsets])


@dataclass
class Triplets:
    """Decoded triplets in memory: uint8 ``(N, 3, S, S)`` images and float ``(N,)`` judgments."""

    ref: torch.Tensor
    p0: torch.Tensor
    p1: torch.Tensor
    judge: torch.Tensor

    def __len__(self) -> int:
        return int(self.judge.shape[0])


def decode_triplets(
    dataset: Dataset,
    indices: Sequence[int] | None = None,
    *,
    skip_bad: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "read",
) -> Triplets:
    """Decode (a subset of) a triplet dataset into memory.

    Raises:
        DataError: an undecodable item (unless ``skip_bad``), or nothing decodable.
    """
    from torch.utils.data import Subset
    from tqdm.auto import tqdm

    ds = dataset if indices is None else Subset(dataset, list(indices))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in (*_IMAGES, "judge")}
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        ok = check_batch(batch, skip_bad)
        for k in parts:
            parts[k].append(batch[k][ok])
    if not parts["judge"] or sum(len(j) for j in parts["judge"]) == 0:
        raise DataError("no readable 2AFC triplets")
    return Triplets(*(torch.cat(parts[k]) for k in (*_IMAGES,)), torch.cat(parts["judge"]).double())


def check_batch(batch: dict, skip_bad: bool) -> torch.Tensor:
    """The ``ok`` mask of a collated batch; raises the first item's error unless ``skip_bad``."""
    ok = torch.as_tensor(batch["ok"]).bool()
    if not skip_bad and not bool(ok.all()):
        raise DataError(batch["error"][int((~ok).nonzero()[0])])
    return ok
