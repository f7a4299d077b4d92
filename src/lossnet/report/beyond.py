"""Networks beyond the paper's 14 (timm models, other torchvision models, user modules) beside the
paper networks run in the same store: the tables of the report's "Beyond the paper's networks" section.

The rows are tidy score rows (:func:`lossnet.report.sources.store_scores_all_nets`): the same
metrics, variant and metric choices as the paper tables. Every score is higher-is-better.

- A **cell** is one (network, layer) value of a score; its rank is among all cells of that score
  in the store (paper and other networks, every layer; 1 = best, ties share their average rank).
- A **network's best** is its highest cell over all its layers (E/S/M/L and any other layer it was
  run at); networks are ranked by it per score (Table III's per-score rule), and the average
  ranking averages those ranks over each benchmark's scores (b1-b4) and the benchmarks ('all'),
  as :func:`lossnet.report.tables.ranking_table` does for the paper networks alone.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from lossnet import paper
from lossnet.report.sources import ScoreKey, key_of, paper_score_keys
from lossnet.report.tables import arch_order, average_ranks, score_ranks

__all__ = ["scores_present", "beyond_score_table", "beyond_ranking_table", "beyond_long_rows", "is_paper_net"]

LAYERS = paper.LAYER_KEYS


def is_paper_net(arch: str) -> bool:
    """One of the paper's 14 architectures."""
    return arch in paper.architectures()


def _values(rows: Iterable[dict[str, Any]]) -> dict[ScoreKey, dict[str, dict[str, float]]]:
    out: dict[ScoreKey, dict[str, dict[str, float]]] = {}
    for r in rows:
        out.setdefault(key_of(r), {}).setdefault(r["arch"], {})[r["layer"]] = float(r["value"])
    return out


def _finite(cells: dict[str, float]) -> dict[str, float]:
    return {l: v for l, v in cells.items() if np.isfinite(v)}


def _layer_order(layer: str) -> tuple[int, str]:
    return (LAYERS.index(layer), "") if layer in LAYERS else (len(LAYERS), layer)


def scores_present(other_rows: Iterable[dict[str, Any]]) -> list[ScoreKey]:
    """The scores the other networks have, in the paper's order."""
    present = {key_of(r) for r in other_rows}
    return [k for k in paper_score_keys() if k in present]


def _net_order(archs: Iterable[str]) -> list[str]:
    """The other networks (alphabetical), then the paper networks (paper order)."""
    archs = set(archs)
    return sorted(a for a in archs if not is_paper_net(a)) + arch_order(a for a in archs if is_paper_net(a))


def beyond_score_table(
    rows: Sequence[dict[str, Any]], other_rows: Sequence[dict[str, Any]], key: ScoreKey
) -> tuple[list[dict[str, Any]], int, int]:
    """One score over every network of the store: the other networks first, then the paper networks.

    Returns:
        ``(table, n_cells, n_nets)``; each row ``{"arch", "paper_net", "E", "S", "M", "L" (value or None),
        "other_layers" ({layer: value}), "ranks" ({layer: cell rank}), "best" ("S" or "S/M" for a tie),
        "best_value", "net_rank"}``; ``n_cells`` / ``n_nets`` are what the ranks are out of.
    """
    values = _values([*rows, *other_rows]).get(key, {})
    cells = {(a, l): v for a, d in values.items() for l, v in _finite(d).items()}
    cell_rank = score_ranks(cells) if cells else {}
    best = {a: max(_finite(d).values()) for a, d in values.items() if _finite(d)}
    net_rank = score_ranks(best) if best else {}
    table = []
    for arch in _net_order(values):
        d = values[arch]
        finite = _finite(d)
        top = best.get(arch)
        row: dict[str, Any] = {"arch": arch, "paper_net": is_paper_net(arch), **{l: d.get(l) for l in LAYERS}}
        row["other_layers"] = {l: d[l] for l in sorted(d, key=_layer_order) if l not in LAYERS}
        row["ranks"] = {l: cell_rank[(arch, l)] for l in sorted(finite, key=_layer_order)}
        row["best"] = "/".join(l for l in sorted(finite, key=_layer_order) if finite[l] == top)
        row["best_value"] = top
        row["net_rank"] = net_rank.get(arch)
        table.append(row)
    return table, len(cells), len(best)


def beyond_ranking_table(rows: Sequence[dict[str, Any]], other_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Average rank of every network of the store (Table III's rule, over all networks present).

    Returns:
        ``[{"arch", "paper_net", "b1", "b2", "b3", "b4", "all", "n_scores"}, ...]`` sorted by ``all``
        (best first; networks without it last), a benchmark without scores is None.
    """
    values = _values([*rows, *other_rows])
    ranks = {}
    for key, archs in values.items():
        best = {a: max(_finite(d).values()) for a, d in archs.items() if _finite(d)}
        if best:
            ranks[key] = score_ranks(best)
    out = []
    for arch in _net_order({a for r in ranks.values() for a in r}):
        out.append({"arch": arch, "paper_net": is_paper_net(arch), **average_ranks(arch, ranks)})
    out.sort(key=lambda r: (r["all"] is None, r["all"] if r["all"] is not None else 0.0))
    return out


def beyond_long_rows(rows: Sequence[dict[str, Any]], other_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every cell of the scores the other networks have, one row each, with its ranks (the CSV)."""
    n_by_cell = {(key_of(r), r["arch"], r["layer"]): r.get("n", 1) for r in [*rows, *other_rows]}
    out = []
    for key in scores_present(other_rows):
        table, n_cells, n_nets = beyond_score_table(rows, other_rows, key)
        for t in table:
            for layer, rank in t["ranks"].items():
                value = t[layer] if layer in LAYERS else t["other_layers"][layer]
                out.append(
                    {
                        "benchmark": key.benchmark,
                        "metric": key.metric,
                        "dataset": key.dataset,
                        "arch": t["arch"],
                        "paper_net": t["paper_net"],
                        "layer": layer,
                        "value": value,
                        "n": n_by_cell.get((key, t["arch"], layer), 1),
                        "cell_rank": rank,
                        "cells": n_cells,
                        "net_rank": t["net_rank"],
                        "nets": n_nets,
                        "best_layer": layer in t["best"].split("/"),
                    }
                )
    return out
