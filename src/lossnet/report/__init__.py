"""Analysis and report: the tables and figures of Pihlgren et al. (2024) from any results store,
side by side with the published numbers.

Modules, one job each:

- :mod:`lossnet.report.sources` -- scores from the shipped paper CSVs or from a results store, as
  one tidy table ``benchmark, metric, dataset, arch, layer, value``.
- :mod:`lossnet.report.tables` -- appendix score tables (V-XI), Table III average rankings,
  Table IV best layers, our-vs-paper comparison.
- :mod:`lossnet.report.correlations` -- Pearson/Spearman of scores against architecture and
  layer attributes, and the cross-benchmark matrix.
- :mod:`lossnet.report.figures` -- the paper's Figs. 2-5 (matplotlib, PNG + SVG).
- :mod:`lossnet.report.beyond` -- networks beyond the paper's 14 (timm, ...) beside the store's paper
  networks: score tables with cell ranks, average ranks.
- :mod:`lossnet.report.render` -- Markdown, self-contained HTML, CSV tables; :func:`build_report`.
"""

from __future__ import annotations

from lossnet.report.sources import ScoreKey, paper_scores, store_scores, store_scores_all_nets
from lossnet.report.tables import best_layer_table, ranking_table, score_table

__all__ = [
    "ScoreKey",
    "paper_scores",
    "store_scores",
    "store_scores_all_nets",
    "score_table",
    "ranking_table",
    "best_layer_table",
]
