"""A tiny benchmark implementing the plug-in interface, for the sweep tests (dotted path ``fake_bench``).

It counts ``steps`` (sleeping ``step_seconds`` each), checkpoints ``{"step": i}`` to
``workdir/ckpt.json`` after every step and resumes from it, fails on demand (``fail`` or while the
file ``fail_flag`` exists), can kill its own process (``crash``), and appends one line per completed
execution to the file ``counter`` so tests can see how often each run really finished.

Its metrics are closed-form functions of the config, so two executors must store equal values:
``fake/score = (sum of the code points of net + layer) % 97 + 100 * seed`` and
``fake/steps = steps``, plus ``fake/resumed_from`` (step it started at) and ``plain`` (no dataset).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossnet.atomic import atomic_write_json
from lossnet.bench.base import Benchmark, BenchResult, CommonConfig, option
from lossnet.errors import LossnetError

DISTANCES = ("mse", "l1")


@dataclass
class FakeConfig(CommonConfig):
    steps: int = option(3, "steps to count", kind="int", minimum=1)
    step_seconds: float = option(0.0, "sleep per step", kind="float", minimum=0)
    fail: bool = option(False, "raise before running", kind="bool")
    fail_flag: str | None = option(None, "raise while this file exists", kind="str", nullable=True)
    crash: bool = option(False, "SIGKILL the own process", kind="bool")
    counter: str | None = option(
        None, "append one line per completed execution to this file", kind="str", nullable=True
    )


class FakeBench(Benchmark):
    name = "fake_bench"
    Config = FakeConfig
    PRESETS = {"quick": {}, "paper": {"steps": 10}}

    def validate(self, config: FakeConfig) -> None:
        if config.distance not in DISTANCES:
            raise LossnetError(f"unknown distance {config.distance!r}; choose one of {', '.join(DISTANCES)}")

    def check_loss_network(self, config: FakeConfig) -> None:
        # no real loss network: net/layer are optional labels (the grid checks them against the registry)
        pass

    def run(
        self, config: FakeConfig | dict[str, Any], workdir: str | os.PathLike, *, progress: bool = True
    ) -> BenchResult:
        return run(self.config_object(config), workdir, progress=progress)


def score(config: FakeConfig | dict[str, Any]) -> float:
    config = BENCHMARK.config_object(config)
    text = f"{config.net or ''}{config.layer or ''}"
    return float(sum(map(ord, text)) % 97 + 100 * int(config.seed or 0))


def run(config: FakeConfig, workdir: str | os.PathLike, *, progress: bool = True) -> BenchResult:
    workdir = Path(workdir)
    ckpt = workdir / "ckpt.json"
    if config.fail or (config.fail_flag and Path(config.fail_flag).exists()):
        raise RuntimeError(f"fake failure requested for {config.net}/{config.layer}")
    if config.crash:
        os.kill(os.getpid(), signal.SIGKILL)
    start = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    print(f"fake_bench: starting at step {start} of {config.steps}", flush=True)
    for step in range(start, config.steps):
        time.sleep(config.step_seconds)
        atomic_write_json(ckpt, {"step": step + 1})
    if config.counter:
        line = json.dumps({"net": config.net, "layer": config.layer, "seed": config.seed}, sort_keys=True)
        with open(config.counter, "a", encoding="utf-8") as fh:  # O_APPEND: one whole line per write
            fh.write(line + "\n")
    # what the run's process saw of the forwarded environment (Ray tasks get it via runtime_env)
    atomic_write_json(workdir / "env.json", {k: os.environ.get(k) for k in ("LOSSNET_WEIGHTS_DIR", "LOSSNET_SHARED")})
    metrics = {
        "fake/score": score(config),
        "fake/steps": float(config.steps),
        "fake/resumed_from": float(start),
        "plain": 1.0,
    }
    return BenchResult(config=config, metrics=metrics, artifacts={"checkpoint": str(ckpt)})


BENCHMARK = FakeBench()
PRESETS = BENCHMARK.PRESETS
resolve_config = BENCHMARK.resolve_config
