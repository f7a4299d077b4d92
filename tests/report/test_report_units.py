"""Ranking, best-layer and correlation rules on hand-computed examples and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lossnet import paper
from lossnet.report.correlations import arch_correlations, correlate, cross_benchmark_matrix
from lossnet.report.sources import paper_scores
from lossnet.report.tables import best_layer_table, ranking_table, score_ranks, score_table


def _rows(key, table):
    b, m, d = key
    return [
        {"benchmark": b, "metric": m, "dataset": d, "arch": a, "layer": l, "value": v}
        for a, cells in table.items()
        for l, v in cells.items()
    ]


def test_score_ranks_average_ties():
    # 0.9 > 0.8 = 0.8 > 0.1: ranks 1, 2.5, 2.5, 4
    assert score_ranks({"a": 0.8, "b": 0.9, "c": 0.1, "d": 0.8}) == {"a": 2.5, "b": 1.0, "c": 4.0, "d": 2.5}


def test_ranking_uses_best_layer_and_equal_benchmark_weights():
    sim = _rows(("similarity", "2afc", "bapps"), {"vgg16": {"E": 0.9, "L": 0.1}, "alexnet": {"E": 0.5, "L": 0.6}})
    jnd = _rows(("similarity", "jnd_map", "bapps"), {"vgg16": {"E": 0.2}, "alexnet": {"E": 0.3}})
    seg = _rows(("segmentation", "quality", "mrd"), {"vgg16": {"M": 20.0}, "alexnet": {"M": 10.0}})
    t = {r["arch"]: r for r in ranking_table(sim + jnd + seg)}
    # b1: vgg16 ranks 1 (2AFC best 0.9) and 2 (JND) -> 1.5; alexnet 2 and 1 -> 1.5. b3: vgg16 1, alexnet 2.
    assert t["vgg16"]["b1"] == 1.5 and t["alexnet"]["b1"] == 1.5
    assert t["vgg16"]["b3"] == 1 and t["alexnet"]["b3"] == 2
    assert t["vgg16"]["b2"] is None and t["vgg16"]["b4"] is None
    assert t["vgg16"]["all"] == pytest.approx((1.5 + 1) / 2) and t["alexnet"]["all"] == pytest.approx((1.5 + 2) / 2)
    assert t["vgg16"]["n_scores"] == 3


def test_best_layer_ties_listed_in_layer_order():
    rows = _rows(("similarity", "2afc", "bapps"), {"vgg16": {"E": 0.5, "S": 0.7, "M": 0.7, "L": 0.6}})
    assert best_layer_table(rows)[0]["b1_2afc"] == "S/M"
    from lossnet.report.sources import ScoreKey

    assert score_table(rows, ScoreKey("similarity", "2afc", "bapps"))[0]["best"] == "S/M"


def test_score_table_matches_csv():
    from lossnet.report.sources import ScoreKey

    table = {r["arch"]: r for r in score_table(paper_scores(), ScoreKey("segmentation", "quality", "mrd"))}
    assert len(table) == 14
    assert (table["efficientnet_b7"]["E"], table["efficientnet_b7"]["L"], table["efficientnet_b7"]["best"]) == (
        13.5,
        25.6,
        "L",
    )


def test_correlate_closed_forms():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    c = correlate(x, [2 * v + 1 for v in x])
    assert c["pearson_r"] == pytest.approx(1.0) and c["spearman_rho"] == pytest.approx(1.0) and c["n"] == 5
    c = correlate(x, [math.exp(-v) for v in x])  # monotone decreasing, not linear
    assert c["spearman_rho"] == pytest.approx(-1.0) and -1 < c["pearson_r"] < -0.8
    y = [2.0, 1.0, 4.0, 3.0, 7.0]
    assert correlate(x, y)["pearson_r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert math.isnan(correlate([1, 2], [3, 4])["pearson_r"])
    assert math.isnan(correlate([1, 1, 1], [3, 4, 5])["spearman_rho"])
    # non-finite pairs are dropped
    assert correlate([1, 2, 3, float("nan")], [1, 2, 3, 4])["n"] == 3


def test_2afc_vs_top1_matches_numpy_on_the_paper():
    # Independent: best-layer 2AFC per arch straight from scores.csv, correlated with numpy.
    best = {}
    for r in paper.read_csv("scores.csv"):
        if r["metric"] == "2afc":
            best[r["arch"]] = max(best.get(r["arch"], 0.0), float(r["value"]))
    top1 = {a: v["imagenet_top1"] for a, v in paper.architectures().items()}
    archs = sorted(best)
    expected = np.corrcoef([best[a] for a in archs], [top1[a] for a in archs])[0, 1]
    row = next(
        r
        for r in arch_correlations(paper_scores(), paper.architectures())
        if r["score"] == "similarity 2afc" and r["attribute"] == "imagenet_top1"
    )
    assert row["n"] == 14
    assert row["pearson_r"] == pytest.approx(expected)
    assert row["pearson_r"] < 0 and row["pearson_p"] < 0.05  # the paper's (and Kumar et al.'s) finding


def test_cross_benchmark_matrix_symmetric_unit_diagonal():
    labels, r, p = cross_benchmark_matrix(paper_scores())
    assert len(labels) == 19
    assert np.allclose(np.diag(r), 1.0) and np.allclose(r, r.T, equal_nan=True)
    i, j = labels.index("segmentation quality"), labels.index("segmentation correctness")
    assert r[i, j] > 0.9  # quality is built from correctness and completeness


def test_report_from_paper_source(tmp_path):
    import re

    from lossnet.report.render import build_report

    paths = build_report(paper_scores(), tmp_path / "r", source="paper", structure=False)
    html_text = paths["html"].read_text()
    assert "http://" not in html_text and "https://" not in html_text
    assert len(re.findall(r'src="data:image/png;base64,', html_text)) == 7  # Fig. 2 x5, Fig. 3, Fig. 5
    assert "Fig. 4 (2AFC vs FLOPs) needs layer statistics" in html_text
    md = paths["md"].read_text()
    assert re.search(r"Pearson r = -0\.9\d\d", md)
    # Tables III/IV are set beside the published ones: a tie cell and the Table IV erratum
    assert "| vgg11 | 2.25 / 2.50 |" in md
    assert "S / L*" in md


def test_structure_failure_is_reported_not_raised():
    from lossnet.report.correlations import arch_attribute_values, layer_attribute_values

    def broken(*a, **k):
        raise RuntimeError("cannot build model")

    attrs, note = arch_attribute_values(["vgg16"], attributes_fn=broken)
    assert attrs["vgg16"]["imagenet_top1"] == 71.592 and "cannot build model" in note
    stats, note = layer_attribute_values([("vgg16", "E")], stats_fn=broken)
    assert stats == {} and "cannot build model" in note
    assert "skipped" in layer_attribute_values([("vgg16", "E")], structure=False)[1]


def test_html_is_well_formed(tmp_path):
    from html.parser import HTMLParser

    from lossnet.report.render import build_report

    class Balance(HTMLParser):
        void = {"meta", "img", "br", "hr", "link", "input"}

        def __init__(self):
            super().__init__()
            self.stack = []

        def handle_starttag(self, tag, attrs):
            if tag not in self.void:
                self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
            self.stack.pop()

    rows = [r for r in paper_scores() if r["benchmark"] == "similarity"]
    paths = build_report(rows, tmp_path, source="paper", structure=False, make_figures=False)
    p = Balance()
    p.feed(paths["html"].read_text())
    assert p.stack == []


def test_benchmark_rank_matrix_matches_scipy_on_published_table3_columns():
    from scipy.stats import spearmanr

    from lossnet.report.correlations import benchmark_rank_matrix

    labels, rho, _ = benchmark_rank_matrix(paper_scores())
    assert labels == ["b1", "b2", "b3", "b4"]
    t = ranking_table(paper_scores())
    i, j = labels.index("b2"), labels.index("b3")
    assert rho[i, j] == pytest.approx(spearmanr([r["b2"] for r in t], [r["b3"] for r in t]).statistic)
    assert np.allclose(np.diag(rho), 1.0)
