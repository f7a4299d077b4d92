"""Report and store defects of issue #32: one bad store row is named (L13), ``report -o`` is checked
before any work like the other outputs (L14), no conclusion from an undefined or non-significant
correlation (L15), and a caveat when --compare-paper compares quick / few-subset runs (last round)."""

from __future__ import annotations

import argparse
import sqlite3

import pytest

from lossnet.errors import LossnetError
from lossnet.report.render import _verdict
from lossnet.runs import ResultsStore, RunRecord


def _store(tmp_path, n=1, subsets=("traditional", "cnn")):
    from lossnet import paper

    path = tmp_path / "s.db"
    value = {
        (r["arch"], r["layer"]): r["value"]
        for r in paper.scores()
        if (r["benchmark"], r["metric"], r["dataset"]) == ("similarity", "2afc", "bapps")
    }
    with ResultsStore(path) as store:
        for i, arch in enumerate(["alexnet", "vgg16", "squeezenet1_1"][:n]):
            config = {
                "benchmark": "similarity",
                "net": arch,
                "layer": "L",
                "seed": 0,
                "preset": "quick",
                "weights": "imagenet",
                "distance": "spatial",
                "subsets_2afc": list(subsets),
                "subsets_jnd": ["traditional", "cnn"],
            }
            store.record(
                RunRecord(f"{i:016x}", "similarity", config, "done", {"bapps/2afc": value[(arch, "L")] + 0.01})
            )
    return path


def _report(args):
    from lossnet.cli import report

    parser = argparse.ArgumentParser()
    report.register(parser.add_subparsers())
    a = parser.parse_args(["report", *args, "--no-structure", "--no-figures"])
    return a.func(a)


@pytest.mark.parametrize(
    "sql, match",
    [
        (
            "UPDATE runs SET config='{not json' WHERE key='0000000000000000'",
            r"run 0000000000000000: its config is not valid JSON",
        ),
        ("UPDATE metrics SET value='abc'", r"run 0000000000000000: metric bapps/2afc has the non-numeric value 'abc'"),
        ("UPDATE meta SET value='abc' WHERE key='schema_version'", r"schema_version 'abc' is not a number"),
    ],
)
def test_l13_one_bad_store_row_is_named(tmp_path, sql, match):
    path = _store(tmp_path)
    db = sqlite3.connect(path)
    db.execute(sql)
    db.commit()
    db.close()
    with pytest.raises(LossnetError, match=match):
        _report([str(path), "-o", str(tmp_path / "rep")])
    if "config" in sql:
        from lossnet.cli.main import main

        assert main(["runs", "list", "--store", str(path)]) != 0


def test_l14_report_out_is_checked_before_any_work(tmp_path, monkeypatch):
    path = _store(tmp_path)
    from lossnet.report import sources

    def boom(*a, **k):
        raise AssertionError("the store was read before -o was checked")

    monkeypatch.setattr(sources, "store_scores", boom)
    monkeypatch.setattr(sources, "store_scores_all_nets", boom)  # what the CLI reads the store with
    (tmp_path / "afile").write_text("x")
    with pytest.raises(LossnetError, match="afile exists and is not a directory"):
        _report([str(path), "-o", str(tmp_path / "afile")])
    with pytest.raises(LossnetError, match=r"nodir"):
        _report([str(path), "-o", str(tmp_path / "nodir" / "sub")])
    assert not (tmp_path / "nodir").exists()


def test_l15_no_conclusion_from_n1_or_nan_or_non_significant():
    assert _verdict(1, float("nan"), float("nan")).startswith("no conclusion: not enough architectures (n=1")
    assert _verdict(2, 1.0, 1.0).startswith("no conclusion")
    assert _verdict(14, -0.2, 0.4).startswith("no significant relation")
    assert _verdict(14, -0.7, 0.004).startswith("negative")
    assert _verdict(14, 0.7, 0.004) == "positive"


def test_l15_report_of_one_run_draws_no_conclusion(tmp_path):
    path = _store(tmp_path, n=1)
    _report([str(path), "-o", str(tmp_path / "rep")])
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "not a positive relation" not in text
    assert "Pearson r = nan (p = nan)" in text and "-- no conclusion: not enough architectures (n=1" in text


def test_last_round_compare_paper_of_quick_two_subset_runs_has_a_caveat(tmp_path, capsys):
    path = _store(tmp_path, n=3)
    _report([str(path), "--compare-paper", "-o", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    text = (tmp_path / "rep" / "report.md").read_text()
    for where in (out, text):
        assert (
            "CAVEAT: these runs use preset 'quick', not 'paper'; 2 of 6 BAPPS 2AFC subsets (traditional, cnn)" in where
        )


def test_last_round_runs_export_needs_no_csv_flag(tmp_path, capsys):
    from lossnet.cli.main import main

    path = _store(tmp_path, n=2)
    assert main(["runs", "export", "--store", str(path), "-o", str(tmp_path / "a.csv")]) == 0
    assert main(["runs", "export", "--store", str(path), "--csv", "-o", str(tmp_path / "b.csv")]) == 0
    a = (tmp_path / "a.csv").read_text()
    assert a == (tmp_path / "b.csv").read_text() and a.count("\n") == 3  # header + 2 runs x 1 metric
