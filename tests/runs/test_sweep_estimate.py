"""``lossnet sweep estimate``: the projection of a grid's cost from timed steps.

The benchmark of this module (importable as ``test_sweep_estimate``) has a known cost: each
training step sleeps ``step_s`` (in its ``model`` phase), each validation pass ``val_s``, and a run
``setup_s`` before training; a run is ``epochs x steps`` steps. Its estimate must equal the closed
form ``epochs * steps * step_s + epochs * val_s + setup_s`` (+ the worker start, patched to 0).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from lossnet.bench.base import Benchmark, BenchResult, CommonConfig, ReducedRun, option
from lossnet.bench.trainer import TrainingTask, fit


@dataclass
class TimedConfig(CommonConfig):
    epochs: int = option(3, "epochs", kind="int", minimum=1)
    steps: int = option(10, "steps per epoch", kind="int", minimum=1)
    step_s: float = option(0.04, "sleep per step", kind="float", minimum=0)
    val_s: float = option(0.03, "sleep per validation", kind="float", minimum=0)
    setup_s: float = option(0.1, "sleep before training", kind="float", minimum=0)


class TimedTask(TrainingTask):
    def __init__(self, config):
        self.config, self.progress = config, False
        self.model = torch.nn.Linear(1, 1)

    def train_epoch(self, epoch, epochs):
        timer = self.timer
        for _ in range(self.config.steps):
            with timer.phase("data"):
                pass
            with timer.phase("model"):
                time.sleep(self.config.step_s)
            if timer.end_step():
                break
        return {"train_loss": 0.0}

    def score(self, epoch):
        time.sleep(self.config.val_s)
        return 1.0


class TimedBench(Benchmark):
    name = "timed_bench"
    Config = TimedConfig
    PRESETS = {"quick": {}, "paper": {"epochs": 5}}

    def check_loss_network(self, config):
        pass

    def training_setup(self, config):
        from lossnet.bench.profile import TrainingSetup

        return TrainingSetup(TimedTask(config), config.steps, config.epochs)

    def reduced_config(self, config):
        return ReducedRun(dataclasses.replace(config, epochs=1, steps=1), steps=1, vals=1)

    def run(self, config, workdir, *, progress=True):
        config = self.config_object(config)
        time.sleep(config.setup_s)
        fit(lambda: TimedTask(config), config, workdir)
        return BenchResult(config, {"x": 1.0})


BENCHMARK = TimedBench()


@pytest.fixture(autouse=True)
def _no_process_start(monkeypatch):
    import lossnet.bench.profile as profile

    monkeypatch.setattr(profile, "process_start_seconds", lambda: 0.0)
    monkeypatch.setattr(
        profile, "REDUCED_RUN_IN_SUBPROCESS", False
    )  # in-process: a closed form without interpreter start


def _grid(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "grid.toml"
    p.write_text(body)
    return p


def test_makespan_closed_form():
    from lossnet.runs.estimate import makespan

    assert makespan([3, 1, 1, 1], 2) == 3  # slots: 3 | 1+1+1
    assert makespan([2, 2, 2], 1) == 6
    assert makespan([2, 2, 2], 3) == 2
    assert makespan([1, 1, 1, 1, 1], 2) == 3


def test_estimate_matches_closed_form(tmp_path):
    from lossnet.runs.estimate import estimate_grid

    grid = _grid(
        tmp_path,
        '[sweep]\narchs = ["alexnet", "vgg16"]\nlayers = ["E"]\nseeds = [0, 1]\n'
        "[benchmarks.test_sweep_estimate]\nsteps = 8\nepochs = 3\n",
    )
    est = estimate_grid(grid, device="cpu", width=2, steps=4, warmup=1, allow_modules=True, progress=False)
    assert len(est.points) == 2 and all(p.runs == 2 for p in est.points)  # seeds share a timing
    expected = 3 * 8 * 0.04 + 3 * 0.03 + 0.1
    for p in est.points:
        assert p.steps_per_run == 24
        assert p.step_s == pytest.approx(0.04, rel=0.25)
        assert p.run_s == pytest.approx(expected, rel=0.3)
        assert sum(p.phases.values()) == pytest.approx(p.step_s, rel=1e-6)  # phases sum to the step
        assert p.phases["model"] > 0.8 * p.step_s
    assert len(est.run_seconds) == 4
    assert est.wall_s == pytest.approx(2 * expected + est.plan_s, rel=0.3)  # 4 runs on 2 slots


def test_run_without_hooks_is_timed_whole(tmp_path):
    """fake_bench (tests/fake_bench.py) has no training hooks: one whole run is one step."""
    from lossnet.runs.estimate import estimate_grid

    grid = _grid(
        tmp_path,
        '[sweep]\narchs = ["alexnet"]\nlayers = ["E"]\n[benchmarks.fake_bench]\nsteps = 3\nstep_seconds = 0.05\n',
    )
    est = estimate_grid(grid, device="cpu", width=1, steps=2, allow_modules=True, progress=False)
    (p,) = est.points
    assert p.steps_per_run == 1
    assert p.run_s == pytest.approx(0.15, rel=0.5)


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    from lossnet.cli.sweep import register, standalone_main

    grid = _grid(
        tmp_path,
        '[sweep]\narchs = ["alexnet"]\nlayers = ["E", "S"]\n[benchmarks.test_sweep_estimate]\nsteps = 5\nepochs = 2\n',
    )
    out = tmp_path / "est.json"
    rc = standalone_main(
        register,
        "lossnet",
        [
            "sweep",
            "estimate",
            str(grid),
            "--allow-module",
            "--device",
            "cpu",
            "--width",
            "1",
            "--steps",
            "2",
            "--json",
            str(out),
            "--no-progress",
        ],
    )
    assert rc == 0
    text = capsys.readouterr().out
    for column in ("benchmark", "net", "layer", "preset", "runs", "s/step", "steps/run", "eval s", "projected hours"):
        assert column in text
    assert "projected wall time with width 1" in text
    data = json.loads(out.read_text())
    assert data["runs"] == 2 and data["width"] == 1 and len(data["points"]) == 2
    assert data["projected_wall_s"] == pytest.approx(sum(p["run_s"] for p in data["points"]) + data["plan_s"])
    assert {p["layer"] for p in data["points"]} == {"E", "S"}


def test_module_benchmark_needs_allow_module(tmp_path, capsys):
    from lossnet.cli.sweep import register, standalone_main

    grid = _grid(tmp_path, '[sweep]\narchs = ["alexnet"]\n[benchmarks.test_sweep_estimate]\n')
    assert standalone_main(register, "lossnet", ["sweep", "estimate", str(grid), "--no-progress"]) == 2
    assert "--allow-module" in capsys.readouterr().err


def test_missing_data_and_weights_fall_back(tmp_path, monkeypatch):
    """A missing BAPPS folder is replaced by synthetic data with the real item counts, and a network
    without local weights is timed with random weights; nothing is downloaded."""
    import lossnet.runs.estimate as E

    monkeypatch.setitem(E.REAL_SIZES, "bapps", {"2afc/traditional": 640})
    grid = _grid(
        tmp_path,
        '[sweep]\narchs = ["squeezenet1_1"]\nlayers = ["E"]\npreset = "paper"\n'
        '[benchmarks.similarity]\nsubsets_2afc = ["traditional"]\nsubsets_jnd = []\nbatch_size = 8\n',
    )
    est = E.estimate_grid(grid, device="cpu", steps=1, progress=False, synthetic_root=tmp_path / "synth")
    (p,) = est.points
    assert p.steps_per_run == 640 // 8
    assert any("synthetic" in n for n in est.notes)
    assert any("random weights" in n for n in est.notes)
    assert set(p.phases) == {"data", "loss_net", "metric"}
