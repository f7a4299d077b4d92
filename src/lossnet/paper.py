"""The published figures of Pihlgren et al. (2024), shipped with the package as CSV.

Files (see ``lossnet/data/paper/README.md``): ``scores.csv`` (appendix Tables V-XI, tidy),
``architectures.csv`` (Table I numeric columns), ``table3_average_ranking.csv``,
``table4_best_layer.csv``.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

__all__ = ["read_csv", "architectures", "scores", "LAYER_KEYS"]

#: The paper's four extraction points, early to late.
LAYER_KEYS = ("E", "S", "M", "L")


def read_csv(name: str) -> list[dict[str, str]]:
    """Rows of one shipped CSV file as dicts of strings."""
    text = resources.files("lossnet").joinpath("data", "paper", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@lru_cache(maxsize=None)
def architectures() -> dict[str, dict[str, float]]:
    """Table I: ``{arch: {"imagenet_top1": %, "depth": int, "mflops": int}}``."""
    out = {}
    for row in read_csv("architectures.csv"):
        out[row["arch"]] = {
            "imagenet_top1": float(row["imagenet_top1"]),
            "depth": int(row["depth"]),
            "mflops": int(row["mflops"]),
        }
    return out


def scores() -> list[dict[str, object]]:
    """Tables V-XI: rows ``benchmark, metric, dataset, arch, layer, value`` (value as float)."""
    rows = read_csv("scores.csv")
    for row in rows:
        row["value"] = float(row["value"])
    return rows
