"""Correlations between performance scores and network attributes, and across benchmarks.

For two samples x, y of n pairs:

- Pearson  r = sum((x - mean x)(y - mean y)) / sqrt(sum((x - mean x)^2) sum((y - mean y)^2)),
- Spearman rho = Pearson r of the (average-tie) ranks of x and y,

with two-sided p-values from :func:`scipy.stats.pearsonr` / :func:`scipy.stats.spearmanr`
(H0: no correlation). Architecture-level attributes (ImageNet top-1, depth, MFLOPs of Table I,
and parameters / structure from :func:`lossnet.structure.arch_attributes`) are correlated with the
score of each architecture's best layer (n = architectures); layer-level attributes (parameters,
depth, MFLOPs up to the extraction point, channels and features at it, from
:func:`lossnet.structure.layer_stats`) with the score of every (architecture, layer) cell.

References:
    Pihlgren et al., "A Systematic Performance Analysis of Deep Perceptual Loss Networks", 2024
    (Sec. V); Kumar et al., "Do better ImageNet classifiers assess perceptual similarity
    better?", TMLR 2022.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Iterable

import numpy as np
from scipy import stats

from lossnet import paper
from lossnet.report.sources import ScoreKey, paper_score_keys
from lossnet.report.tables import best_scores, cell_values

__all__ = [
    "ARCH_ATTRIBUTES",
    "LAYER_ATTRIBUTES",
    "correlate",
    "arch_attribute_values",
    "layer_attribute_values",
    "arch_correlations",
    "layer_correlations",
    "cross_benchmark_matrix",
    "benchmark_rank_matrix",
]

#: Architecture-level attributes (numeric) used in the correlation table.
#: The yes/no structure columns enter as 0/1 (Pearson r is then the point-biserial correlation).
ARCH_ATTRIBUTES = (
    "imagenet_top1",
    "depth",
    "mflops",
    "params",
    "skip_connections",
    "branching",
    "conv1x1",
    "batch_norm",
)
#: Layer-level attributes from layer_stats.
LAYER_ATTRIBUTES = ("layer_params", "layer_depth", "layer_mflops", "channels", "features")


def correlate(x: Iterable[float], y: Iterable[float]) -> dict[str, float]:
    """Pearson and Spearman correlation of paired samples with two-sided p-values.

    Args:
        x, y: equally long sequences; pairs with a non-finite member are dropped.

    Returns:
        ``{"n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p"}``; NaN where undefined
        (fewer than 3 pairs, or a constant sample).
    """
    xa, ya = np.asarray(list(x), float), np.asarray(list(y), float)
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in length ({xa.size} vs {ya.size})")
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[ok], ya[ok]
    out = {
        "n": int(xa.size),
        "pearson_r": math.nan,
        "pearson_p": math.nan,
        "spearman_rho": math.nan,
        "spearman_p": math.nan,
    }
    if xa.size < 3 or np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return out
    pr = stats.pearsonr(xa, ya)
    sr = stats.spearmanr(xa, ya)
    out.update(
        pearson_r=float(pr.statistic),
        pearson_p=float(pr.pvalue),
        spearman_rho=float(sr.statistic),
        spearman_p=float(sr.pvalue),
    )
    return out


def arch_attribute_values(
    archs: Iterable[str], *, structure: bool = True, attributes_fn: Callable[[str], dict[str, Any]] | None = None
) -> tuple[dict[str, dict[str, float]], str | None]:
    """Architecture attributes: Table I columns plus measured parameter count.

    Args:
        archs: architectures.
        structure: also call :func:`lossnet.structure.arch_attributes` (parameters, and the yes/no
            structure columns as 0/1).
        attributes_fn: replacement for ``lossnet.structure.arch_attributes`` (tests).

    Returns:
        ``({arch: {attribute: value}}, note)``; note says why structure attributes are missing.
    """
    table = paper.architectures()
    out = {a: dict(table[a]) for a in archs if a in table}
    note = None
    if structure:
        try:
            if attributes_fn is None:
                from lossnet.structure import arch_attributes as attributes_fn
            for a in out:
                attrs = attributes_fn(a)
                for k, v in attrs.items():
                    out[a][k] = float(v)
        except Exception as exc:  # the report must still run without the models
            note = f"structure attributes unavailable ({type(exc).__name__}: {exc})"
    else:
        note = "structure attributes skipped (--no-structure)"
    return out, note


def layer_attribute_values(
    cells: Iterable[tuple[str, str]],
    *,
    structure: bool = True,
    size: int = 64,
    stats_fn: Callable[..., dict[str, Any]] | None = None,
) -> tuple[dict[tuple[str, str], dict[str, float]], str | None]:
    """Layer attributes of (arch, E/S/M/L) cells from ``layer_stats`` (random-init models, cached).

    Returns:
        ``({(arch, layer): {"layer_params", "layer_depth", "layer_mflops", "channels", "features"}}, note)``.
    """
    if not structure:
        return {}, "layer attributes skipped (--no-structure)"
    try:
        if stats_fn is None:
            from lossnet.structure import layer_stats as stats_fn
        out = {}
        for arch, layer in cells:
            s = stats_fn(arch, layer, size=size)
            out[(arch, layer)] = {
                "layer_params": float(s["params"]),
                "layer_depth": float(s["depth"]),
                "layer_mflops": float(s["mflops"]),
                "channels": float(s["channels"]),
                "features": float(s["features"]),
            }
        return out, None
    except Exception as exc:
        return {}, f"layer attributes unavailable ({type(exc).__name__}: {exc})"


def _keys(scores: dict) -> list[ScoreKey]:
    order = paper_score_keys()
    return [k for k in order if k in scores] + [k for k in scores if k not in order]


def arch_correlations(rows: Iterable[dict[str, Any]], attrs: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Best-layer score of each architecture vs each architecture attribute, per score.

    Returns:
        rows ``{"score", "attribute", "n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p"}``.
    """
    best = best_scores(rows)
    names = [a for a in ARCH_ATTRIBUTES if any(a in v for v in attrs.values())]
    out = []
    for key in _keys(best):
        archs = [a for a in best[key] if a in attrs]
        for name in names:
            xs = [attrs[a].get(name, math.nan) for a in archs]
            out.append({"score": key.label, "attribute": name, **correlate(xs, [best[key][a] for a in archs])})
    return out


