"""Report: networks beyond the paper's 14 (timm, other torchvision models, user modules) in their own
section beside the store's paper networks (issue #28: ``net="timm:<name>"`` works in the report too).

The truth the report is checked against: the store's own metric rows read with sqlite3 here, and ranks
counted by hand (1 + number of greater values + half the other equal ones).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sqlite3

import pytest
from test_report_store import StoreBuilder

from lossnet.errors import InputError
from lossnet.report.render import build_report, fmt
from lossnet.report.sources import _other_layer, store_scores, store_scores_all_nets

TIMM = "timm:resnet18"


def _csv(path):
    return list(csv.DictReader(path.read_text().splitlines()))


def _rank(value, values):
    """Average-tie rank of ``value`` among ``values``, 1 = highest (by hand, not scipy)."""
    greater = sum(1 for v in values if v > value)
    equal = sum(1 for v in values if v == value)
    return greater + (equal + 1) / 2


def _section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    end = md.find("\n## ", start + 3)
    return md[start:] if end < 0 else md[start:end]


def _report(argv):
    from lossnet.cli import report

    parser = argparse.ArgumentParser()
    report.register(parser.add_subparsers())
    args = parser.parse_args(["report", *argv])
    return args.func(args)


# --------------------------------------------------------------------------------------------------
# a real store: `lossnet bench similarity --store` on a synthetic BAPPS folder, timm:resnet18 and vgg16


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    pytest.importorskip("timm")
    pytest.importorskip("scipy")
    from lossnet.bench.similarity.synthetic import write_synthetic_bapps
    from lossnet.cli.main import main

    root = tmp_path_factory.mktemp("backbones")
    data = write_synthetic_bapps(root / "val", n_2afc=12, n_jnd=12, subsets_2afc=("cnn",), subsets_jnd=("cnn",), seed=3)
    store = root / "results.db"
    for net, layers in ((TIMM, "E,L,layer3"), ("vgg16", "E,L")):  # layer3: no E/S/M/L of timm:resnet18
        argv = [
            "bench",
            "similarity",
            "--preset",
            "quick",
            "--data",
            str(data),
            "--net",
            net,
            "--layer",
            layers,
            "--weights",
            "none",
            "--subsets",
            "cnn",
            "--jnd-subsets",
            "cnn",
            "--device",
            "cpu",
            "--no-progress",
            "--out",
            str(root / net.replace(":", "_")),
            "--store",
            str(store),
            "--separate-layers",
        ]
        assert main(argv) == 0
    out = root / "report"
    assert _report([str(store), "-o", str(out), "--no-structure"]) == 0
    return store, out


def _store_values(store, metric):
    """``{(net, layer): value}`` of one metric of the done runs, straight from the SQLite file."""
    con = sqlite3.connect(store)
    rows = con.execute(
        "SELECT r.config, m.value FROM runs r JOIN metrics m ON m.run_key = r.key "
        "WHERE r.status = 'done' AND m.dataset = 'bapps' AND m.name = ?",
        (metric,),
    ).fetchall()
    con.close()
    return {(json.loads(c)["net"], json.loads(c)["layer"]): v for c, v in rows}


@pytest.mark.parametrize("metric, store_metric", [("2afc", "2afc"), ("jnd_map", "jnd_map_pooled")])
def test_real_store_timm_cells_equal_the_stores_values(real_store, metric, store_metric):
    store, out = real_store
    truth = _store_values(store, store_metric)
    assert {net for net, _ in truth} == {TIMM, "vgg16"}
    layer_of = {"E": "E", "L": "L", "layer3": "layer3"}  # timm:resnet18's M is layer2: layer3 is no E/S/M/L
    every = list(truth.values())
    got = {(r["arch"], r["layer"]): r for r in _csv(out / "tables" / "beyond_scores.csv") if r["metric"] == metric}
    assert set(got) == {(net, layer_of[layer]) for net, layer in truth}
    for (net, layer), value in truth.items():
        row = got[(net, layer_of[layer])]
        assert float(row["value"]) == value
        assert float(row["cell_rank"]) == _rank(value, every) and int(row["cells"]) == 5
        assert row["paper_net"] == str(net == "vgg16")
    # the Markdown table: value and rank of every timm cell, other layers by their name
    md = (out / "report.md").read_text()
    beyond = _section(md, "Beyond the paper's networks")
    table = beyond[beyond.index(f"**similarity {metric} -- 5 cells, 2 networks**") :]
    line = next(l for l in table.splitlines() if l.startswith(f"| {TIMM} |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:3] == [TIMM, "beyond", f"{fmt(truth[(TIMM, 'E')])} #{_fmt_rank(truth[(TIMM, 'E')], every)}"]
    assert cells[5] == f"{fmt(truth[(TIMM, 'L')])} #{_fmt_rank(truth[(TIMM, 'L')], every)}"
    assert cells[6].startswith(f"layer3 {fmt(truth[(TIMM, 'layer3')])} #{_fmt_rank(truth[(TIMM, 'layer3')], every)}")
    best_timm = max(v for (n, _), v in truth.items() if n == TIMM)
    nets = [best_timm, max(v for (n, _), v in truth.items() if n == "vgg16")]
    assert cells[8] == f"{_fmt_rank(best_timm, nets)} / 2"
    # the HTML carries the same cells, with a heatmap colour
    html_text = (out / "report.html").read_text()
    assert "Beyond the paper&#x27;s networks" in html_text or "Beyond the paper's networks" in html_text
    assert re.search(
        r'<td (class="best" )?style="background:#[0-9a-f]{6};color:#(000|fff)" title="'
        + re.escape(f"{TIMM} at E (similarity {metric}): {fmt(truth[(TIMM, 'E')])}"),
        html_text,
    )


def _fmt_rank(value, values):
    r = _rank(value, values)
    return f"{r:.0f}" if r == int(r) else f"{r:.1f}"


def test_real_store_correlations_leave_the_timm_net_out_and_say_so(real_store):
    store, out = real_store
    md = (out / "report.md").read_text()
    corr = _section(md, "Correlations: architecture attributes")
    assert f"Networks beyond the paper's 14 ({TIMM}) are left out of every correlation" in corr
    assert TIMM not in (out / "tables" / "correlations_architecture.csv").read_text()
    assert TIMM not in (out / "tables" / "correlations_cross_benchmark.csv").read_text()
    # the paper tables hold the paper net only; the timm net is in the figures of its own section
    for name in ("table3_average_ranking.csv", "table4_best_layer.csv", "scores_similarity-2afc-bapps.csv"):
        assert TIMM not in (out / "tables" / name).read_text()
    assert (out / "figures" / "beyond_similarity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(figures/beyond_similarity.png)" in _section(md, "Beyond the paper's networks")
    ranking = _csv(out / "tables" / "beyond_average_ranking.csv")
    assert {r["arch"] for r in ranking} == {TIMM, "vgg16"}
    # the recommendation heading the report ranks the paper net only, and says where the others are
    lead = _section(md, "Recommendation: which loss network and layer")
    table = [line for line in lead.splitlines() if line.startswith("| ")]
    assert any(line.startswith("| similarity | vgg16 at ") for line in table) and not any(
        TIMM in line for line in table
    )
    assert "Ranked among the paper's networks only: the networks beyond them are compared in section" in lead


def test_real_store_paper_part_is_unchanged_by_the_timm_runs(real_store, tmp_path):
    """The paper networks' tables of the store equal those of a report built without the timm runs."""
    store, out = real_store
    rows, info = store_scores(store)
    paper_only = tmp_path / "paper_only"
    build_report(rows, paper_only, source=str(store), structure=False, make_figures=False)
    for f in (paper_only / "tables").iterdir():
        assert (out / "tables" / f.name).read_text() == f.read_text(), f.name
    rows2, others, info2 = store_scores_all_nets(store)
    assert rows2 == rows and {r["arch"] for r in others} == {TIMM}
    assert info.skipped["not a paper architecture"] == 6  # 3 timm runs x (2afc, jnd_map_pooled)
    assert "not a paper architecture" not in info2.skipped and info2.other_runs == 3 and info2.other_archs == (TIMM,)


