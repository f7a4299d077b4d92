"""One run pipeline (plan -> execute -> record with one RunRecord) and leased runs in the store.

Uses the fake benchmark of tests/fake_bench.py (importable as ``fake_bench``).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import fake_bench
import pytest

from lossnet.errors import LossnetError
from lossnet.runs import ResultsStore, RunRecord, execute_point, run_sweep
from lossnet.runs.identity import run_key
from lossnet.runs.plan import PlannedRun
from lossnet.runs.store import SCHEMA_VERSION

TESTS_DIR = Path(__file__).resolve().parents[1]
HOST = socket.gethostname()


def _config(**kw):
    return fake_bench.resolve_config({"benchmark": "fake_bench", "net": "alexnet", "layer": "E", **kw})


def _planned(**kw) -> PlannedRun:
    c = _config(**kw)
    return PlannedRun(run_key(c), "fake_bench", c)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _row(db: Path, key: str) -> dict:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return dict(con.execute("SELECT * FROM runs WHERE key=?", (key,)).fetchone())
    finally:
        con.close()


# -- RunRecord -------------------------------------------------------------------------------------


def test_run_record_json_round_trip_and_non_finite_metrics():
    rec = RunRecord(
        "k1",
        "fake_bench",
        {"a": 1},
        "diverged",
        {"x/loss": float("nan"), "x/psnr": 3, "inf": float("inf")},
        {"ckpt": Path("/w/c.pt")},
        started_at=5.0,
        duration_s=1.5,
        host="h",
        device="cuda:0",
    )
    assert rec.metrics == {"x/loss": None, "x/psnr": 3.0, "inf": None} and rec.artifacts == {"ckpt": "/w/c.pt"}
    text = json.dumps(rec.to_json(), allow_nan=False)  # strict JSON: no NaN left
    back = RunRecord.from_json(json.loads(text))
    assert back == rec and back.finished and not back.ok and back.reason == "benchmark status diverged"
    # a result.json of the previous worker format still reads (a sweep resumed across an upgrade)
    old = RunRecord.from_json(
        {"key": "k", "ok": False, "error": "Traceback (most recent call last):\n  x\nValueError: bad"}
    )
    assert old.status == "failed" and old.reason == "ValueError: bad" and not old.finished


def test_store_takes_exactly_run_records(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        with pytest.raises(TypeError, match="RunRecord"):
            store.record({"key": "k", "metrics": {}})
        assert not hasattr(store, "record_result") and not hasattr(store, "record_failure")


# -- execute_point (lossnet bench) -----------------------------------------------------------------


def test_bench_and_sweep_write_the_same_columns(tmp_path):
    db = tmp_path / "r.db"
    a, b = _planned(seed=1), _planned(seed=2)
    with ResultsStore(db) as store:
        rec = execute_point("fake_bench", a.config, tmp_path / "out" / "a", a.key, progress=False, store=store)
        assert run_sweep([b], store, tmp_path / "runs", progress=False, log=None).done == [b.key]
    assert (
        rec.status == "done"
        and rec.device == "cpu"
        and rec.duration_s > 0
        and rec.metrics["fake/score"] == fake_bench.score(a.config)
    )
    rows = [_row(db, a.key), _row(db, b.key)]
    for row in rows:
        assert row["status"] == "done" and row["attempts"] == 1 and row["duration_s"] > 0 and row["device"] == "cpu"
        assert row["host"] == HOST and row["started_at"] and row["ended_at"] >= row["started_at"]
        assert row["owner"] == f"{HOST}:{os.getpid()}" and row["lease_token"] is None and row["heartbeat_at"] is None
    assert {k for k, v in rows[0].items() if v is None} == {k for k, v in rows[1].items() if v is None}
    assert (tmp_path / "out" / "a" / "ckpt.json").exists()


def test_execute_point_rerun_counts_attempts_and_refuses_a_live_holder(tmp_path):
    p = _planned()
    with ResultsStore(tmp_path / "r.db") as store, ResultsStore(tmp_path / "r.db") as other:
        execute_point("fake_bench", p.config, tmp_path / "w", p.key, progress=False, store=store)
        execute_point(
            "fake_bench", p.config, tmp_path / "w", p.key, progress=False, store=store
        )  # asked again: runs again
        assert store.get_run(p.key)["attempts"] == 2
        assert other.claim(p.key, p.config, force=True) == "done"  # another process is running it now
        with pytest.raises(LossnetError, match=f"{p.key}.*being run right now by {HOST}:{os.getpid()}"):
            execute_point("fake_bench", p.config, tmp_path / "w", p.key, progress=False, store=store)


def test_early_failures_record_and_leave_no_empty_workdir(tmp_path):
    db = tmp_path / "r.db"
    with ResultsStore(db) as store:
        # an exception in the benchmark before it wrote anything: failed record with the traceback
        p = _planned(fail=True)
        rec = execute_point("fake_bench", p.config, tmp_path / "new" / "deep" / "w", p.key, progress=False, store=store)
        assert (
            rec.status == "failed" and "fake failure requested" in rec.error and rec.reason.startswith("RuntimeError")
        )
        assert store.get_run(p.key)["status"] == "failed" and "fake failure requested" in store.get_run(p.key)["error"]
        assert not (tmp_path / "new").exists()  # the folders it created were removed again
        # a LossnetError (unusable device) is recorded, then re-raised for the CLI's one-line message
        if not __import__("torch").cuda.is_available():
            q = _planned(device="cuda")
            with pytest.raises(LossnetError, match="CUDA"):
                execute_point("fake_bench", q.config, tmp_path / "w2", q.key, progress=False, store=store)
            row = store.get_run(q.key)
            assert row["status"] == "failed" and "CUDA" in row["error"] and row["attempts"] == 1
            assert not (tmp_path / "w2").exists()
        # an existing workdir is never removed
        (tmp_path / "keep").mkdir()
        execute_point("fake_bench", p.config, tmp_path / "keep", p.key, progress=False, store=store)
        assert (tmp_path / "keep").is_dir()


def test_keyboard_interrupt_is_recorded_not_left_running(tmp_path, monkeypatch):
    def interrupted(config, workdir, *, progress=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(fake_bench, "run", interrupted)
    p = _planned()
    with ResultsStore(tmp_path / "r.db") as store:
        with pytest.raises(KeyboardInterrupt):
            execute_point("fake_bench", p.config, tmp_path / "w", p.key, progress=False, store=store)
        run = store.get_run(p.key)
        assert run["status"] == "interrupted" and run["attempts"] == 1 and run["duration_s"] >= 0
        monkeypatch.undo()  # the next driver resumes it
        summary = run_sweep([p], store, tmp_path / "runs", progress=False, log=None)
        assert (
            summary.resumed == [p.key]
            and store.get_run(p.key)["status"] == "done"
            and store.get_run(p.key)["attempts"] == 2
        )


def test_sweep_interrupted_by_ctrl_c_frees_its_runs(tmp_path, monkeypatch):
    from lossnet.runs.executors import LocalExecutor

    def ctrl_c(self, timeout=0.5):
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalExecutor, "wait", ctrl_c)
    p = _planned(steps=4, step_seconds=0.05)
    with ResultsStore(tmp_path / "r.db") as store:
        with pytest.raises(KeyboardInterrupt):
            run_sweep([p], store, tmp_path / "runs", progress=False, log=None)
        run = store.get_run(p.key)
        assert run["status"] == "interrupted" and run["attempts"] == 1 and run["lease_token"] is None
    monkeypatch.undo()
    with ResultsStore(tmp_path / "r.db") as store:  # the next driver takes it up at once
        assert run_sweep([p], store, tmp_path / "runs", progress=False, log=None).resumed == [p.key]


def test_terminated_driver_frees_its_runs(tmp_path):
    import signal

    grid = tmp_path / "grid.toml"
    grid.write_text('[sweep]\narchs = ["alexnet"]\n[benchmarks.fake_bench]\nsteps = 100\nstep_seconds = 0.1\n')
    db = tmp_path / "r.db"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lossnet.cli.main",
            "sweep",
            "run",
            str(grid),
            "--allow-module",
            "--store",
            str(db),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--no-progress",
        ],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        t0 = time.monotonic()
        while not (db.exists() and "running" in _statuses(db).values()):
            assert time.monotonic() - t0 < 60 and driver.poll() is None, driver.communicate()
            time.sleep(0.1)
    finally:
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    ((key, status),) = _statuses(db).items()
    assert status == "interrupted" and _row(db, key)["lease_token"] is None


def _statuses(db: Path) -> dict:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return dict(con.execute("SELECT key, status FROM runs"))
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


# -- leases ----------------------------------------------------------------------------------------


def test_claim_is_exclusive_and_dead_owners_are_reclaimed(tmp_path):
    db = tmp_path / "r.db"
    p = _planned()
    a = ResultsStore(db)
    with ResultsStore(db) as b:
        assert a.claim(p.key, p.config) == "new"
        assert b.claim(p.key, p.config) is None and b.status(p.key) == "running" and b.holder(p.key) == a.owner
        assert a.claim(p.key, p.config) is None  # not twice by the same driver either
        a.close()  # a driver that is gone (same process here: its store is closed)
        assert b.status(p.key) == "interrupted" and b.holder(p.key) is None
        assert b.claim(p.key, p.config) == "interrupted"
        assert _row(db, p.key)["attempts"] == 2 and _row(db, p.key)["lease_token"] == b.token

        con = sqlite3.connect(db)
        # same host, owner pid dead -> reclaimable; fresh heartbeat does not matter
        con.execute(
            "UPDATE runs SET owner=?, lease_token='x', heartbeat_at=? WHERE key=?",
            (f"{HOST}:{_dead_pid()}", time.time(), p.key),
        )
        con.commit()
        assert b.status(p.key) == "interrupted"
        # another host with a fresh heartbeat -> live; with a heartbeat older than the lease timeout -> dead
        con.execute("UPDATE runs SET owner='elsewhere:1', heartbeat_at=? WHERE key=?", (time.time(), p.key))
        con.commit()
        assert b.status(p.key) == "running" and b.claim(p.key, p.config) is None
        con.execute("UPDATE runs SET heartbeat_at=? WHERE key=?", (time.time() - b.lease_timeout - 1, p.key))
        con.commit()
        con.close()
        assert b.status(p.key) == "interrupted" and b.claim(p.key, p.config) == "interrupted"


def test_heartbeat_and_lost_lease(tmp_path):
    db = tmp_path / "r.db"
    p = _planned()
    with ResultsStore(db, heartbeat_s=0.05) as a, ResultsStore(db) as b:
        a.claim(p.key, p.config)
        first = _row(db, p.key)["heartbeat_at"]
        time.sleep(0.5)
        assert _row(db, p.key)["heartbeat_at"] > first  # refreshed by the background thread
        # b may not overwrite a run a live driver holds; a (the holder) may
        rec = RunRecord(p.key, "fake_bench", p.config, metrics={"fake/score": 1.0})
        assert b.record(rec) is False and a.status(p.key) == "running"
        assert a.record(rec) is True and b.status(p.key) == "done"


def test_retry_failed_only_failures_from_before_the_sweep(tmp_path):
    p = _planned()
    with ResultsStore(tmp_path / "r.db") as store:
        store.claim(p.key, p.config)
        store.record(
            RunRecord.failure(p.key, "fake_bench", p.config, "boom", started_at=time.time() - 10, duration_s=1)
        )
        assert store.claim(p.key, p.config) is None  # failed: not without retry
        t0 = time.time()
        assert store.claim(p.key, p.config, retry_failed_before=t0) == "failed"
        store.record(RunRecord.failure(p.key, "fake_bench", p.config, "boom again"))
        # failed again during this sweep (e.g. in another driver): not retried a second time
        assert store.claim(p.key, p.config, retry_failed_before=t0) is None


def test_v1_store_is_migrated_and_still_readable(tmp_path):
    db = tmp_path / "v1.db"
    con = sqlite3.connect(db)
    con.executescript("""
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs(key TEXT PRIMARY KEY, benchmark TEXT, config TEXT, status TEXT, error TEXT,
  started_at REAL, ended_at REAL, duration_s REAL, host TEXT, device TEXT, attempts INTEGER, lossnet_version TEXT);
