"""CLI messages from a user audit: report skip reasons, readable run times, a closed stdout pipe,
a folder given as a grid or data root, and ``sweep plan`` listing a grid whose data is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lossnet.bench.base import get_benchmark
from lossnet.cli.main import main
from lossnet.runs import ResultsStore, RunRecord, plan_file
from lossnet.runs.identity import run_key

STARTED = 1796000000.0  # 2026-11-30T00:53:20Z


def _digits_store(path):
    """A store with two finished alexnet E/S autoencoder runs on the digits stand-in dataset."""
    bench = get_benchmark("autoencoder")
    keys = []
    with ResultsStore(path) as store:
        for layer in "ES":
            config = bench.resolve_config(
                {"benchmark": "autoencoder", "net": "alexnet", "layer": layer, "dataset": "digits"}
            )
            key = run_key(config)
            store.claim(key, config)
            store.record(
                RunRecord(
                    key,
                    "autoencoder",
                    config,
                    "done",
                    {"digits/accuracy": 0.9, "digits/val_accuracy": 0.91, "digits/ae_loss": 0.1},
                    started_at=STARTED,
                    duration_s=12.5,
                )
            )
            keys.append(key)
    return keys


def test_report_without_paper_cells_names_the_skip_reasons(tmp_path, capsys):
    db = tmp_path / "g.db"
    _digits_store(db)
    assert main(["report", str(db), "-o", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "6 metric rows of done runs skipped: not a paper metric: 6" in err
    assert "digits is a stand-in dataset; the paper's autoencoder datasets are stl10, svhn" in err
    assert "E/S/M/L layers" not in err  # the runs are E/S layers of a paper network: not the reason
    assert len(err.strip().splitlines()) == 1


def test_runs_show_prints_utc_date_times(tmp_path, capsys):
    db = tmp_path / "g.db"
    key = _digits_store(db)[0]
    assert main(["runs", "show", "--store", str(db), key]) == 0
    out = capsys.readouterr().out
    assert "started_at: 2026-11-30T00:53:20Z" in out
    assert "ended_at: 2026-11-30T00:53:32Z" in out
    assert "e+09" not in out


@pytest.mark.parametrize("args", [("runs", "show", "{key}"), ("runs", "list"), ("data", "list")])
def test_closed_stdout_pipe_exits_quietly(tmp_path, args):
    db = tmp_path / "g.db"
    key = _digits_store(db)[0]
    argv = [a.format(key=key) for a in args] + (["--store", str(db)] if args[0] == "runs" else [])
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written (| head that already exited)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lossnet", *argv],
            check=False,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 1  # the Python docs' "Note on SIGPIPE": exit 1, no message


@pytest.mark.parametrize("action", ["plan", "run", "estimate"])
def test_sweep_grid_that_is_a_directory(tmp_path, capsys, action):
    folder = tmp_path / "empty"
    folder.mkdir()
    extra = ["--store", str(tmp_path / "s.db"), "--runs-dir", str(tmp_path / "runs")] if action == "run" else []
    assert main(["sweep", action, str(folder), *extra]) == 2
    err = capsys.readouterr().err
    assert "is a directory, not a grid file" in err and "does not exist" not in err


def test_data_list_root_that_is_a_file(tmp_path, capsys):
    root = tmp_path / "existing.txt"
    root.write_text("x")
    assert main(["data", "list", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"--root {root} is not a directory" in err and "completion marker" not in err


@pytest.mark.parametrize("call", ["fetch", "status", "verify", "env"])
def test_library_data_root_that_is_a_file(tmp_path, monkeypatch, call):
    # the same refusal without the CLI: lossnet.datasets' own functions, root given or from $LOSSNET_DATA
    import lossnet.datasets as ds
    import lossnet.datasets.fetch  # noqa: F401  (a loaded submodule must not shadow the function ds.fetch)
    from lossnet.errors import DataError

    root = tmp_path / "existing.txt"
    root.write_text("x")
    if call == "env":
        monkeypatch.setenv("LOSSNET_DATA", str(root))
        fn, kwargs, given = ds.status, {}, "data root ($LOSSNET_DATA)"
    else:
        fn, kwargs, given = getattr(ds, call), {"root": str(root)}, "root"
    with pytest.raises(DataError, match="not a directory") as info:
        fn("set5", **kwargs)
    assert str(info.value).startswith(f"{given} {root} is not a directory")
    assert root.read_text() == "x"


def test_data_list_sizes_what_fetch_downloads_and_all_parts(tmp_path, capsys):
    """BAPPS: `data fetch bapps` takes the default parts (2AFC val + JND val); the 2AFC train split is extra."""
    from lossnet.datasets import DATASETS
    from lossnet.datasets.download import format_bytes

    assert main(["data", "list", "--root", str(tmp_path)]) == 0
    row = next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("bapps "))
    bapps = DATASETS["bapps"]
    default = sum(r.nbytes for p in bapps.default_parts for r in p.remotes)
    total = sum(r.nbytes for p in bapps.parts for r in p.remotes)
    assert default < total
    assert row[2].lstrip("~") + " " + row[3] == format_bytes(default)  # "~1.3 GB"
    assert row[4].lstrip("~") + " " + row[5] == format_bytes(total)


GRID = """
[sweep]
archs = ["alexnet"]
layers = ["E", "S"]
[benchmarks.autoencoder]
dataset = "digits"
[benchmarks.similarity]
distance = "spatial"
"""


def test_sweep_plan_lists_runs_whose_data_is_missing_and_run_still_refuses(tmp_path, capsys):
    # BAPPS is not in the tests' empty data root (conftest); digits needs no download
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    (only_ae := tmp_path / "ae.toml").write_text(GRID.split("[benchmarks.similarity]")[0])
    ae_runs = plan_file(only_ae)
    db = tmp_path / "s.db"
    with ResultsStore(db) as store:
        r = ae_runs[0]
        store.claim(r.key, r.config)
        store.record(RunRecord(r.key, "autoencoder", r.config, "done", {"digits/accuracy": 0.9}))

    out_json = tmp_path / "plan.json"
    assert main(["sweep", "plan", str(grid), "--store", str(db), "--json", str(out_json)]) == 0
    out, err = capsys.readouterr()
    assert "4 runs in" in out and "1 done, 1 new, 2 no data" in out
    assert r.key in out and ae_runs[1].key in out
    assert "warning:" in err and "fetch it with: lossnet data fetch bapps" in err and "error" not in err
    plan = json.loads(out_json.read_text())
    assert [p["status"] for p in plan] == ["done", "new", "no data", "no data"]
    assert {(p["net"], p["layer"], p["key"]) for p in plan if p["benchmark"] == "similarity"} == {
        ("alexnet", "E", None),
        ("alexnet", "S", None),
    }

    # run is not weakened: nothing is planned or run while a dataset is missing
    assert (
        main(["sweep", "run", str(grid), "--store", str(db), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
        == 2
    )
    assert "lossnet data fetch bapps" in capsys.readouterr().err
    with ResultsStore(db, readonly=True) as store:
        assert store.statuses() == {r.key: "done"}