def test_recommend_on_a_store_with_timm_runs_names_them_as_not_ranked(real_store, capsys):
    from lossnet.cli.main import main
    from lossnet.recommendation import recommend

    store, _ = real_store
    rec = recommend("similarity", store=store)
    assert [c.arch for c in rec.choices] == ["vgg16"]
    assert any(f"({TIMM}) are not ranked here" in n for n in rec.notes)
    assert main(["recommend", "similarity", "--store", str(store)]) == 0
    assert f"({TIMM}) are not ranked here" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# stores written here (schema-1 layout of tests/report/test_report_store.py): rules by hand


SIM = {"distance": "spatial", "weights": "none"}


def _sim(b, net, layer, two_afc, **config):
    return b.add("similarity", {"net": net, "layer": layer, **SIM, **config}, {"bapps/2afc": two_afc})


def test_ranks_other_layers_and_module_nets_by_hand(tmp_path):
    b = StoreBuilder(tmp_path / "r.db")
    _sim(b, "vgg16", "S", 0.70)
    _sim(b, "vgg16", "L", 0.65)
    _sim(b, "timm:convnext_tiny", "E", 0.72)
    _sim(b, "timm:convnext_tiny", "L", 0.60)
    _sim(b, "module:MyNet", "features.3", 0.70)  # a user's module at one of its own nodes
    _sim(b, "resnet34", "layer1", 0.50)  # torchvision, not a paper net, no E/S/M/L of its own
    _sim(b, "timm:convnext_tiny", "E", 0.74, seed=1)  # a second seed: averaged with the first, 0.73
    rows, others, info = store_scores_all_nets(b.path)
    assert [(r["arch"], r["layer"], r["value"]) for r in rows] == [("vgg16", "S", 0.70), ("vgg16", "L", 0.65)]
    got = {(r["arch"], r["layer"]): (r["value"], r["n"]) for r in others}
    assert got == {
        ("timm:convnext_tiny", "E"): (pytest.approx(0.73), 2),
        ("timm:convnext_tiny", "L"): (0.60, 1),
        ("module:MyNet", "features.3"): (0.70, 1),
        ("resnet34", "layer1"): (0.50, 1),
    }
    assert info.other_runs == 5
    out = tmp_path / "rep"
    build_report(rows, out, source="s", structure=False, make_figures=False, other_rows=others)
    cells = {(r["arch"], r["layer"]): r for r in _csv(out / "tables" / "beyond_scores.csv")}
    # 0.73 > 0.70 = 0.70 > 0.65 > 0.60 > 0.50
    assert {k: float(r["cell_rank"]) for k, r in cells.items()} == {
        ("timm:convnext_tiny", "E"): 1,
        ("vgg16", "S"): 2.5,
        ("module:MyNet", "features.3"): 2.5,
        ("vgg16", "L"): 4,
        ("timm:convnext_tiny", "L"): 5,
        ("resnet34", "layer1"): 6,
    }
    # networks by their best cell: convnext 0.73, vgg16 = MyNet 0.70, resnet34 0.50
    assert {k[0]: float(r["net_rank"]) for k, r in cells.items()} == {
        "timm:convnext_tiny": 1,
        "vgg16": 2.5,
        "module:MyNet": 2.5,
        "resnet34": 4,
    }
    ranking = {r["arch"]: r for r in _csv(out / "tables" / "beyond_average_ranking.csv")}
    assert float(ranking["timm:convnext_tiny"]["b1"]) == 1 and float(ranking["resnet34"]["all"]) == 4
    assert [r["arch"] for r in _csv(out / "tables" / "beyond_average_ranking.csv")][0] == "timm:convnext_tiny"
    md = _section((out / "report.md").read_text(), "Beyond the paper's networks")
    assert "| module:MyNet | beyond | - | - | - | - | features.3 0.700 #2.5 (best) | features.3 | 2.5 / 4 |" in md
    assert "| timm:convnext_tiny | beyond | 0.730 #1 | - | - | 0.600 #5 | - | E | 1 / 4 |" in md
    assert "| vgg16 | paper | - | 0.700 #2.5 | - | 0.650 #4 | - | S | 2.5 / 4 |" in md


