"""Where a benchmark step spends its time, and what one run of a config costs.

Two pieces, shared by ``lossnet bench NAME --profile K``, ``benchmarks/profile_steps.py`` and
``lossnet sweep estimate``:

- :class:`PhaseTimer`: the training tasks' ``train_epoch`` wrap their phases in
  ``with self.timer.phase("model"):`` and their batch iterator in ``self.timer.iterate(loader)``
  (the time ``next()`` takes is the ``data`` phase). A disabled timer (the default of every task)
  hands back one shared no-op context and the iterator itself, so a normal run pays nothing. An
  enabled one synchronises CUDA at each phase boundary (kernels are asynchronous, so without it a
  phase would be charged to the next one), skips the first ``warmup`` steps, and asks the loop to
  stop after ``warmup + steps`` steps (:meth:`PhaseTimer.end_step` returns True).
- :func:`time_benchmark` (what :mod:`lossnet.runs.estimate` calls): time K
  steps of one resolved config without a full run, plus the run's non-training costs, returned as a
  :class:`StepTiming`. A training benchmark provides :meth:`Benchmark.training_setup` (its task,
  steps per epoch, epochs) and :meth:`Benchmark.reduced_config` (the same config cut to one epoch
  of one step); the fixed cost of a run -- process start, data decoding, model/loss construction,
  the final evaluation -- is the wall time of that reduced run minus its training step and one
  validation pass, the validation pass is timed once (``score``) and charged per epoch. A benchmark
  without these hooks is timed by running it once (one "step" = one run).

Phases of the training benchmarks: ``data`` (next batch: decoding, cropping, degradation, collate,
host->device copy), ``model`` (forward of the trained network), ``loss_net`` (the loss network's
forward passes and the loss), ``backward`` (backward pass and optimiser step), ``other`` (the rest
of the step: bookkeeping, progress bar).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = [
    "PhaseTimer",
    "StepTiming",
    "TrainingSetup",
    "time_benchmark",
    "time_training",
    "process_start_seconds",
    "PHASES",
    "format_profile",
]

#: Time the reduced run of :func:`fixed_cost` in a fresh ``python -m lossnet.runs.worker`` process
#: (as a sweep runs it: interpreter start, imports, first-call set-up included); False: in this
#: process, plus :func:`process_start_seconds`.
REDUCED_RUN_IN_SUBPROCESS = True

#: Phase names of the training benchmarks, in display order (similarity: data, loss_net, metric).
PHASES = ("data", "model", "loss_net", "backward", "metric", "other")

_NULL = contextlib.nullcontext()


class PhaseTimer:
    """Accumulates wall seconds per phase over the timed steps of a training loop.

    Args:
        enabled: False gives the no-op timer every task holds by default.
        device: a CUDA device makes every phase boundary synchronise (so asynchronous kernels are
            charged to the phase that launched them).
        steps: timed steps; :meth:`end_step` returns True once ``warmup + steps`` steps ended.
        warmup: first steps not counted (allocator warm-up, cuDNN autotuning, lazy init).
    """

    def __init__(self, enabled: bool = False, *, device: Any = None, steps: int | None = None, warmup: int = 0) -> None:
        self.enabled = enabled
        self.steps_limit = steps
        self.warmup = warmup
        self.seen = 0  # steps ended (warm-up included)
        self.totals: dict[str, float] = {}
        self.step_seconds: list[float] = []
        self._sync = None
        if enabled and device is not None:
            import torch

            dev = torch.device(device)
            if dev.type == "cuda":
                self._sync = lambda: torch.cuda.synchronize(dev)
        self._step_start: float | None = None

    @property
    def counting(self) -> bool:
        return self.enabled and self.seen >= self.warmup

    def _now(self) -> float:
        if self._sync is not None:
            self._sync()
        return time.perf_counter()

    @contextlib.contextmanager
    def _timed(self, name: str):
        if self._step_start is None:
            self._step_start = self._now()
        t0 = self._now()
        try:
            yield
        finally:
            if self.seen >= self.warmup:
                self.totals[name] = self.totals.get(name, 0.0) + self._now() - t0

    def phase(self, name: str):
        """Context timing one phase of the current step (a shared no-op when disabled)."""
        return self._timed(name) if self.enabled else _NULL

    def iterate(self, iterable: Iterable, name: str = "data") -> Iterator:
        """``iterable`` with the time of each ``next()`` charged to phase ``name`` (itself when disabled)."""
        if not self.enabled:
            return iter(iterable)
        return self._iterate(iterable, name)

    def _iterate(self, iterable: Iterable, name: str) -> Iterator:
        it = iter(iterable)
        while True:
            self._step_start = self._now()
            t0 = self._step_start
            try:
                item = next(it)
            except StopIteration:
                self._step_start = None
                return
            if self.seen >= self.warmup:
                self.totals[name] = self.totals.get(name, 0.0) + self._now() - t0
            yield item

    def end_step(self) -> bool:
        """Mark the end of a step; True when the loop should stop (``warmup + steps`` steps done)."""
        if not self.enabled:
            return False
        end = self._now()
        if self._step_start is not None and self.seen >= self.warmup:
            self.step_seconds.append(end - self._step_start)
        self._step_start = None
        self.seen += 1
        return self.steps_limit is not None and self.seen >= self.warmup + self.steps_limit

    def per_step(self) -> dict[str, float]:
        """Mean seconds per timed step of every phase, with ``other`` = step time minus the phases."""
        n = len(self.step_seconds)
        if not n:
            return {}
        out = {k: v / n for k, v in self.totals.items()}
        out["other"] = max(0.0, sum(self.step_seconds) / n - sum(out.values()))
        return out

    @property
    def mean_step(self) -> float:
        return sum(self.step_seconds) / len(self.step_seconds) if self.step_seconds else float("nan")


@dataclass
class TrainingSetup:
    """What a training benchmark hands to :func:`time_training` (from ``Benchmark.training_setup``).

    Attributes:
        task: the built task (model, loss, optimiser, data), not yet begun.
        steps_per_epoch: optimiser steps of one epoch of the full run.
        epochs: epochs of the full run (a validation pass after each when the task scores).
        validates: the task's ``score`` does work (timed once, charged per epoch).
        val_scale: multiply the timed validation pass by this (validation measured at reduced size).
        notes: remarks for the output (synthetic data, ...).
    """

    task: Any
    steps_per_epoch: int
    epochs: int
    validates: bool = True
    val_scale: float = 1.0
    notes: list[str] = field(default_factory=list)
    #: the validation pass (default: ``task.score(0)``), for a task that validates inside ``train_epoch``
    validate: Any = None


@dataclass
class StepTiming:
    """The cost of one config: per-step phases, and the costs of a full run besides its steps.

    Attributes:
        benchmark, config: what was timed.
        steps_timed: steps measured after warm-up.
        step_s: mean wall seconds of one training step (similarity: one evaluation batch).
        phases: mean seconds per step of each phase (they sum to ``step_s``).
        steps_per_run: steps of a full run.
        epochs: epochs of a full run.
        setup_s: one-off cost of a run besides its steps: process start, data decoding, building the
            model and the loss network, the final evaluation (measured on a reduced run).
        val_s: one validation pass (charged once per epoch).
        eval_s: ``setup_s + epochs * val_s``: everything in a run but its training steps.
        notes: what was approximated (synthetic data, random weights, scaled evaluation).
    """

    benchmark: str
    config: dict[str, Any]
    steps_timed: int
    step_s: float
    phases: dict[str, float]
    steps_per_run: int
    epochs: int = 1
    setup_s: float = 0.0
    val_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def eval_s(self) -> float:
        return self.setup_s + self.epochs * self.val_s

    @property
    def run_s(self) -> float:
        """Projected wall seconds of one full run."""
        return self.steps_per_run * self.step_s + self.eval_s

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(eval_s=self.eval_s, run_s=self.run_s)
        return d


def process_start_seconds(_cache: dict = {}) -> float:  # noqa: B006 - deliberate per-process cache
    """Wall seconds of starting a sweep worker process (``python -m lossnet.runs.worker`` imports
    lossnet, torch and torchvision before it runs anything), measured once per process."""
    if "s" not in _cache:
        code = "import lossnet, torch, torchvision, lossnet.runs.worker, lossnet.bench.base"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, env=dict(os.environ))
        _cache["s"] = time.perf_counter() - t0
    return _cache["s"]


def _use_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def time_training(setup: TrainingSetup, steps: int, *, warmup: int = 2, device: Any = None) -> tuple[PhaseTimer, float]:
    """Run ``warmup + steps`` steps of ``setup.task`` with an enabled timer; ``(timer, val_s)`` where
    ``val_s`` is one validation pass (0 without one), scaled by ``setup.val_scale``."""
    task = setup.task
    timer = PhaseTimer(
        True, device=device if device is not None else getattr(task, "device", None), steps=steps, warmup=warmup
    )
    task.timer = timer
    task.progress = False
    task.begin(0)
    task.model.train()
    epoch = 0
    while timer.seen < warmup + steps and epoch < 1000:
        task.train_epoch(epoch, max(setup.epochs, epoch + 1))
        epoch += 1
    task.timer = PhaseTimer()
    val_s = 0.0
    if setup.validates:
        t0 = time.perf_counter()
        (setup.validate or (lambda: task.score(0)))()
        if timer._sync is not None:
            timer._sync()
        val_s = (time.perf_counter() - t0) * setup.val_scale
    return timer, val_s


def time_benchmark(
    bench: Any,
    config: Any,
    workdir: str | os.PathLike | None = None,
    steps: int = 5,
    *,
    warmup: int = 2,
    fixed: bool = True,
    sizes: dict[str, Any] | None = None,
) -> StepTiming:
    """Time ``steps`` steps of ``config`` (a resolved dict or the benchmark's ``Config`` object;
    after ``warmup``) and, with ``fixed``, the run's non-training costs (see the module docstring).

    The benchmark's :meth:`~lossnet.bench.base.Benchmark.time_steps` times it when it has its own
    kind of step (similarity: evaluation batches); else its :meth:`training_setup`'s training steps.
    ``sizes``: the real data's sizes when ``config`` points at synthetic data; the timing is scaled
    to them (the benchmark's ``scale_to_real``). ``workdir`` receives the reduced run's files (a
    temporary folder when None).
    """
    config = bench.config_object(config)
    _use_threads(config.threads)
    own = bench.time_steps(config, steps, warmup=warmup, sizes=sizes)
    if own is not None:
        return own
    setup = bench.training_setup(config)
    if setup is None:
        return _time_whole_run(bench, config, workdir)
    timer, val_s = time_training(setup, steps, warmup=warmup)
    timing = StepTiming(
        bench.name,
        _as_dict(config),
        len(timer.step_seconds),
        timer.mean_step,
        timer.per_step(),
        setup.steps_per_epoch * setup.epochs,
        setup.epochs,
        0.0,
        val_s if setup.validates else 0.0,
        list(setup.notes),
    )
    del setup
    if sizes:
        bench.scale_to_real(config, timing, sizes)
    if fixed:
        timing.setup_s = fixed_cost(bench, config, workdir, timing)
    return timing


def _as_dict(config: Any) -> dict[str, Any]:
    from lossnet.bench.base import config_dict

    return config_dict(config)


def fixed_cost(bench: Any, config: Any, workdir: str | os.PathLike | None, timing: StepTiming) -> float:
    """Seconds of a run besides its steps and per-epoch validation: the wall time of the benchmark's
    reduced run (one epoch of one step, ``Benchmark.reduced_config``) plus a worker process start,
    minus that run's step and validation pass."""
    reduced = bench.reduced_config(bench.config_object(config))
    if reduced is None:
        return process_start_seconds()
    with contextlib.ExitStack() as stack:
        wd = (
            Path(workdir)
            if workdir is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lossnet-reduced-")))
        )
        wd.mkdir(parents=True, exist_ok=True)
        if REDUCED_RUN_IN_SUBPROCESS:
            # exactly what a sweep run costs: a fresh worker process (interpreter, imports of the
            # benchmark's modules, first-call kernel set-up) running the reduced config
            return max(0.0, _worker_wall(bench, _as_dict(reduced.config), wd) - _spent(reduced, timing))
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            t0 = time.perf_counter()
            bench.run(reduced.config, wd, progress=False)
            wall = time.perf_counter() - t0
    return max(0.0, wall - _spent(reduced, timing)) + process_start_seconds()


def _spent(reduced: Any, timing: StepTiming) -> float:
    """Seconds of the reduced run's own steps and validation passes (a
    :class:`lossnet.bench.base.ReducedRun`): the estimate counts them in its step and validation terms."""
    return int(reduced.steps) * timing.step_s + int(reduced.vals) * timing.val_s


def _worker_wall(bench: Any, config: dict[str, Any], workdir: Path) -> float:
    """Wall seconds of ``python -m lossnet.runs.worker`` running ``config`` (the spec's dict) in
    ``workdir`` (as ``lossnet sweep run`` starts it: OMP/MKL threads = the config's ``threads``)."""
    from lossnet.runs.identity import run_key
    from lossnet.runs.worker import command, write_spec

    threads = config.get("threads")
    spec = write_spec(
        workdir,
        key=run_key(config),
        benchmark=bench.name if bench.name in _builtin() else type(bench).__module__,
        config=config,
        threads=threads,
        progress=False,
        sys_path=[p for p in sys.path if p and Path(p).is_dir()],
    )
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    proc = subprocess.run(
        command(spec), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        from lossnet.errors import LossnetError

        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise LossnetError(f"{bench.name}: the reduced run (one step, for the fixed cost) failed: {' | '.join(tail)}")
    return wall


def _builtin() -> set[str]:
    from lossnet.bench.base import BENCHMARKS

    return set(BENCHMARKS)


def _time_whole_run(bench: Any, config: Any, workdir: str | os.PathLike | None) -> StepTiming:
    """A benchmark without the training hooks: one run is one step."""
    with contextlib.ExitStack() as stack:
        wd = (
            Path(workdir)
            if workdir is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lossnet-time-")))
        )
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            t0 = time.perf_counter()
            bench.run(dataclasses.replace(config), wd, progress=False)  # a copy: a run may normalise its config
            wall = time.perf_counter() - t0
    return StepTiming(
        bench.name,
        _as_dict(config),
        1,
        wall,
        {"run": wall},
        1,
        1,
        process_start_seconds(),
        0.0,
        ["no training hooks: one whole run timed"],
    )


# -- output -------------------------------------------------------------------------------------------


def format_profile(timing: StepTiming) -> list[dict[str, Any]]:
    """Rows of the phase table of one timing: phase, ms/step, share of the step."""
    rows = []
    names = [p for p in PHASES if p in timing.phases] + [p for p in timing.phases if p not in PHASES]
    for name in names:
        s = timing.phases[name]
        rows.append(
            {
                "phase": name,
                "ms/step": round(1000 * s, 2),
                "share": f"{100 * s / timing.step_s:.1f} %" if timing.step_s else "-",
            }
        )
    rows.append({"phase": "step", "ms/step": round(1000 * timing.step_s, 2), "share": "100.0 %"})
    return rows