CREATE TABLE metrics(run_key TEXT, dataset TEXT, name TEXT, value REAL, PRIMARY KEY (run_key, dataset, name));
CREATE TABLE artifacts(run_key TEXT, name TEXT, path TEXT, PRIMARY KEY (run_key, name));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO runs(key, benchmark, config, status, attempts) VALUES ('aaaa', 'fake_bench', '{"net": "vgg16"}', 'done', 1);
INSERT INTO runs(key, benchmark, config, status, attempts) VALUES ('bbbb', 'fake_bench', '{}', 'running', 1);
INSERT INTO metrics VALUES ('aaaa', 'fake', 'score', 3.0);
""")
    con.commit()
    con.close()
    with ResultsStore(db, readonly=True) as ro:  # read as it is, not migrated
        assert ro.statuses() == {"aaaa": "done", "bbbb": "interrupted"} and ro.get_run("aaaa")["metrics"] == {
            "fake/score": 3.0
        }
    assert sqlite3.connect(db).execute("SELECT value FROM meta").fetchone()[0] == "1"
    with ResultsStore(db) as store:
        assert store.claim("bbbb", {}) == "interrupted"  # a v1 'running' row has no live lease
        assert store.integrity_check() == "ok"
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION) == "3"
    assert [r[1] for r in con.execute("PRAGMA table_info(runs)")][-4:] == [
        "owner",
        "lease_token",
        "heartbeat_at",
        "signature",
    ]
    assert con.execute("SELECT status, attempts, signature FROM runs WHERE key='aaaa'").fetchone() == ("done", 1, None)
    con.close()


def test_signature_travels_from_the_benchmark_result_to_the_store(tmp_path, monkeypatch, capsys):
    """A benchmark result's ``signature`` is kept in result.json and the store, and `runs show` prints it."""
    import fake_bench

    sig = "lossnet 0.1.0|vgg16|S|mse|heads=none|range=0,1:warn|norm=imagenet|tv=0.28|torch=2.13|w=none:sha256:0123"
    original = fake_bench.run

    def run_with_signature(config, workdir, progress=True):
        result = original(config, workdir, progress=progress)
        result.signature = sig
        return result

    monkeypatch.setattr(fake_bench, "run", run_with_signature)
    p = _planned()
    from lossnet.runs.execute import execute_in_process

    record, exc = execute_in_process("fake_bench", p.config, tmp_path / "w", p.key)
    assert exc is None and record.signature == sig
    assert RunRecord.from_json(json.loads(json.dumps(record.to_json()))).signature == sig
    with ResultsStore(tmp_path / "r.db") as store:
        store.claim(p.key, p.config)
        assert store.record(record)
        assert store.get_run(p.key)["signature"] == sig
    from lossnet.cli.main import main

    assert main(["runs", "show", p.key, "--store", str(tmp_path / "r.db")]) == 0
    assert f"signature: {sig}" in capsys.readouterr().out