def test_layer_names_of_other_nets_resolve_to_their_extraction_points():
    pytest.importorskip("timm")
    # timm:resnet18 (docs/backbones.md): E act1, S layer1, M layer2, L layer4
    assert [_other_layer(TIMM, n) for n in ("E", "l", "layer1", "layer2", "layer4", "layer3")] == [
        "E",
        "L",
        "S",
        "M",
        "L",
        "layer3",
    ]
    assert _other_layer("convnext_tiny", "S") == "S"
    assert _other_layer("module:MyNet", "features.3") == "features.3"
    assert _other_layer(TIMM, "E,L") is None and _other_layer(TIMM, None) is None


def test_other_variants_are_skipped_with_a_reason_never_mixed_or_refused(tmp_path):
    b = StoreBuilder(tmp_path / "r.db")
    b.add(
        "similarity", {"net": "vgg16", "layer": "E", "distance": "spatial", "weights": "imagenet"}, {"bapps/2afc": 0.7}
    )
    _sim(b, TIMM, "E", 0.6)  # weights none: another variant than the paper net's
    rows, others, info = store_scores_all_nets(b.path)
    assert [r["arch"] for r in rows] == ["vgg16"] and others == []
    ((reason, n),) = [(k, v) for k, v in info.skipped.items() if k.startswith("network beyond")]
    assert (
        n == 1 and "weights=none" in reason and "vs preset=quick, weights=imagenet" in reason and "--weights" in reason
    )
    # selecting the variant keeps them: no paper net of that variant, the timm runs alone
    rows, others, _ = store_scores_all_nets(b.path, weights="none")
    assert rows == [] and [(r["arch"], r["value"]) for r in others] == [(TIMM, 0.6)]
    # other nets of two variants where no paper net ran: neither is used, nothing is raised
    b = StoreBuilder(tmp_path / "r2.db")
    _sim(b, TIMM, "E", 0.6)
    _sim(b, "timm:convnext_tiny", "E", 0.5, distance="mse")
    rows, others, info = store_scores_all_nets(b.path)
    assert others == [] and any("several variants" in k and "distance=mse" in k for k in info.skipped)


