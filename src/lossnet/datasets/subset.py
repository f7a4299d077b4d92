"""The seeded choice of a subset of image names (COCO ``--subset``), shared with the benchmarks."""

from __future__ import annotations

import posixpath
from typing import Iterable

__all__ = ["coco_subset", "SUBSET_RULE"]

#: The rule, as recorded in the completion marker of a subset part.
SUBSET_RULE = (
    "sort names by file name (then full name); idx = numpy.random.default_rng(seed).choice(len, size=n, "
    "replace=False); take sorted(idx)"
)


def coco_subset(names: Iterable[str], n: int | None, seed: int) -> list[str]:
    """The ``n`` names a seeded run uses, in sorted order.

    The rule (numpy's ``Generator``, stable across numpy versions for a given seed):

    1. sort the names by file name (``posixpath.basename``), ties by the full name;
    2. ``idx = numpy.random.default_rng(seed).choice(len(names), size=n, replace=False)``;
    3. return ``[sorted_names[i] for i in sorted(idx)]``.

    With ``n`` None or ``n >= len(names)`` every name is returned (sorted). This is exactly
    ``lossnet.bench.superres.data.select(sorted_items, n, seed)`` on a folder listed in name order, so
    a benchmark that draws ``n`` images with ``seed`` from the full ``train2014`` folder picks the same
    files ``lossnet data fetch coco2014 train --subset n --seed seed`` downloads; and on a folder that
    holds exactly that subset, ``select`` returns all of it.

    Raises:
        ValueError: ``n`` is not positive, or names repeat.
    """
    items = sorted(names, key=lambda s: (posixpath.basename(s), s))
    if len(set(items)) != len(items):
        raise ValueError("coco_subset: names must be unique")
    if n is None or n >= len(items):
        return items
    if n <= 0:
        raise ValueError(f"coco_subset: n must be positive, got {n}")
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(items), size=n, replace=False))
    return [items[i] for i in idx]
