"""The paper's tables from tidy score rows: appendix score tables, Table III, Table IV, comparison.

Ranking rule (Table III, reproduced from the published CSVs -- see tests/report/test_report_paper.py):
for every performance score, each architecture's value is the score of its *best* extraction
layer; architectures are ranked 1 (best) .. N by that value, higher is better for every score.
A benchmark's entry is the mean rank over its performance scores, and ``all`` is the mean of the
four benchmark entries (benchmarks weighted equally). The scores per benchmark are

- b1 (similarity): BAPPS 2AFC and JND mAP -- 2 scores;
- b2 (super-resolution): PSNR and SSIM x {x4, x8} x {Set5, Set14, BSD100} -- all 12 scores;
- b3 (segmentation): correctness, completeness and quality -- 3 scores;
- b4 (autoencoder): SVHN and STL-10 accuracy -- 2 scores.

Only this choice reproduces the published averages (denominators 2/12/3/2 show in the fractions,
e.g. 11.08 = 133/12), and every published cell then lies inside the range that breaking ties
either way allows.

Ties: equal values get the *average* of the ranks they span (``scipy.stats.rankdata`` method
"average"). It is symmetric (no architecture is favoured by table order) and keeps the sum of
ranks at N(N+1)/2. The paper ranked unrounded scores, so where the published 3-significant-digit
values tie, its ranks can differ by up to half the tie span; those cells are listed in the tests.

Best layer (Table IV): the layer(s) with the maximal score; tied layers are all reported, joined
with "/" in E-S-M-L order (the first one is the earliest), because picking one silently would
claim a difference the data does not show.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

import numpy as np
from scipy.stats import rankdata

from lossnet import paper
from lossnet.report.sources import ScoreKey, key_of, paper_score_keys

__all__ = [
    "BENCHMARK_GROUPS",
    "RANKING_SCORES",
    "TABLE4_COLUMNS",
    "cell_values",
    "score_table",
    "best_layers",
    "best_scores",
    "score_ranks",
    "ranking_table",
    "best_layer_table",
    "comparison_table",
    "arch_order",
]

LAYERS = paper.LAYER_KEYS

#: Table III columns -> the paper benchmarks they cover.
BENCHMARK_GROUPS: dict[str, tuple[str, ...]] = {
    "b1": ("similarity",),
    "b2": ("superres_x4", "superres_x8"),
    "b3": ("segmentation",),
    "b4": ("autoencoder",),
}


def _ranking_scores() -> dict[str, list[ScoreKey]]:
    keys = paper_score_keys()
    return {b: [k for k in keys if k.benchmark in groups] for b, groups in BENCHMARK_GROUPS.items()}


#: Table III: the performance scores averaged in each benchmark's rank.
RANKING_SCORES: dict[str, list[ScoreKey]] = _ranking_scores()

#: Table IV columns (names as in table4_best_layer.csv) -> score.
TABLE4_COLUMNS: dict[str, ScoreKey] = {
    "b1_2afc": ScoreKey("similarity", "2afc", "bapps"),
    "b1_jnd": ScoreKey("similarity", "jnd_map", "bapps"),
    "b2_x4_ssim_bsd100": ScoreKey("superres_x4", "ssim", "bsd100"),
    "b2_x8_ssim_bsd100": ScoreKey("superres_x8", "ssim", "bsd100"),
    "b3_quality": ScoreKey("segmentation", "quality", "mrd"),
    "b4_svhn": ScoreKey("autoencoder", "accuracy", "svhn"),
    "b4_stl10": ScoreKey("autoencoder", "accuracy", "stl10"),
}


def arch_order(archs: Iterable[str]) -> list[str]:
    """Architectures in the paper's table order, others after them alphabetically."""
    paper_archs = list(paper.architectures())
    archs = set(archs)
    return [a for a in paper_archs if a in archs] + sorted(archs - set(paper_archs))


