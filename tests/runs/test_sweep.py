"""Sweep runner: grid planning, run keys, the results store, resume after SIGKILL, failures, Ray.

Runs use the fake benchmark in tests/fake_bench.py (importable as ``fake_bench``), whose metrics are
closed-form functions of the config.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import fake_bench
import pytest

from lossnet.errors import LossnetError
from lossnet.models.registry import PAPER_ARCHS
from lossnet.runs import ResultsStore, RunRecord, run_sweep
from lossnet.runs import plan_file as _plan_file
from lossnet.runs.identity import run_key
from lossnet.runs.store import SCHEMA_VERSION

TESTS_DIR = Path(__file__).resolve().parents[1]


def plan_file(path, **kwargs):
    """The tests' grids name the fake benchmark by module path: allowed explicitly."""
    return _plan_file(path, allow_modules=True, **kwargs)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _cli(*args: str, cwd: Path, module: str = "lossnet.cli.sweep", check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


def _grid(tmp_path: Path, text: str, name: str = "grid.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- planning --------------------------------------------------------------------------------------


def test_plan_counts_two_benchmarks(tmp_path, monkeypatch):
    # a second benchmark module, so the grid really spans two benchmarks
    (tmp_path / "fake_bench_b.py").write_text(
        "from fake_bench import FakeBench\n\nclass FakeBenchB(FakeBench):\n    name = 'fake_bench_b'\n\nBENCHMARK = FakeBenchB()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = _grid(
        tmp_path,
        """
[sweep]
archs = ["alexnet", "vgg16", "resnet18"]
layers = ["E", "M"]
seeds = [0, 1]
[benchmarks.fake_bench]
steps = 2
[benchmarks.fake_bench_b]
steps = 5
""",
    )
    runs = plan_file(grid)
    assert len(runs) == 2 * 3 * 2 * 2
    assert len({r.key for r in runs}) == len(runs)
    by_bench = {b: [r for r in runs if r.benchmark == b] for b in ("fake_bench", "fake_bench_b")}
    assert {len(v) for v in by_bench.values()} == {12}
    assert {r.config["steps"] for r in by_bench["fake_bench_b"]} == {5}
    assert {(r.config["net"], r.config["layer"], r.config["seed"]) for r in by_bench["fake_bench"]} == {
        (a, l, s) for a in ("alexnet", "vgg16", "resnet18") for l in ("E", "M") for s in (0, 1)
    }
    # the key is the lead's run_key of the resolved config
    assert all(r.key == run_key(r.config) for r in runs)


def test_paper_shorthand_is_56(tmp_path):
    grid = _grid(tmp_path, '[sweep]\narchs = "paper"\nlayers = "paper"\n[benchmarks.fake_bench]\n')
    runs = plan_file(grid)
    assert len(runs) == 56
    assert {(r.config["net"], r.config["layer"]) for r in runs} == {(a, l) for a in PAPER_ARCHS for l in "ESML"}


def test_duplicates_collapse(tmp_path):
    grid = _grid(
        tmp_path,
        """
[sweep]
archs = ["alexnet", "alexnet", "vgg16"]
layers = ["E", "E"]
seeds = [0, 0, 1]
[benchmarks.fake_bench]
steps = 3   # equal to the preset's default: same resolved config as not giving it
""",
    )
    runs = plan_file(grid)
    assert len(runs) == 2 * 1 * 2


def test_run_keys_stable_across_processes(tmp_path):
    grid = _grid(
        tmp_path,
        '[sweep]\narchs = ["alexnet", "squeezenet1_1"]\nlayers = "paper"\nseeds = [3]\n[benchmarks.fake_bench]\n',
    )
    out = tmp_path / "plan.json"
    _cli(
        "sweep",
        "plan",
        str(grid),
        "--allow-module",
        "--store",
        str(tmp_path / "none.db"),
        "--json",
        str(out),
        cwd=tmp_path,
        check=True,
    )
    other = {(r["net"], r["layer"]): r["key"] for r in json.loads(out.read_text())}
    here = {(r.config["net"], r.config["layer"]): r.key for r in plan_file(grid)}
    assert len(here) == 8 and here == other


@pytest.mark.parametrize(
    "text, message",
    [
        ('[sweep]\narchs = ["alexnetz"]\n[benchmarks.fake_bench]\n', "alexnetz"),
        ('[sweep]\narchs = ["vgg16"]\nlayers = ["relu9_9"]\n[benchmarks.fake_bench]\n', "relu9_9"),
        ('[sweep]\narchs = ["vgg16"]\n[benchmarks.no_such_bench]\n', "no_such_bench"),
        ('[sweep]\narchs = ["vgg16"]\ndistances = ["mse", "cosinez"]\n[benchmarks.fake_bench]\n', "cosinez"),
        ("[sweep]\narchs = [\n", "not valid TOML"),
        ('[sweep]\narchs = ["vgg16"]\n', "no [benchmarks.NAME]"),
        ("[sweep]\narchs = []\n[benchmarks.fake_bench]\n", "empty list"),
    ],
)
def test_bad_grids_raise_before_running(tmp_path, text, message):
    with pytest.raises(LossnetError, match=__import__("re").escape(message)):
        plan_file(_grid(tmp_path, text))


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    from lossnet.cli.sweep import register, standalone_main

    grid = _grid(tmp_path, '[sweep]\narchs = ["alexnet", "vgg17"]\n[benchmarks.fake_bench]\n')
    proc = _cli(
        "sweep",
        "run",
        str(grid),
        "--allow-module",
        "--store",
        str(tmp_path / "r.db"),
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "vgg17" in proc.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r.db").exists()  # nothing ran

    def err(*argv: str) -> str:
        assert standalone_main(register, "sweep", list(argv)) == 2
        text = capsys.readouterr().err.strip()
        assert text.count("\n") == 0
        return text

    assert "missing.toml" in err("sweep", "plan", str(tmp_path / "missing.toml"), "--allow-module")
    good = _grid(tmp_path, '[sweep]\narchs = ["alexnet"]\n[benchmarks.fake_bench]\n', "good.toml")
    assert "does not exist" in err(
        "sweep", "run", str(good), "--allow-module", "--store", str(tmp_path / "no" / "dir" / "r.db")
    )
    assert "--workers" in err(
        "sweep", "run", str(good), "--allow-module", "--workers", "0", "--store", str(tmp_path / "r.db")
    )


# -- store -----------------------------------------------------------------------------------------


def test_store_schema_and_record(tmp_path):
    path = tmp_path / "r.db"
    config = {"benchmark": "superres", "net": "vgg16", "layer": "S", "seed": 0, "preset": "quick", "scale": 4}
    key = run_key(config)
    with ResultsStore(path) as store:
        store.record(
            RunRecord(
                key,
                "superres",
                config,
                "done",
                {"set5/psnr": 27.5, "set5/ssim": 0.8, "loss": float("nan")},
                {"ckpt": "runs/x/ckpt.pt"},
                started_at=100.0,
                duration_s=2.5,
                host="h",
                device="cpu",
            )
        )
        rows = store.metric_rows()
        run = store.get_run(key[:6])
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    cols = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in ("runs", "metrics", "artifacts")}
    assert cols["metrics"] == ["run_key", "dataset", "name", "value"]
    assert cols["artifacts"] == ["run_key", "name", "path"]
    assert cols["runs"] == [
        "key",
        "benchmark",
        "config",
        "status",
        "error",
        "started_at",
        "ended_at",
        "duration_s",
        "host",
        "device",
        "attempts",
        "lossnet_version",
        "owner",
        "lease_token",
        "heartbeat_at",
        "signature",
    ]
    assert sorted(db.execute("SELECT dataset, name, value FROM metrics").fetchall(), key=str) == sorted(
        [("set5", "psnr", 27.5), ("set5", "ssim", 0.8), ("", "loss", None)], key=str
    )
    db.close()
    assert {(r["dataset"], r["name"]) for r in rows} == {("set5", "psnr"), ("set5", "ssim"), ("", "loss")}
    assert rows[0]["config"] == config and rows[0]["benchmark"] == "superres"
    assert (
        run["status"] == "done"
        and run["metrics"]["set5/psnr"] == 27.5
        and run["artifacts"] == {"ckpt": "runs/x/ckpt.pt"}
    )
    assert (run["started_at"], run["ended_at"], run["duration_s"], run["host"], run["device"], run["attempts"]) == (
        100.0,
        102.5,
        2.5,
        "h",
        "cpu",
        1,
    )


def test_store_refuses_newer_schema(tmp_path):
    path = tmp_path / "r.db"
    ResultsStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(LossnetError, match="newer"):
        ResultsStore(path)
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LossnetError, match="junk.db"):
        ResultsStore(tmp_path / "junk.db")


# -- running ---------------------------------------------------------------------------------------


def test_failed_run_recorded_and_retried_only_on_request(tmp_path):
    flag = tmp_path / "fail.flag"
    flag.write_text("fail while I exist")
    grid = _grid(
        tmp_path,
        f"""
[sweep]
archs = ["alexnet", "vgg16"]
[benchmarks.fake_bench]
fail_flag = "{flag}"
counter = "{tmp_path / "counter.txt"}"
""",
    )
    runs = plan_file(grid)
    failing = next(r for r in runs if r.config["net"] == "alexnet")
    # only alexnet fails: vgg16's config gets a flag path that never exists
    runs = [failing] + [
        type(r)(run_key(c := dict(r.config, fail_flag=str(tmp_path / "never"))), r.benchmark, c)
        for r in runs
        if r is not failing
    ]
    with ResultsStore(tmp_path / "r.db") as store:
        s1 = run_sweep(runs, store, tmp_path / "runs", workers=2, progress=False, log=None)
        assert s1.failed == [failing.key] and len(s1.done) == 1
        run = store.get_run(failing.key)
        assert (
            run["status"] == "failed" and "fake failure requested for alexnet" in run["error"] and run["attempts"] == 1
        )
        assert "fake failure requested" in (tmp_path / "runs" / failing.key / "run.log").read_text()

        s2 = run_sweep(runs, store, tmp_path / "runs", progress=False, log=None)  # default: not retried
        assert s2.skipped_failed == [failing.key] and not s2.done and store.get_run(failing.key)["attempts"] == 1

        flag.unlink()
        s3 = run_sweep(runs, store, tmp_path / "runs", retry_failed=True, progress=False, log=None)
        assert s3.done == [failing.key]
        run = store.get_run(failing.key)
        assert run["status"] == "done" and run["error"] is None and run["attempts"] == 2
        assert run["metrics"]["fake/score"] == fake_bench.score(failing.config)
    assert len((tmp_path / "counter.txt").read_text().splitlines()) == 2


@pytest.mark.slow
def test_worker_crash_marks_only_its_run_failed(tmp_path):
    grid = _grid(tmp_path, '[sweep]\narchs = ["alexnet"]\n[benchmarks.fake_bench]\n')
    ok = plan_file(grid)[0]
    crash_cfg = dict(ok.config, net="vgg16", crash=True)
    crash = type(ok)(run_key(crash_cfg), ok.benchmark, crash_cfg)
    with ResultsStore(tmp_path / "r.db") as store:
        summary = run_sweep([crash, ok], store, tmp_path / "runs", workers=2, progress=False, log=None)
        assert summary.failed == [crash.key] and summary.done == [ok.key]
        assert "SIGKILL" in store.get_run(crash.key)["error"]


def test_interrupted_run_with_written_result_is_harvested_not_rerun(tmp_path):
    from lossnet.atomic import atomic_write_json

    counter = tmp_path / "counter.txt"
    grid = _grid(tmp_path, f'[sweep]\narchs = ["alexnet"]\n[benchmarks.fake_bench]\ncounter = "{counter}"\n')
    (run,) = plan_file(grid)
    with ResultsStore(tmp_path / "r.db") as dead_driver:  # claims the run, then "dies" (its store closes)
        assert dead_driver.claim(run.key, run.config) == "new"
    atomic_write_json(
        tmp_path / "runs" / run.key / "result.json",
        RunRecord(
            run.key,
            run.benchmark,
            run.config,
            "done",
            {"fake/score": 42.0},
            started_at=1.0,
            duration_s=2.0,
            host="h",
            device="cpu",
        ).to_json(),
    )
    with ResultsStore(tmp_path / "r.db") as store:
        assert store.status(run.key) == "interrupted"
        summary = run_sweep([run], store, tmp_path / "runs", progress=False, log=None)
        got = store.get_run(run.key)
    assert summary.harvested == [run.key] and summary.done == [run.key]
    assert (
        got["status"] == "done"
        and got["attempts"] == 1
        and got["metrics"] == {"fake/score": 42.0}
        and got["duration_s"] == 2.0
    )
    assert not counter.exists()  # the benchmark did not run again


def _wait_for(predicate, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _done_count(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT count(*) FROM runs WHERE status='done'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    counter = tmp_path / "counter.txt"
    grid = _grid(
        tmp_path,
        f"""
[sweep]
archs = ["alexnet", "vgg16", "resnet18"]
layers = ["E", "L"]
[benchmarks.fake_bench]
steps = 4
step_seconds = 0.4
counter = "{counter}"
""",
    )
    db, runs_dir = tmp_path / "r.db", tmp_path / "runs"
    args = [
        sys.executable,
        "-m",
        "lossnet.cli.sweep",
        "sweep",
        "run",
        str(grid),
        "--allow-module",
        "--store",
        str(db),
        "--runs-dir",
        str(runs_dir),
        "--no-progress",
    ]
    driver = subprocess.Popen(args, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _done_count(db) >= 2, 180, "two finished runs")
        time.sleep(0.9)  # land inside a later run, after some of its checkpoints
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    done_before = {k for (k,) in con.execute("SELECT key FROM runs WHERE status='done'")}
    interrupted = {k for (k,) in con.execute("SELECT key FROM runs WHERE status='running'")}
    con.close()
    assert 2 <= len(done_before) < 6
    # a worker that wrote its result just before the driver died is harvested, not re-run
    harvest = (
        {k for k in interrupted if json.loads((runs_dir / k / "result.json").read_text()).get("ok")}
        if interrupted and any((runs_dir / k / "result.json").exists() for k in interrupted)
        else set()
    )
    time.sleep(0.5)  # the killed driver's worker dies with it (PR_SET_PDEATHSIG)

    proc = subprocess.run(args, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT count(*), count(DISTINCT key) FROM runs").fetchone() == (6, 6)
    assert con.execute("SELECT count(*) FROM runs WHERE status='done'").fetchone()[0] == 6
    assert con.execute("SELECT count(*) FROM metrics").fetchone()[0] == 6 * 4
    attempts = dict(con.execute("SELECT key, attempts FROM runs"))
    resumed_from = dict(con.execute("SELECT run_key, value FROM metrics WHERE name='resumed_from'"))
    con.close()
    assert all(attempts[k] == 1 for k in done_before)  # finished runs were not run again
    for key in interrupted:
        assert attempts[key] == (1 if key in harvest else 2)
        assert resumed_from[key] >= 0  # restarted in the same workdir (from its checkpoint when one was written)
    lines = counter.read_text().splitlines()
    assert len(lines) == 6 and len(set(lines)) == 6  # every run completed exactly once

    proc = subprocess.run(args, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "6 already done" in proc.stdout
    assert len(counter.read_text().splitlines()) == 6


def test_runs_cli_list_show_export(tmp_path, capsys):
    from lossnet.cli.runs import register
    from lossnet.cli.sweep import standalone_main

    db = tmp_path / "r.db"
    configs = [
        fake_bench.resolve_config({"benchmark": "fake_bench", "net": n, "layer": "E", "seed": s})
        for n in ("alexnet", "vgg16")
        for s in (0, 1)
    ]
    with ResultsStore(db) as store:
        for c in configs:
            store.claim(run_key(c), c)
            store.record(
                RunRecord(run_key(c), "fake_bench", c, "done", {"fake/score": fake_bench.score(c), "plain": 1.0})
            )
        bad = dict(configs[0], seed=7)
        store.claim(run_key(bad), bad)
        store.record(RunRecord.failure(run_key(bad), "fake_bench", bad, "Traceback...\nRuntimeError: boom"))

    assert standalone_main(register, "runs", ["runs", "list", "--store", str(db), "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert run_key(bad) in out and "RuntimeError: boom" in out and run_key(configs[1]) not in out

    assert standalone_main(register, "runs", ["runs", "show", run_key(configs[1])[:8], "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert "fake/score" in out and '"net": "alexnet"' in out

    csv_path = tmp_path / "out.csv"
    assert standalone_main(register, "runs", ["runs", "export", "--csv", "-o", str(csv_path), "--store", str(db)]) == 0
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert len(rows) == 4 * 2
    for r in rows:
        if r["metric"] == "score":
            c = next(c for c in configs if c["net"] == r["net"] and str(c["seed"]) == r["seed"])
            assert r["dataset"] == "fake" and float(r["value"]) == fake_bench.score(c)
    assert {r["dataset"] for r in rows if r["metric"] == "plain"} == {""}

    assert standalone_main(register, "runs", ["runs", "show", "ffffffff", "--store", str(db)]) == 2
    assert "no run" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_executor_matches_local(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    monkeypatch.setenv("LOSSNET_WEIGHTS_DIR", str(tmp_path / "weights"))  # forwarded through the tasks' runtime_env
    grid = _grid(
        tmp_path, '[sweep]\narchs = ["alexnet", "vgg16"]\nlayers = ["E", "M"]\n[benchmarks.fake_bench]\nsteps = 2\n'
    )
    runs = plan_file(grid)
    assert len(runs) == 4

    def contents(store):
        return sorted((r["run_key"], r["dataset"], r["name"], r["value"]) for r in store.metric_rows())

    with ResultsStore(tmp_path / "local.db") as local:
        assert len(run_sweep(runs, local, tmp_path / "runs_local", workers=2, progress=False, log=None).done) == 4
        expected = contents(local)
    # plus one run whose Ray worker process dies: only that run fails
    crash_cfg = dict(runs[0].config, crash=True)
    crash = type(runs[0])(run_key(crash_cfg), runs[0].benchmark, crash_cfg)
    t0 = time.monotonic()
    with ResultsStore(tmp_path / "ray.db") as store:
        summary = run_sweep(
            runs + [crash], store, tmp_path / "runs_ray", executor="ray", num_cpus=2, progress=False, log=None
        )
        got = [row for row in contents(store) if row[0] != crash.key]
        statuses = {r["key"]: r["status"] for r in store.runs()}
        crash_error = store.get_run(crash.key)["error"]
    print(f"ray executor: 5 runs in {time.monotonic() - t0:.1f} s (including Ray start-up)")
    assert sorted(summary.done) == sorted(r.key for r in runs) and summary.failed == [crash.key]
    assert statuses == dict({r.key: "done" for r in runs}, **{crash.key: "failed"})
    assert "ray task failed" in crash_error
    assert got == expected and len(got) == 16
    assert all((tmp_path / "runs_ray" / r.key / "run.log").read_text().count("fake_bench: starting") == 1 for r in runs)
    assert all(
        json.loads((tmp_path / "runs_ray" / r.key / "env.json").read_text())["LOSSNET_WEIGHTS_DIR"]
        == str(tmp_path / "weights")
        for r in runs
    )
