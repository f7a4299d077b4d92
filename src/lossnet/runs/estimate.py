"""``lossnet sweep estimate GRID``: what a grid costs before it is launched.

For every distinct (benchmark, net, layer, preset) of the grid -- seeds and other repeats share
one timing -- a few steps are timed on the current device with the benchmark's own code
(:func:`lossnet.bench.profile.time_benchmark`), and the run's non-training costs are added:

- **steps**: ``steps_per_run x s/step``, the step time measured over ``--steps K`` steps after 2
  warm-up steps, with the threads a run of the sweep gets (CPU: cores // width);
- **eval s** (everything but the steps): one validation pass timed once and charged once per epoch
  (the autoencoder's held-out pass timed on 8 batches and scaled to the held-out count), plus the
  fixed cost: the wall time of the benchmark's *reduced run* (the same config cut to one epoch of
  one step: data decoding, model and loss construction, checkpointing, the full final evaluation)
  minus that step and validation pass, plus the start of a worker process. The fixed cost depends
  on the loss network only through the step it subtracts, so it is measured once per group of
  points that differ only in net/layer/weights/distance/seed, and reused;
- **a benchmark that does not train** (similarity, ``Benchmark.trains`` False): a step is what its
  ``time_steps`` hook times -- one batch of BAPPS evaluation (decoding, network, distances, metric),
  through the benchmark's public functions.

The wall time of the grid for an executor of ``--width N`` is the makespan of the runs handed in
plan order to the first free of N slots (what ``lossnet sweep run --workers N`` does), plus the
planning time.

Nothing is downloaded: a network whose ImageNet weights are not on disk (``--weights-dir``,
``$LOSSNET_WEIGHTS_DIR`` or torch's hub cache) is timed with random weights (timing does not depend
on weight values), and a benchmark whose dataset is missing is timed on synthetic data of the
preset's shapes (image sizes, crop, batch), with the step counts and evaluation sizes of the real
dataset; both are stated in the notes of the output.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lossnet.bench.synthetic import REAL_SIZES
from lossnet.errors import LossnetError

__all__ = ["Estimate", "PointEstimate", "estimate_grid", "makespan", "REAL_SIZES"]

#: keys that do not change a run's fixed cost (data, evaluation) -- only its steps
_LOSS_KEYS = (
    "net",
    "layer",
    "weights",
    "distance",
    "seed",
    "normalize",
    "transform_input",
    "loss_net_mode",
    "weights_dir",
)


@dataclass
class PointEstimate:
    """One distinct (benchmark, net, layer, preset) of a grid and its projected cost."""

    benchmark: str
    net: str | None
    layer: str | None
    preset: str
    runs: int
    step_s: float
    steps_per_run: int
    eval_s: float
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fixed_s: float = 0.0  # of eval_s: the reduced run's cost besides its step and validation, + process start
    val_s: float = 0.0  # of eval_s: one validation pass (charged once per epoch)
    epochs: int = 1

    @property
    def run_s(self) -> float:
        return self.steps_per_run * self.step_s + self.eval_s

    @property
    def hours(self) -> float:
        return self.runs * self.run_s / 3600.0

    def row(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "net": self.net or "-",
            "layer": self.layer or "-",
            "preset": self.preset,
            "runs": self.runs,
            "s/step": f"{self.step_s:.4g}",
            "steps/run": self.steps_per_run,
            "eval s": f"{self.eval_s:.4g}",
            "projected hours": f"{self.hours:.3g}",
        }


@dataclass
class Estimate:
    grid: str
    device: str
    width: int
    steps: int
    points: list[PointEstimate]
    run_seconds: list[float]
    plan_s: float
    notes: list[str]

    @property
    def total_run_hours(self) -> float:
        return sum(self.run_seconds) / 3600.0

    @property
    def wall_s(self) -> float:
        return makespan(self.run_seconds, self.width) + self.plan_s

    def as_json(self) -> dict[str, Any]:
        return {
            "grid": self.grid,
            "device": self.device,
            "width": self.width,
            "steps": self.steps,
            "runs": len(self.run_seconds),
            "total_run_hours": self.total_run_hours,
            "projected_wall_s": self.wall_s,
            "projected_wall_hours": self.wall_s / 3600.0,
            "plan_s": self.plan_s,
            "notes": self.notes,
            "points": [
                {
                    **p.row(),
                    "s/step": p.step_s,
                    "eval s": p.eval_s,
                    "projected hours": p.hours,
                    "run_s": p.run_s,
                    "fixed_s": p.fixed_s,
                    "val_s": p.val_s,
                    "epochs": p.epochs,
                    "phases": p.phases,
                    "notes": p.notes,
                }
                for p in self.points
            ],
        }


def makespan(durations: list[float], width: int) -> float:
    """Wall time of running ``durations`` in order, each on the first of ``width`` slots to be free."""
    slots = [0.0] * max(1, width)
    for d in durations:
        heapq.heapreplace(slots, slots[0] + d)
    return max(slots)


# -- weights and data that may be missing -------------------------------------------------------------


def weights_available(arch: str, weights_dir: str | None) -> bool:
    """ImageNet weights of ``arch`` are on disk (a local file, or torch's hub cache): no download."""
    from lossnet.weights import find_local_weights

    with contextlib.suppress(LossnetError, OSError):
        if find_local_weights(arch, weights_dir) is not None:
            return True
    try:
        import torch
        from torchvision.models import get_model_weights

        enum = get_model_weights(arch)["IMAGENET1K_V1"]
        return (Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name).is_file()
    except Exception:  # noqa: BLE001 - unknown arch/enum: not available
        return False


# -- planning with fallbacks ----------------------------------------------------------------------------


def _plan(
    grid_path: str, overrides: dict[str, Any], allow_modules: bool, synth_root: Path
) -> tuple[list, dict[str, dict], list[str]]:
    """Planned runs of the grid, benchmark by benchmark; a benchmark whose data is missing is
    planned again on synthetic data. Returns ``(runs, {benchmark: real sizes}, notes)``."""
    from lossnet.bench.base import get_benchmark
    from lossnet.runs.plan import benchmark_grids, load_grid, missing_data, plan_grid

    grid = load_grid(grid_path)
    runs, real, notes = [], {}, []
    for bench, sub in benchmark_grids(grid):
        table = sub["benchmarks"][bench]
        try:
            runs += plan_grid(sub, where=grid_path, overrides=overrides, allow_modules=allow_modules)
            continue
        except LossnetError as exc:  # plan_grid names the point and chains the benchmark's error
            if missing_data(exc) is None:
                raise
            missing = str(exc.__cause__ or exc)
        b = get_benchmark(bench)
        defaults = grid.get("sweep", {}) or {}
        presets = table.get("presets", table.get("preset", defaults.get("presets", defaults.get("preset", "quick"))))
        preset = presets[0] if isinstance(presets, list) else presets
        values = {**b.defaults(preset), **{k: v for k, v in table.items()}}
        synthetic = b.synthetic_data(synth_root, values)
        options, sizes, note = dict(synthetic.options), synthetic.sizes, synthetic.note
        if "allow_stand_in" in b.config_keys():
            options["allow_stand_in"] = True  # synthetic data are stand-ins, which a paper preset otherwise refuses
        patched = dict(table, **options)
        runs += plan_grid(
            {"sweep": sub["sweep"], "benchmarks": {bench: patched}},
            where=grid_path,
            overrides=overrides,
            allow_modules=allow_modules,
        )
        real[b.name] = sizes
        notes.append(f"{note} (data missing: {' '.join(missing.split())[:160]})")
    return runs, real, notes


def _group_key(config: dict[str, Any], keys: tuple[str, ...]) -> str:
    import json

    return json.dumps(
        {k: v for k, v in sorted(config.items()) if k not in keys and k != "threads"}, sort_keys=True, default=str
    )


# -- the estimate ---------------------------------------------------------------------------------------


def estimate_grid(
    grid_path: str | os.PathLike,
    *,
    device: str | None = None,
    width: int = 1,
    steps: int = 5,
    warmup: int = 2,
    weights_dir: str | None = None,
    allow_modules: bool = False,
    progress: bool = True,
    synthetic_root: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> Estimate:
    """Time every distinct (benchmark, net, layer, preset) of a grid and project its wall time.

    Args:
        grid_path: grid TOML (as ``lossnet sweep run`` takes it).
        device: torch device of the runs (default: cuda if available, else cpu).
        width: concurrent runs of the executor (``--workers``); on a CPU each run gets cores // width threads.
        steps: timed steps per point (after ``warmup``).
        weights_dir: folder of local weight files (as ``--weights-dir``).
        synthetic_root: where synthetic data is written when a dataset is missing (default: a folder
            under the system temp dir, reused between estimates).

    Raises:
        LossnetError: an invalid grid (as ``lossnet sweep plan``), width or steps below 1.
    """
    import tempfile

    import torch
    from tqdm.auto import tqdm

    from lossnet.bench.base import get_benchmark
    from lossnet.bench.profile import fixed_cost, time_benchmark
    from lossnet.devices import resolve_device

    if width < 1 or steps < 1:
        raise LossnetError("--width and --steps must be >= 1")
    grid_path = str(grid_path)
    dev = resolve_device({"device": device})
    overrides = {"device": str(dev), "weights_dir": os.path.abspath(weights_dir) if weights_dir else None}
    synth = Path(synthetic_root) if synthetic_root else Path(tempfile.gettempdir()) / "lossnet-estimate-synthetic"
    t0 = time.perf_counter()
    runs, real, notes = _plan(grid_path, overrides, allow_modules, synth)
    plan_s = time.perf_counter() - t0 + 1.0  # the driver's own start (imports, store) ~1 s
    threads = max(1, (os.cpu_count() or 1) // width) if dev.type == "cpu" else None
    if threads:
        notes.append(
            f"timed with {threads} torch thread(s) per run (cpu cores // width {width}, as 'sweep run --workers {width}')"
        )

    groups: dict[tuple, list] = {}
    for r in runs:
        c = r.config
        groups.setdefault((r.benchmark, c.get("net"), c.get("layer"), c.get("preset")), []).append(r)
    if log:  # said up front: a large grid takes minutes to time (issue #32 L12)
        log(
            f"timing {len(groups)} point(s) (distinct benchmark, net, layer, preset) for {len(runs)} runs of {grid_path}, "
            f"{steps} step(s) each after warm-up; this takes a few seconds per point"
        )
    fixed_cache: dict[str, float] = {}
    points: list[PointEstimate] = []
    random_weights: set[str] = set()
    previous_threads = torch.get_num_threads()
    bar = tqdm(list(groups.items()), desc="timing", unit="point", disable=not progress)
    try:
        for (bench_name, net, layer, preset), members in bar:
            bar.set_postfix_str(f"{bench_name} {net or '-'} {layer or '-'}")
            bench = get_benchmark(bench_name)
            config = dict(members[0].config)
            if threads:
                config["threads"] = threads
            point_notes: list[str] = []
            if (
                config.get("net")
                and config.get("weights") == "imagenet"
                and not weights_available(config["net"], config.get("weights_dir"))
            ):
                config["weights"] = "none"
                random_weights.add(config["net"])
                point_notes.append("random weights (ImageNet weights not on disk)")
            sizes = real.get(bench.name, {})
            timing = time_benchmark(bench, config, None, steps, warmup=warmup, fixed=False, sizes=sizes)
            if bench.trains:
                gkey = _group_key(config, _LOSS_KEYS)
                if gkey not in fixed_cache:
                    with _quiet():
                        fixed_cache[gkey] = fixed_cost(bench, config, None, timing) * float(
                            sizes.get("eval_scale", 1.0)
                        )
                    if sizes.get("eval_scale", 1.0) != 1.0:
                        point_notes.append(f"fixed cost scaled x{sizes['eval_scale']:g} from the synthetic data's size")
                timing.setup_s = fixed_cache[gkey]
            if log:
                log(
                    f"{bench_name} {net} {layer} {preset}: {timing.step_s:.4g} s/step x {timing.steps_per_run} + {timing.eval_s:.4g} s"
                )
            points.append(
                PointEstimate(
                    bench_name,
                    net,
                    layer,
                    preset,
                    len(members),
                    timing.step_s,
                    timing.steps_per_run,
                    timing.eval_s,
                    dict(timing.phases),
                    point_notes + list(timing.notes),
                    timing.setup_s,
                    timing.val_s,
                    timing.epochs,
                )
            )
    finally:
        torch.set_num_threads(previous_threads)
    if random_weights:
        notes.append(
            f"random weights for {', '.join(sorted(random_weights))}: ImageNet weights not on disk "
            f"(nothing is downloaded; step time does not depend on weight values)"
        )
    by_group = {(p.benchmark, p.net, p.layer, p.preset): p for p in points}
    run_seconds = []
    for r in runs:
        c = r.config
        run_seconds.append(by_group[(r.benchmark, c.get("net"), c.get("layer"), c.get("preset"))].run_s)
    return Estimate(grid_path, str(dev), width, steps, points, run_seconds, plan_s, notes)


@contextlib.contextmanager
def _quiet():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