# -- several drivers on one store -------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_two_drivers_share_a_store_and_run_every_run_once(tmp_path):
    counter = tmp_path / "counter.txt"
    grid = tmp_path / "grid.toml"
    grid.write_text(f"""
[sweep]
archs = ["alexnet", "vgg16", "resnet18"]
layers = ["E", "L"]
[benchmarks.fake_bench]
steps = 2
step_seconds = 0.3
counter = "{counter}"
""")
    db = tmp_path / "r.db"
    args = [
        sys.executable,
        "-m",
        "lossnet.cli.main",
        "sweep",
        "run",
        str(grid),
        "--allow-module",
        "--store",
        str(db),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--no-progress",
    ]
    drivers = [
        subprocess.Popen(args, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [d.communicate(timeout=300) for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outputs
    lines = counter.read_text().splitlines()
    assert len(lines) == 6 and len(set(lines)) == 6, lines  # every run executed exactly once
    with ResultsStore(db, readonly=True) as store:
        runs = store.runs()
        assert store.integrity_check() == "ok"
    assert len(runs) == 6 and {r["status"] for r in runs} == {"done"} and {r["attempts"] for r in runs} == {1}
    assert len({r["owner"] for r in runs}) == 2, "both drivers took part"
    for r in runs:  # each run's folder was used by one driver only
        assert (tmp_path / "runs" / r["key"] / "run.log").read_text().count("fake_bench: starting") == 1
