"""``lossnet runs list|export`` tell runs apart by every differing config key, show a dead worker's
cause, and stored artifact paths are absolute."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import fake_bench

from lossnet.cli.runs import EXPORT_COLUMNS, register
from lossnet.cli.sweep import standalone_main
from lossnet.runs import ResultsStore, RunRecord, execute_point
from lossnet.runs.identity import run_key


def _config(**extra):
    """A resolved fake_bench config plus ``extra`` keys (a superres-like ``scale``...; the store
    does not validate configs)."""
    return {**fake_bench.resolve_config({"benchmark": "fake_bench", "net": "alexnet", "layer": "E"}), **extra}


def _store(path: Path, configs, status="done"):
    with ResultsStore(path) as store:
        for c in configs:
            store.claim(run_key(c), c)
            store.record(RunRecord(run_key(c), "fake_bench", c, status, {"set5/psnr": 20.0 + c.get("scale", 0)}))
    return path


def test_export_adds_differing_config_keys(tmp_path, capsys):
    configs = [_config(scale=s, crop=[s, s]) for s in (4, 8)]
    db = _store(tmp_path / "r.db", configs)
    assert standalone_main(register, "runs", ["runs", "export", "--csv", "--store", str(db)]) == 0
    reader = csv.DictReader(io.StringIO(capsys.readouterr().out))
    rows = list(reader)
    assert tuple(reader.fieldnames[: len(EXPORT_COLUMNS)]) == EXPORT_COLUMNS
    assert set(reader.fieldnames[len(EXPORT_COLUMNS) :]) == {"scale", "crop"}  # equal keys (net...) not repeated
    assert sorted((r["scale"], r["crop"], r["value"]) for r in rows) == [
        ("4", "[4, 4]", "24.0"),
        ("8", "[8, 8]", "28.0"),
    ]


def test_export_without_differing_keys_keeps_columns(tmp_path, capsys):
    db = _store(tmp_path / "r.db", [_config(seed=s) for s in (0, 1)])
    assert standalone_main(register, "runs", ["runs", "export", "--csv", "--store", str(db)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == ",".join(EXPORT_COLUMNS)


def test_list_shows_variant(tmp_path, capsys):
    configs = [_config(scale=s) for s in (4, 8)]
    db = _store(tmp_path / "r.db", configs)
    assert standalone_main(register, "runs", ["runs", "list", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:10] == [
        "key",
        "benchmark",
        "preset",
        "net",
        "layer",
        "seed",
        "status",
        "attempts",
        "seconds",
        "error",
    ]
    assert "variant" in header
    for c in configs:
        line = next(line for line in out.splitlines() if line.startswith(run_key(c)))
        assert f"scale={c['scale']}" in line


def test_list_error_shows_cause_of_killed_worker(tmp_path, capsys):
    c = _config(scale=8)
    key = run_key(c)
    db = tmp_path / "r.db"
    error = (
        f"worker process died (signal SIGKILL) without a result; last log lines:\n"
        f"[lossnet sweep] run {key} benchmark superres started 2024-01-01 00:00:00 pid 4711\n"
        f"[lossnet sweep] run {key} benchmark superres star"
    )
    with ResultsStore(db) as store:
        store.claim(key, c)
        store.record(RunRecord.failure(key, "fake_bench", c, error))
    assert standalone_main(register, "runs", ["runs", "list", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert "worker process died (signal SIGKILL)" in out
    assert "benchmark superres star" not in out


def test_recorded_artifacts_are_absolute(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    c = _config()
    key = run_key(c)
    with ResultsStore("r.db") as store:
        rec = execute_point("fake_bench", c, Path("runs2") / key, key, progress=False, store=store)
    assert rec.ok
    expected = str(tmp_path / "runs2" / key / "ckpt.json")
    assert rec.artifacts == {"checkpoint": expected}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with ResultsStore(tmp_path / "r.db", readonly=True) as store:
        path = store.get_run(key)["artifacts"]["checkpoint"]
    assert os.path.isabs(path) and Path(path).is_file() and path == expected


def test_relative_paths_of_existing_stores_are_kept(tmp_path):
    c = _config()
    with ResultsStore(tmp_path / "r.db") as store:
        store.record(RunRecord(run_key(c), "fake_bench", c, artifacts={"ckpt": "runs/x/ckpt.pt"}))
        assert store.get_run(run_key(c))["artifacts"] == {"ckpt": "runs/x/ckpt.pt"}
