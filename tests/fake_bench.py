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

import argparse
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from lossnet.atomic import atomic_write_json
from lossnet.bench.base import BenchResult, apply_preset
from lossnet.errors import LossnetError

_BASE = {
    "benchmark": "fake_bench", "net": None, "layer": None, "weights": "imagenet", "seed": 0, "distance": "mse",
    "steps": 3, "step_seconds": 0.0, "fail": False, "fail_flag": None, "crash": False, "counter": None,
}
PRESETS = {"quick": dict(_BASE), "paper": dict(_BASE, steps=10)}
DISTANCES = ("mse", "l1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"steps": getattr(args, "steps", None)}


def resolve_config(partial: dict[str, Any]) -> dict[str, Any]:
    config = apply_preset(PRESETS, partial)
    if config["distance"] not in DISTANCES:
        raise LossnetError(f"unknown distance {config['distance']!r}; choose one of {', '.join(DISTANCES)}")
    if not isinstance(config["steps"], int) or config["steps"] < 1:
        raise LossnetError(f"steps must be a positive integer, got {config['steps']!r}")
    return config


def score(config: dict[str, Any]) -> float:
    text = f"{config.get('net') or ''}{config.get('layer') or ''}"
    return float(sum(map(ord, text)) % 97 + 100 * int(config.get("seed") or 0))


def run(config: dict[str, Any], workdir: str | os.PathLike, *, progress: bool = True) -> BenchResult:
    workdir = Path(workdir)
    ckpt = workdir / "ckpt.json"
    if config.get("fail") or (config.get("fail_flag") and Path(config["fail_flag"]).exists()):
        raise RuntimeError(f"fake failure requested for {config.get('net')}/{config.get('layer')}")
    if config.get("crash"):
        os.kill(os.getpid(), signal.SIGKILL)
    start = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    print(f"fake_bench: starting at step {start} of {config['steps']}", flush=True)
    for step in range(start, config["steps"]):
        time.sleep(config["step_seconds"])
        atomic_write_json(ckpt, {"step": step + 1})
    if config.get("counter"):
        line = json.dumps({"net": config.get("net"), "layer": config.get("layer"), "seed": config.get("seed")}, sort_keys=True)
        with open(config["counter"], "a", encoding="utf-8") as fh:  # O_APPEND: one whole line per write
            fh.write(line + "\n")
    metrics = {"fake/score": score(config), "fake/steps": float(config["steps"]), "fake/resumed_from": float(start), "plain": 1.0}
    return BenchResult(config=config, metrics=metrics, artifacts={"checkpoint": str(ckpt)})