def layer_correlations(
    rows: Iterable[dict[str, Any]], layer_attrs: dict[tuple[str, str], dict[str, float]]
) -> list[dict[str, Any]]:
    """Score of every (arch, layer) cell vs each layer attribute, per score."""
    if not layer_attrs:
        return []
    values = cell_values(rows)
    out = []
    for key in _keys(values):
        cells = [(a, l, v) for a, d in values[key].items() for l, v in d.items() if (a, l) in layer_attrs]
        for name in LAYER_ATTRIBUTES:
            xs = [layer_attrs[(a, l)][name] for a, l, _ in cells]
            out.append({"score": key.label, "attribute": name, **correlate(xs, [v for _, _, v in cells])})
    return out


def cross_benchmark_matrix(
    rows: Iterable[dict[str, Any]], *, method: str = "spearman"
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Correlation of best-layer scores between every pair of performance scores (over the
    architectures both have).

    Args:
        method: "spearman" or "pearson".

    Returns:
        ``(labels, r, p)``: score labels and the square matrices of coefficients and p-values.
    """
    if method not in ("spearman", "pearson"):
        raise ValueError(f"method must be 'spearman' or 'pearson', not {method!r}")
    best = best_scores(rows)
    keys = _keys(best)
    n = len(keys)
    r = np.full((n, n), np.nan)
    p = np.full((n, n), np.nan)
    col = "spearman_rho" if method == "spearman" else "pearson_r"
    pcol = "spearman_p" if method == "spearman" else "pearson_p"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, ki in enumerate(keys):
            for j, kj in enumerate(keys):
                archs = [a for a in best[ki] if a in best[kj]]
                c = correlate([best[ki][a] for a in archs], [best[kj][a] for a in archs])
                r[i, j], p[i, j] = c[col], c[pcol]
    np.fill_diagonal(p, np.nan)  # a score against itself: r = 1, no test
    return [k.label for k in keys], r, p


def benchmark_rank_matrix(rows: Iterable[dict[str, Any]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Spearman correlation between the Table III benchmark columns b1..b4 (average ranks) over
    the architectures that have both.

    Returns:
        ``(labels, rho, p)`` with labels among ``b1..b4`` that have values.
    """
    from lossnet.report.tables import BENCHMARK_GROUPS, ranking_table

    table = ranking_table(rows)
    labels = [b for b in BENCHMARK_GROUPS if any(r[b] is not None for r in table)]
    n = len(labels)
    rho, p = np.full((n, n), np.nan), np.full((n, n), np.nan)
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            pairs = [(r[a], r[b]) for r in table if r[a] is not None and r[b] is not None]
            c = correlate([x for x, _ in pairs], [y for _, y in pairs])
            rho[i, j], p[i, j] = c["spearman_rho"], c["spearman_p"]
    np.fill_diagonal(p, np.nan)  # a score against itself: rho = 1, no test
    return labels, rho, p
