"""Acceptance: Table III and Table IV reproduced cell by cell from the published appendix scores.

Independent truth: the published table3_average_ranking.csv / table4_best_layer.csv (the paper's
own Tables III and IV), which our code never reads when computing them.

Cells that cannot match are xfail(strict) and named: the paper ranked its unrounded scores, the
appendix gives 3 significant digits, so where two architectures' best scores are equal in the
appendix the paper's ranks differ by the tie-break we cannot see. Our rule (average rank) gives the
midpoint; test_published_cell_within_tie_range checks that each published cell lies in the range
that breaking the ties either way allows, i.e. that the tie really is the whole explanation.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from scipy.stats import rankdata

from lossnet import paper
from lossnet.report.sources import paper_scores
from lossnet.report.tables import BENCHMARK_GROUPS, TABLE4_COLUMNS, best_layer_table, ranking_table

PUBLISHED_T3 = {r["arch"]: r for r in paper.read_csv("table3_average_ranking.csv")}
PUBLISHED_T4 = {r["arch"]: r for r in paper.read_csv("table4_best_layer.csv")}
T3_COLUMNS = ("b1", "b2", "b3", "b4", "all")

_B1_TIES = (
    "2AFC ties vgg11=googlenet (0.682, ranks 3-4) and vgg16_bn=inception_v3 (0.669, ranks 7-8); "
    "JND ties resnext50_32x4d=alexnet (0.589, ranks 9-10) and efficientnet_b7=densenet121 (0.579, ranks 11-12)"
)
_B2_TIES = "ties among the 12 published 3-digit PSNR/SSIM best-layer scores (x4/x8, Set5/Set14/BSD100)"
_B4_TIE = "SVHN tie resnet50=densenet121 (0.862, ranks 7-8)"

#: (column, arch) -> why the published cell differs from the average-rank result.
TABLE3_TIE_CELLS = {
    **{
        ("b1", a): f"b1 {a}: {_B1_TIES}"
        for a in ("vgg11", "vgg16_bn", "googlenet", "inception_v3", "alexnet", "densenet121")
    },
    **{
        ("b2", a): f"b2 {a}: {_B2_TIES}"
        for a in (
            "vgg16",
            "vgg16_bn",
            "resnet18",
            "resnet50",
            "resnext50_32x4d",
            "inception_v3",
            "efficientnet_b0",
            "efficientnet_b7",
            "alexnet",
            "squeezenet1_1",
        )
    },
    **{("b4", a): f"b4 {a}: {_B4_TIE}" for a in ("resnet50", "densenet121")},
}
# The overall average inherits every benchmark's tie.
TABLE3_TIE_CELLS.update({("all", a): f"all {a}: inherits the tie in {b} {a}" for (b, a) in list(TABLE3_TIE_CELLS)})

#: Table IV cells contradicting the appendix itself.
TABLE4_ERRATA = {
    ("b3_quality", "squeezenet1_1"): (
        "Table IV b3_quality squeezenet1_1 says L, but appendix Table X has quality "
        "E 12.3 / S 22.6 / M 16.8 / L 13.9 (and correctness, completeness also peak at S); "
        "Table III's b3 rank for squeezenet1_1 (8) is reproduced only with S"
    )
}


@pytest.fixture(scope="module")
def ours_t3():
    return {r["arch"]: r for r in ranking_table(paper_scores())}


@pytest.fixture(scope="module")
def ours_t4():
    return {r["arch"]: r for r in best_layer_table(paper_scores())}


def _t3_params():
    for arch in PUBLISHED_T3:
        for col in T3_COLUMNS:
            marks = []
            if (col, arch) in TABLE3_TIE_CELLS:
                marks = [pytest.mark.xfail(strict=True, reason=TABLE3_TIE_CELLS[(col, arch)])]
            yield pytest.param(col, arch, marks=marks, id=f"{col}-{arch}")


@pytest.mark.parametrize("col,arch", list(_t3_params()))
def test_table3_cell(ours_t3, col, arch):
    # The paper prints two decimals.
    assert round(ours_t3[arch][col], 2) == pytest.approx(float(PUBLISHED_T3[arch][col]), abs=0.0051)


def _t4_params():
    for arch in PUBLISHED_T4:
        for col in TABLE4_COLUMNS:
            marks = []
            if (col, arch) in TABLE4_ERRATA:
                marks = [pytest.mark.xfail(strict=True, reason=TABLE4_ERRATA[(col, arch)])]
            yield pytest.param(col, arch, marks=marks, id=f"{col}-{arch}")


@pytest.mark.parametrize("col,arch", list(_t4_params()))
def test_table4_cell(ours_t4, col, arch):
    assert ours_t4[arch][col] == PUBLISHED_T4[arch][col]


def _tie_bounds():
    """Per (benchmark column, arch): the mean rank if every tie breaks against / for the arch,
    computed straight from scores.csv (no lossnet.report code)."""
    best = defaultdict(dict)
    for r in paper.read_csv("scores.csv"):
        k = (r["benchmark"], r["metric"], r["dataset"])
        best[k][r["arch"]] = max(best[k].get(r["arch"], float("-inf")), float(r["value"]))
    bounds = {}
    for col, groups in BENCHMARK_GROUPS.items():
        keys = [k for k in best if k[0] in groups]
        for method in ("min", "max"):
            sums = defaultdict(float)
            for k in keys:
                archs = list(best[k])
                for a, rk in zip(archs, rankdata([-best[k][a] for a in archs], method=method)):
                    sums[a] += rk / len(keys)
            for a, v in sums.items():
                bounds.setdefault((col, a), {})[method] = v
    return bounds


@pytest.mark.parametrize("col,arch", sorted(k for k in TABLE3_TIE_CELLS if k[0] != "all"))
def test_published_cell_within_tie_range(col, arch):
    b = _tie_bounds()[(col, arch)]
    assert b["min"] < b["max"], f"{col} {arch} is involved in no tie, so the xfail reason is wrong"
    assert b["min"] - 0.006 <= float(PUBLISHED_T3[arch][col]) <= b["max"] + 0.006


def test_overall_weights_benchmarks_equally():
    # Independent of ties: the published 'all' is the plain mean of the published b1..b4.
    for arch, row in PUBLISHED_T3.items():
        mean = sum(float(row[b]) for b in ("b1", "b2", "b3", "b4")) / 4
        assert mean == pytest.approx(float(row["all"]), abs=0.0051), arch


def test_overall_order_matches_paper(ours_t3):
    # The ties move cells by fractions of a rank; the overall order of the paper must survive.
    ours = sorted(ours_t3, key=lambda a: ours_t3[a]["all"])
    published = sorted(PUBLISHED_T3, key=lambda a: float(PUBLISHED_T3[a]["all"]))
    assert ours[:4] == published[:4] == ["vgg11", "vgg19", "vgg16", "squeezenet1_1"]
    assert ours[-1] == published[-1] == "densenet121"


def test_rank_sums_are_complete(ours_t3):
    # Average ranks keep each score's rank sum at N(N+1)/2, so every benchmark column sums to 105.
    for col in ("b1", "b2", "b3", "b4"):
        assert sum(r[col] for r in ours_t3.values()) == pytest.approx(105.0)
