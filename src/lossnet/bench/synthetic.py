"""Synthetic stand-ins of the benchmarks' datasets, of the shapes a preset needs, and the sizes of
the real datasets: what ``lossnet sweep estimate`` times a benchmark on when its data is missing.

Each benchmark writes its own synthetic data (:meth:`lossnet.bench.base.Benchmark.synthetic_data`)
with the helpers here; :data:`REAL_SIZES` gives the step counts and evaluation sizes of the full run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["REAL_SIZES", "SyntheticData", "smooth_image", "write_images"]

#: Sizes of the real datasets, used for step counts and evaluation sizes when timing on synthetic data.
REAL_SIZES = {
    "mrd": {"train": 1108, "valid": 14, "test": 49},
    "svhn": {"extra": 531131, "train": 73257, "test": 26032},
    "stl10": {"unlabeled": 100000, "train": 5000, "test": 8000},
    "bapps": {
        "2afc/traditional": 4720,
        "2afc/cnn": 4720,
        "2afc/superres": 10800,
        "2afc/deblur": 9440,
        "2afc/color": 4720,
        "2afc/frameinterp": 1888,
        "jnd/traditional": 4800,
        "jnd/cnn": 4800,
    },
    "superres_tests": {"set5": 5, "set14": 14, "bsd100": 100},
}


@dataclass
class SyntheticData:
    """Where a benchmark's synthetic data lie and what they stand for.

    Attributes:
        options: config values pointing the benchmark at the synthetic data.
        sizes: sizes of the real data the timing is scaled to (read by the benchmark's
            :meth:`~lossnet.bench.base.Benchmark.scale_to_real`).
        note: one line for the estimate's notes.
    """

    options: dict[str, Any]
    sizes: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def smooth_image(rng, h: int, w: int):
    """A PIL RGB image of smooth random content (an upsampled low-resolution noise image)."""
    import numpy as np
    from PIL import Image

    low = rng.integers(0, 255, (max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
    return Image.fromarray(low).resize((w, h), Image.BILINEAR)


def write_images(folder: Path, n: int, size: int, seed: int) -> str:
    """``n`` square PNGs of side ``size`` in ``folder`` (kept when already there)."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = folder / f"img{i:04d}.png"
        if not path.exists():
            smooth_image(rng, size, size).save(path, compress_level=1)
    return str(folder)
