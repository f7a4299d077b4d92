"""`lossnet recommend` / `lossnet.recommendation.recommend` (the lead exports it as `lossnet.recommend`): its answers against the published CSVs,
read here independently with the csv module, and against hand-made results stores."""

from __future__ import annotations

import ast
import csv
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lossnet.cli.main import main
from lossnet.errors import DataError, InputError
from lossnet.recommendation import TASKS, recommend

PAPER_DIR = Path(__file__).resolve().parents[2] / "src" / "lossnet" / "data" / "paper"
COLUMNS = {"similarity": "b1", "superres": "b2", "roads": "b3", "autoencoder": "b4", "all": "all"}
BENCHMARKS = {
    "similarity": ("similarity",),
    "superres": ("superres_x4", "superres_x8"),
    "roads": ("segmentation",),
    "autoencoder": ("autoencoder",),
}


def _csv(name):
    with open(PAPER_DIR / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _published_order(column):
    """Table III's order for one column: sort by the printed average rank; ties stay in table order."""
    rows = _csv("table3_average_ranking.csv")
    return [(r["arch"], float(r[column])) for r in sorted(rows, key=lambda r: float(r[column]))]


def _scores():
    """{(benchmark, metric, dataset): {arch: {layer: value}}} straight from scores.csv."""
    out = {}
    for r in _csv("scores.csv"):
        out.setdefault((r["benchmark"], r["metric"], r["dataset"]), {}).setdefault(r["arch"], {})[r["layer"]] = float(
            r["value"]
        )
    return out


def test_tasks_are_the_four_and_all():
    assert TASKS == ("similarity", "superres", "roads", "autoencoder", "all")


@pytest.mark.parametrize("task", list(COLUMNS))
def test_ranking_equals_published_table3(task):
    rec = recommend(task)
    assert [(c.arch, c.rank) for c in rec.choices] == _published_order(COLUMNS[task])
    assert rec.source == "paper" and rec.column == COLUMNS[task]


def test_superres_answer():
    rec = recommend("superres")
    # Table III b2: squeezenet1_1 1.17, vgg11 2.33, vgg19 4.25 -- and every one of its 12 scores is best at E
    assert [c.arch for c in rec.choices[:3]] == ["squeezenet1_1", "vgg11", "vgg19"]
    assert (rec.best.arch, rec.best.layer, rec.best.layer_rank) == ("squeezenet1_1", "E", 1.0)
    assert rec.code == 'lossnet.PerceptualLoss(net="squeezenet1_1", layers=("E",), distance="mse")'
    assert rec.best.scores["x4 ssim bsd100"] == 0.646 and rec.best.scores["x8 psnr set5"] == 26.5
    assert len(rec.best.scores) == 12


@pytest.mark.parametrize("task", ["similarity", "superres", "roads", "autoencoder"])
def test_layer_that_wins_every_score_is_chosen(task):
    """Where one layer has the highest published value on every score of the task, it is the answer
    (mean layer rank 1); elsewhere no layer has mean rank 1."""
    scores = {k: v for k, v in _scores().items() if k[0] in BENCHMARKS[task]}
    for c in recommend(task).choices:
        winners = set()
        for per_arch in scores.values():
            cells = per_arch[c.arch]
            top = max(cells.values())
            winners.add(frozenset(l for l, v in cells.items() if v == top))
        if len(winners) == 1 and len(next(iter(winners))) == 1:
            assert c.layer == next(iter(next(iter(winners)))) and c.layer_rank == 1.0, c
        else:
            assert c.layer_rank > 1.0, c


def test_roads_vgg19_by_hand():
    # vgg19 on MRD (scores.csv): correctness E 39.2 S 37.8 M 42.1 L 29.0, completeness 60.9 56.9 64.4 43.0,
    # quality 22.4 21.5 23.9 16.5: M is best on all three scores
    c = {c.arch: c for c in recommend("roads").choices}["vgg19"]
    assert c.layer == "M" and c.scores == {"correctness": 42.1, "completeness": 64.4, "quality": 23.9}
    assert c.best_layers == {"b3_quality": "M"}


def test_scores_are_the_published_cells():
    table = _scores()
    for task in BENCHMARKS:
        for c in recommend(task).choices:
            expect = {k: v[c.arch][c.layer] for k, v in table.items() if k[0] in BENCHMARKS[task]}
            assert sorted(c.scores.values()) == sorted(expect.values())


def test_best_layers_match_table4_except_the_erratum():
    t4 = {r["arch"]: r for r in _csv("table4_best_layer.csv")}
    for task in BENCHMARKS:
        for c in recommend(task).choices:
            for col, got in c.best_layers.items():
                if (c.arch, col) == ("squeezenet1_1", "b3_quality"):
                    assert (got, t4[c.arch][col]) == ("S", "L")  # the paper's erratum (report/render.py)
                else:
                    assert got == t4[c.arch][col], (task, c.arch, col)


def test_all_has_each_tasks_layer():
    rec = recommend("all")
    per_task = {t: {c.arch: c.layer for c in recommend(t).choices} for t in BENCHMARKS}
    for c in rec.choices:
        assert c.task_layers == {t: per_task[t][c.arch] for t in BENCHMARKS}


def test_caveats_state_the_papers_findings():
    text = " ".join(recommend("superres").caveats)
    assert "VGG networks without batch normalization perform best" in text
    assert "vgg11 3.38, vgg19 3.60, vgg16 4.10" in text and "vgg16_bn 9.10" in text
    assert "at least as important as the choice of architecture" in text
    assert "better ImageNet accuracy does not imply a better loss network" in text
    assert "L is the layer to use for 0 of 14" in text
    assert "Kumar" not in text
    assert "Kumar et al." in " ".join(recommend("similarity").caveats)


def test_spearman_in_caveat_by_hand():
    """rho(top-1, -b1 rank) over 14 architectures, computed here with plain ranks."""
    top1 = {r["arch"]: float(r["imagenet_top1"]) for r in _csv("architectures.csv")}
    b1 = {r["arch"]: float(r["b1"]) for r in _csv("table3_average_ranking.csv")}

    def ranks(d):
        s = sorted(d.values())
        return {k: (s.index(v) + len(s) - s[::-1].index(v) + 1) / 2 for k, v in d.items()}  # average ties

    rx, ry = ranks(top1), ranks({a: -v for a, v in b1.items()})
    n = len(rx)
    mx = my = (n + 1) / 2
    num = sum((rx[a] - mx) * (ry[a] - my) for a in rx)
    den = (sum((rx[a] - mx) ** 2 for a in rx) * sum((ry[a] - my) ** 2 for a in rx)) ** 0.5
    assert f"= {num / den:+.2f} over 14" in " ".join(recommend("similarity").caveats)


def test_code_line_builds_a_working_loss():
    import torch

    import lossnet

    for task in ("superres", "similarity"):
        call = ast.parse(recommend(task).code, mode="eval").body
        assert ast.unparse(call.func) == "lossnet.PerceptualLoss"
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        loss = lossnet.PerceptualLoss(**kwargs, weights=None)  # random init: nothing is downloaded
        x = torch.rand(1, 3, 64, 64, requires_grad=True)
        value = loss(x, torch.rand(1, 3, 64, 64))
        value.backward()
        assert value.ndim == 0 and x.grad is not None


def test_import_reads_no_torch():
    code = (
        "import sys, lossnet.recommendation as r; r.recommend('all'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'scipy') "
        "or m.startswith(('lossnet.bench', 'lossnet.report', 'lossnet.runs'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(PAPER_DIR.parents[2]), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "[]"


def test_errors():
    with pytest.raises(InputError, match="unknown task 'segmentation'"):
        recommend("segmentation")
    with pytest.raises(InputError, match="give store="):
        recommend("roads", preset="paper")


# --------------------------------------------------------------------------------------------------
# from a results store

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs(key TEXT PRIMARY KEY, benchmark TEXT, config TEXT, status TEXT, error TEXT,
  started_at REAL, ended_at REAL, duration_s REAL, host TEXT, device TEXT, attempts INTEGER, lossnet_version TEXT);
CREATE TABLE metrics(run_key TEXT, dataset TEXT, name TEXT, value REAL, PRIMARY KEY (run_key, dataset, name));
CREATE TABLE artifacts(run_key TEXT, name TEXT, path TEXT, PRIMARY KEY (run_key, name));
INSERT INTO meta VALUES ('schema_version', '1');
"""


def _store(path, cells):
    """A schema-1 store with one done similarity run per (arch, layer): {(arch, layer): (2afc, jnd)}."""
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    for i, ((arch, layer), (afc, jnd)) in enumerate(cells.items()):
        key = f"{i:016x}"
        config = {
            "benchmark": "similarity",
            "preset": "quick",
            "weights": "imagenet",
            "seed": 0,
            "net": arch,
            "layer": layer,
        }
        con.execute(
            "INSERT INTO runs(key, benchmark, config, status, attempts) VALUES (?,?,?,?,1)",
            (key, "similarity", json.dumps(config), "done"),
        )
        con.execute("INSERT INTO metrics VALUES (?,?,?,?)", (key, "bapps", "2afc", afc))
        con.execute("INSERT INTO metrics VALUES (?,?,?,?)", (key, "bapps", "jnd_map_pooled", jnd))
    con.commit()
    con.close()
    return path


@pytest.fixture()
def store(tmp_path):
    # the paper ranks b1: squeezenet1_1 3.5, vgg16 4.5, alexnet 5; these made-up runs reverse it:
    # alexnet is best on both scores (at S), vgg16 second on both (at E), squeezenet1_1 last
    cells = {}
    for layer, (a, v, s) in zip(
        "ESML", [(0.60, 0.66, 0.50), (0.70, 0.61, 0.51), (0.65, 0.62, 0.52), (0.62, 0.63, 0.53)]
    ):
        cells[("alexnet", layer)] = (a, a - 0.1)
        cells[("vgg16", layer)] = (v, v - 0.1)
        cells[("squeezenet1_1", layer)] = (s, s - 0.1)
    return _store(tmp_path / "results.db", cells)


def test_store_ranks_own_results(store):
    rec = recommend("similarity", store=store)
    assert [(c.arch, c.rank, c.layer) for c in rec.choices] == [
        ("alexnet", 1.0, "S"),
        ("vgg16", 2.0, "E"),
        ("squeezenet1_1", 3.0, "L"),
    ]
    assert rec.source == str(store) and rec.best.scores == {"2afc": 0.70, "jnd_map": pytest.approx(0.60)}
    assert rec.code == 'lossnet.PerceptualLoss(net="alexnet", layers=("S",), distance="spatial")'
    assert "Ranked from the runs in the store" in rec.caveats[-1]


def test_store_without_the_task(store):
    with pytest.raises(InputError, match="no finished paper-comparable runs for task 'superres'"):
        recommend("superres", store=store)


def test_store_missing(tmp_path):
    with pytest.raises(DataError, match="results store not found"):
        recommend("roads", store=tmp_path / "nope.db")


# --------------------------------------------------------------------------------------------------
# CLI


def test_cli_superres(capsys):
    assert main(["recommend", "superres"]) == 0
    out = capsys.readouterr().out
    assert "Use: squeezenet1_1 at layer E" in out
    assert 'lossnet.PerceptualLoss(net="squeezenet1_1", layers=("E",), distance="mse")' in out
    rows = [l.split() for l in out.splitlines() if l[:2].strip().isdigit() or l.startswith("= ")]
    assert [r[1] for r in rows] == [a for a, _ in _published_order("b2")]
    assert "Caveats:" in out and "VGG networks without batch normalization" in out


def test_cli_top_and_json(tmp_path, capsys):
    out_json = tmp_path / "a.json"
    assert main(["recommend", "similarity", "--top", "2", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert 'as a metric: lossnet.PerceptualMetric(net="vgg11", layers=("L",), distance="spatial")' in out
    rows = [l.split() for l in out.splitlines() if l[:2].strip().isdigit()]
    assert [r[1] for r in rows] == ["vgg11", "squeezenet1_1"]
    data = json.loads(out_json.read_text())
    assert (
        data["task"] == "similarity"
        and len(data["choices"]) == 14
        and data["choices"][0]["code"].startswith("lossnet.PerceptualLoss(")
    )


def test_cli_store(store, capsys):
    assert main(["recommend", "similarity", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "Use: alexnet at layer S" in out and "avg rank (b1)" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["recommend", "roads", "--preset", "paper"], "give store="),
        (["recommend", "roads", "--top", "0"], "--top must be at least 1"),
        (["recommend", "roads", "--store", "/nonexistent/results.db"], "results store not found"),
    ],
)
def test_cli_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_unknown_task(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "segmentation"])
    assert exc.value.code == 2
    assert "invalid choice: 'segmentation'" in capsys.readouterr().err