def test_metric_choices_and_stand_ins_apply_to_other_nets(tmp_path):
    b = StoreBuilder(tmp_path / "r.db")
    sr = {"net": TIMM, "layer": "E", "scale": 4, "protocol": "reference"}
    b.add("superres", sr, {"set5/psnr": 25.0, "set5/psnr_torchmetrics": 27.0})
    b.add("roads", {"net": TIMM, "layer": "E"}, {"mrd.val/quality": 40.0, "mrd/quality": 45.0})
    b.add("autoencoder", {"net": TIMM, "layer": "E", "stand_in": ["digits for svhn"]}, {"digits/accuracy": 0.9})
    _, others, info = store_scores_all_nets(b.path)
    assert {(r["benchmark"], r["value"]) for r in others} == {("superres_x4", 25.0), ("segmentation", 40.0)}
    assert any(n.startswith("autoencoder: 1 run(s) NOT paper-comparable") for n in info.notes)
    assert any(n.startswith("superres_x4: test protocol reference") for n in info.notes)
    _, others, _ = store_scores_all_nets(b.path, sr_metric="torchmetrics", roads_split="test")
    assert {(r["benchmark"], r["value"]) for r in others} == {("superres_x4", 27.0), ("segmentation", 45.0)}


def test_cli_report_of_a_store_with_only_other_nets(tmp_path, capsys):
    b = StoreBuilder(tmp_path / "r.db")
    _sim(b, TIMM, "E", 0.6)
    _sim(b, TIMM, "L", 0.8)
    _sim(b, "timm:vit_small_patch14_dinov2", "M", 0.7)
    out = tmp_path / "rep"
    assert _report([str(b.path), "-o", str(out), "--no-structure"]) == 0  # it used to be "no paper-comparable results"
    printed = capsys.readouterr().out
    assert "Table III" not in printed and "Beyond the paper's networks" in printed
    md = (out / "report.md").read_text()
    assert "## Table III" not in md and "## Beyond the paper's networks" in md
    assert "the store has no runs of the paper's networks" in md
    assert [
        (r["arch"], r["layer"], float(r["value"]), float(r["cell_rank"]))
        for r in _csv(out / "tables" / "beyond_scores.csv")
    ] == [(TIMM, "E", 0.6, 3), (TIMM, "L", 0.8, 1), ("timm:vit_small_patch14_dinov2", "M", 0.7, 2)]
    from lossnet.recommendation import recommend

    with pytest.raises(
        InputError,
        match=r"no finished paper-comparable runs .*timm:resnet18, timm:vit_small_patch14_dinov2\) are not ranked",
    ):
        recommend("similarity", store=b.path)


def test_report_out_is_still_checked_before_the_store_is_read(tmp_path, monkeypatch):
    """The CLI now reads the store through store_scores_all_nets: the -o check stays first
    (tests/report/test_reliability_report.py::test_l14_... patches store_scores, which the CLI no longer calls)."""
    from lossnet.errors import LossnetError
    from lossnet.report import sources

    b = StoreBuilder(tmp_path / "r.db")
    _sim(b, TIMM, "E", 0.6)

    def boom(*a, **k):
        raise AssertionError("the store was read before -o was checked")

    monkeypatch.setattr(sources, "store_scores_all_nets", boom)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(LossnetError, match="afile exists and is not a directory"):
        _report([str(b.path), "-o", str(tmp_path / "afile")])
