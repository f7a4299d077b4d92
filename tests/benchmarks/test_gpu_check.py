"""benchmarks/gpu_check.py: the prepared device check, in its CPU ``--tiny`` mode (run as a subprocess)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path, *extra, timeout=480):
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT / "src"), os.environ.get("PYTHONPATH")] if p),
    }
    p = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", *extra],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    return p.stdout, report


def test_own_projection_closed_form():
    gc = _load()
    rows = [
        {"run": "vgg16 E amp=off", "status": "ok", "s_per_step": 0.018, "steps_per_run": 200000},
        {"run": "vgg16 L amp=off", "status": "ok", "s_per_step": 0.036, "steps_per_run": 200000},
        {"run": "resnet50 L amp=off", "status": "failed (x)"},
        {"run": "vgg16 E amp=bf16", "status": "ok", "s_per_step": 0.009, "steps_per_run": 200000},
    ]
    proj = gc.own_projection(rows)
    # 112 runs x 200,000 steps x 0.018 s = 112 GPU-hours
    assert proj["amp=off"]["gpu_hours_min"] == pytest.approx(112.0)
    assert proj["amp=off"]["gpu_hours_max"] == pytest.approx(224.0)
    assert proj["amp=off"]["gpu_hours_mean"] == pytest.approx(168.0)
    assert proj["amp=off"]["from"] == ["vgg16 E amp=off", "vgg16 L amp=off"]
    assert proj["amp=bf16"]["gpu_hours_mean"] == pytest.approx(56.0)
    assert "super-resolution only" in proj["covers"]


def test_sections_are_isolated_and_env_reports_pieces(tmp_path):
    # the estimate section without superres results still reports, env lists what is present/absent
    out, report = _run(tmp_path, "--sections", "env,estimate")
    env = report["sections"]["env"]
    assert env["status"] == "ok" and env["torch"] and env["device"] == "cpu"
    assert all(k in env for k in ("lpips", "piq", "torchvision"))
    est = report["sections"]["estimate"]
    assert est["status"] == "ok" and "covers" in est["own"]
    assert "== env" in out and "== estimate" in out


@pytest.mark.slow
def test_tiny_run_covers_every_section(tmp_path):
    out, report = _run(tmp_path)
    secs = report["sections"]
    assert list(secs) == ["env", "loss", "superres", "estimate", "agreement"]
    assert all(s["status"] == "ok" for s in secs.values()), {k: s["status"] for k, s in secs.items()}
    # loss: ours vs the bare limit in fp32 and bf16, with a per-round ratio and peak memory
    limit = {r["variant"]: r for r in secs["loss"]["rows"] if r["impl"] == "limit" and r["status"] == "ok"}
    assert set(limit) == {"fp32", "bf16"}
    assert all(r["ratio"] > 0 and r["vs"] == "ours" and r["value_diff"] < 1e-3 for r in limit.values())
    assert "skipped" in secs["loss"]["compile"]
    # superres: s/step for 3 networks x 2 precisions
    runs = {r["run"]: r for r in secs["superres"]["rows"]}
    assert set(runs) == {
        f"{n} {l} amp={a}" for n, l in (("vgg16", "E"), ("vgg16", "L"), ("resnet50", "L")) for a in ("off", "bf16")
    }
    assert all(r["status"] == "ok" and r["s_per_step"] > 0 and r["steps_per_run"] == 200000 for r in runs.values())
    # estimate: own projection from those rows
    assert secs["estimate"]["own"]["amp=off"]["gpu_hours_mean"] > 0
    # agreement: both precisions trained through the benchmark's train(), PSNR difference reported
    agr = secs["agreement"]
    assert agr["status_off"] == "done" and agr["status_bf16"] == "done"
    assert agr["psnr_diff_db"] == pytest.approx(abs(agr["val_psnr_bf16"] - agr["val_psnr_off"]))
    assert "within_0.1_db" in agr
    assert "|PSNR(bf16) - PSNR(fp32)|" in out