def cell_values(rows: Iterable[dict[str, Any]]) -> dict[ScoreKey, dict[str, dict[str, float]]]:
    """``{score: {arch: {layer: value}}}`` from tidy rows."""
    out: dict[ScoreKey, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        out[key_of(row)][row["arch"]][row["layer"]] = float(row["value"])
    return out


def score_table(rows: Iterable[dict[str, Any]], key: ScoreKey) -> list[dict[str, Any]]:
    """Appendix table for one score: one row per architecture, columns E/S/M/L (None if not run).

    Returns:
        ``[{"arch": ..., "E": v, "S": v, "M": v, "L": v, "best": "S"}, ...]`` in paper order.
    """
    values = cell_values(rows).get(key, {})
    out = []
    for arch in arch_order(values):
        cells = values[arch]
        out.append({"arch": arch, **{l: cells.get(l) for l in LAYERS}, "best": "/".join(_best(cells)[0])})
    return out


def _best(cells: dict[str, float]) -> tuple[list[str], float]:
    finite = {l: v for l, v in cells.items() if v is not None and np.isfinite(v)}
    if not finite:
        return [], float("nan")
    top = max(finite.values())
    return [l for l in LAYERS if finite.get(l) == top], top


def best_layers(rows: Iterable[dict[str, Any]]) -> dict[ScoreKey, dict[str, tuple[list[str], float]]]:
    """``{score: {arch: (best layers, best value)}}``; several layers when they tie exactly."""
    return {k: {a: _best(c) for a, c in archs.items()} for k, archs in cell_values(rows).items()}


def best_scores(rows: Iterable[dict[str, Any]]) -> dict[ScoreKey, dict[str, float]]:
    """``{score: {arch: value of its best layer}}``."""
    return {k: {a: v for a, (ls, v) in d.items() if ls} for k, d in best_layers(rows).items()}


def score_ranks(values: dict[str, float]) -> dict[str, float]:
    """Rank architectures by score, 1 = highest; ties get their average rank.

    Args:
        values: ``{arch: score}``, higher is better.

    Returns:
        ``{arch: rank}`` (floats; x.5 for two-way ties).
    """
    archs = list(values)
    ranks = rankdata([-values[a] for a in archs], method="average")
    return {a: float(r) for a, r in zip(archs, ranks)}


def ranking_table(rows: Iterable[dict[str, Any]], *, per_score: bool = False) -> list[dict[str, Any]]:
    """Table III: average rank per benchmark and overall.

    Architectures are ranked among those present for each score; a benchmark's entry averages the
    ranks of its scores that are present, ``all`` averages the benchmark entries present (so a
    partial store still gives a table -- ``n_scores`` says how many scores entered).

    Args:
        rows: tidy score rows.
        per_score: also include every score's rank as ``"rank:<label>"`` columns.

    Returns:
        ``[{"arch", "b1", "b2", "b3", "b4", "all", "n_scores"}, ...]`` in paper order; missing
        benchmarks are None.
    """
    best = best_scores(rows)
    ranks = {k: score_ranks(v) for k, v in best.items() if v}
    archs = arch_order({a for v in best.values() for a in v})
    table = []
    for arch in archs:
        row: dict[str, Any] = {"arch": arch, **average_ranks(arch, ranks)}
        if per_score:
            for k in paper_score_keys():
                if k in ranks:
                    row[f"rank:{k.label}"] = ranks[k].get(arch)
        table.append(row)
    return table


def average_ranks(arch: str, ranks: dict[ScoreKey, dict[str, float]]) -> dict[str, Any]:
    """Table III's rule for one architecture, given every score's ranks (``{score: {arch: rank}}``):
    ``{"b1".."b4": mean rank over the benchmark's scores present (None without any), "all": mean of
    the benchmark entries present, "n_scores": scores that entered}``."""
    row: dict[str, Any] = {}
    used = 0
    for bench, keys in RANKING_SCORES.items():
        rs = [ranks[k][arch] for k in keys if k in ranks and arch in ranks[k]]
        used += len(rs)
        row[bench] = float(np.mean(rs)) if rs else None
    present = [row[b] for b in RANKING_SCORES if row[b] is not None]
    row["all"] = float(np.mean(present)) if present else None
    row["n_scores"] = used
    return row


def best_layer_table(
    rows: Iterable[dict[str, Any]], columns: dict[str, ScoreKey] | None = None
) -> list[dict[str, Any]]:
    """Table IV: best extraction layer per architecture and score.

    Args:
        rows: tidy score rows.
        columns: ``{column name: score}``; default :data:`TABLE4_COLUMNS` (the paper's seven).

    Returns:
        ``[{"arch": ..., column: "E" | "S/M" (ties) | None}, ...]`` in paper order.
    """
    columns = TABLE4_COLUMNS if columns is None else columns
    best = best_layers(rows)
    archs = arch_order({a for k in columns.values() for a in best.get(k, {})})
    return [
        {
            "arch": arch,
            **{
                c: ("/".join(best[k][arch][0]) or None) if arch in best.get(k, {}) else None for c, k in columns.items()
            },
        }
        for arch in archs
    ]


def comparison_table(ours: Sequence[dict[str, Any]], reference: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every cell we ran beside the reference (paper) value: ours, paper, diff = ours - paper.

    Returns:
        ``[{"benchmark", "metric", "dataset", "arch", "layer", "ours", "paper", "diff", "n"}, ...]``.
    """
    ref = {(key_of(r), r["arch"], r["layer"]): float(r["value"]) for r in reference}
    out = []
    for r in ours:
        p = ref.get((key_of(r), r["arch"], r["layer"]))
        out.append(
            {
                "benchmark": r["benchmark"],
                "metric": r["metric"],
                "dataset": r["dataset"],
                "arch": r["arch"],
                "layer": r["layer"],
                "ours": float(r["value"]),
                "paper": p,
                "diff": None if p is None else float(r["value"]) - p,
                "n": r.get("n", 1),
            }
        )
    return out
