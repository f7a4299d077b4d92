"""``lossnet sweep plan|run|estimate GRID.toml``: expand a grid of benchmark runs, run the unfinished ones, or project
what running them costs."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from lossnet.cli.common import print_table, stdout_closed

_EPILOG = """grid file (TOML):
  [sweep]                      # defaults for all benchmarks
  archs = "all"                # the 14 paper architectures ("paper" too), or ["alexnet", "vgg16"]
  layers = "all"               # E, S, M, L ("paper" too), or a list ("E,M" = one layer set)
  seeds = [0]
  preset = "quick"
  [benchmarks.superres]        # one table per benchmark; other keys are fixed options
  scale = 4

  # an unknown option (epoch = 1 for epochs) is an error naming the closest known one

store: SQLite, one row per run (see lossnet.runs.store); runs/<key>/ holds each run's
checkpoints, artifacts and run.log. Rerunning the same command resumes the sweep. Several
'sweep run' drivers may share one store (even on several machines): each run is leased to one
driver, runs another live driver holds are left to it, and runs of a dead driver are resumed.

trust: a grid may name a benchmark by a Python module path ([benchmarks.mypkg.mybench]) instead
of a built-in name. That module is imported by 'sweep plan' and executed by 'sweep run' with your
permissions, so both refuse it unless you pass --allow-module: only use it for grids (and modules
on your PYTHONPATH) that you trust. Built-in benchmarks need no flag."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="plan or run a grid of benchmark runs (resumable; local processes or Ray)",
        description=__doc__,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="sweep_command", metavar="{plan,run,estimate}")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("grid", help="grid TOML file")
        p.add_argument("--store", default="results.db", help="SQLite results store (default results.db)")
        p.add_argument("--device", help="torch device for every run (runtime only: not part of the run key)")
        p.add_argument("--weights-dir", help="folder with <arch>-imagenet1k-v1*.safetensors (runtime only)")
        p.add_argument(
            "--allow-module",
            action="store_true",
            help="allow benchmarks given as Python module paths: their code is imported and run (see 'trust' below)",
        )

    plan = sub.add_parser("plan", help="list the runs of a grid and whether each is done, without running")
    common(plan)
    plan.add_argument("--json", dest="json_path", help="also write the plan as JSON to this file")
    plan.set_defaults(func=_plan)

    run = sub.add_parser(
        "run",
        help="run every unfinished run of a grid; safe to kill and rerun",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(run)
    run.add_argument("--runs-dir", default="runs", help="per-run folders runs/<key>/ (default runs)")
    run.add_argument(
        "--executor", choices=("local", "ray"), default="local", help="local processes (default) or Ray tasks"
    )
    run.add_argument("--workers", type=int, default=1, help="local: concurrent runs (default 1)")
    run.add_argument("--threads", type=int, help="local: torch threads per run (default CPUs // workers)")
    run.add_argument("--address", help="ray: cluster address (auto or HOST:PORT); default: start a local instance")
    run.add_argument("--num-cpus", type=int, help="ray: CPUs of the local instance")
    run.add_argument("--cpus-per-run", type=float, default=1, help="ray: CPUs each run declares (default 1)")
    run.add_argument("--gpus-per-run", type=float, default=0, help="ray: GPUs each run declares (default 0)")
    run.add_argument("--retry-failed", action="store_true", help="also rerun runs recorded as failed")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    est = sub.add_parser(
        "estimate",
        help="time a few steps of every distinct (benchmark, net, layer, preset) here and project the grid's wall time",
        description="Times --steps K training steps (after 2 warm-up steps) of every distinct (benchmark, net, layer, preset) of "
        "the grid on this device, and each run's non-training costs (data decoding, per-epoch validation, final "
        "evaluation: a reduced run of one step, measured once per group), then projects the wall time of the whole "
        "grid for an executor of --width concurrent runs. Nothing is downloaded: missing ImageNet weights are "
        "replaced by random ones, missing datasets by synthetic data of the preset's shapes (both stated).",
    )
    est.add_argument("grid", help="grid TOML file")
    est.add_argument("--device", help="torch device of the runs (default: cuda if available, else cpu)")
    est.add_argument(
        "--width", type=int, default=1, help="concurrent runs of the executor (--workers of 'sweep run'; default 1)"
    )
    est.add_argument("--steps", type=int, default=5, help="timed steps per point after 2 warm-up steps (default 5)")
    est.add_argument("--weights-dir", help="folder with <arch>-imagenet1k-v1*.safetensors")
    est.add_argument(
        "--json", dest="json_path", help="write the estimate (points, phases, notes, projection) to this JSON file"
    )
    est.add_argument(
        "--allow-module",
        action="store_true",
        help="allow benchmarks given as Python module paths (see 'sweep run --help')",
    )
    est.add_argument("--no-progress", action="store_true", help="no progress bar")
    est.set_defaults(func=_estimate)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _overrides(args: argparse.Namespace) -> dict:
    import os

    weights_dir = os.path.abspath(args.weights_dir) if args.weights_dir else None  # runtime only: not in run keys
    return {"device": args.device, "weights_dir": weights_dir}


def _plan_runs(args: argparse.Namespace):
    from lossnet.runs.plan import plan_file

    return plan_file(args.grid, overrides=_overrides(args), allow_modules=args.allow_module)


#: status of a listed run whose dataset is missing (its run key depends on the data folder, so it has none yet)
NO_DATA = "no data"


def _plan_listing(args: argparse.Namespace) -> tuple[list, list[dict], list[str]]:
    """Planned runs for 'sweep plan', which lists a grid even when a dataset is missing.

    Like sweep estimate (lossnet.runs.estimate._plan), each benchmark is planned on its own and only a
    missing-data error is tolerated; instead of synthetic data, the points that need the missing data are
    returned unresolved. 'sweep run' keeps the strict _plan_runs. Returns ``(runs, unresolved points,
    missing-data messages)``; the messages end with the ``lossnet data fetch`` command.
    """
    from lossnet.errors import LossnetError
    from lossnet.runs.plan import benchmark_grids, expand_grid, load_grid, missing_data, plan_grid

    grid, where = load_grid(args.grid), str(args.grid)
    plan = {"overrides": _overrides(args), "allow_modules": args.allow_module}
    runs, unresolved, missing = {}, [], {}
    for bench, sub in benchmark_grids(grid):
        try:
            planned = plan_grid(sub, where=where, **plan)
        except LossnetError as exc:
            if missing_data(exc) is None:
                raise
            # point by point: the points whose data is there keep their run keys (and store statuses)
            planned = []
            for point in expand_grid(sub, where):
                one = {"benchmarks": {bench: {k: v for k, v in point.items() if k != "benchmark"}}}
                try:
                    planned += plan_grid(one, where=where, **plan)
                except LossnetError as point_exc:
                    err = missing_data(point_exc)
                    if err is None:
                        raise
                    missing.setdefault(" ".join(str(err).split()), None)
                    if point not in unresolved:  # equal points are one run, as plan_grid collapses them
                        unresolved.append(point)
        for r in planned:
            runs.setdefault(r.key, r)
    return list(runs.values()), unresolved, list(missing)


def _unresolved_row(point: dict) -> dict:
    from lossnet.bench.base import get_benchmark
    from lossnet.errors import LossnetError

    distance = point.get("distance")
    if distance is None and point.get("net") is not None:
        try:  # the preset's distance, as the resolved run would have it (a module benchmark may have no defaults)
            distance = get_benchmark(point["benchmark"]).defaults(point.get("preset") or "quick").get("distance")
        except (LossnetError, AttributeError):
            pass
    return {
        "key": None,
        "benchmark": point["benchmark"],
        "preset": point.get("preset") or "quick",
        "net": point.get("net"),
        "layer": point.get("layer"),
        "distance": distance,
        "seed": point.get("seed"),
        "status": NO_DATA,
    }


def _plan(args: argparse.Namespace) -> int:
    import sys

    from lossnet.atomic import atomic_write_json
    from lossnet.outputs import check_output_file
    from lossnet.runs.store import ResultsStore

    if args.json_path:
        check_output_file(args.json_path, "--json")
    runs, unresolved, missing = _plan_listing(args)
    statuses: dict[str, str] = {}
    if Path(args.store).exists():
        with ResultsStore(args.store, readonly=True, what="--store") as store:
            statuses = store.statuses()
    rows = [dict(r.summary(), status=statuses.get(r.key, "new")) for r in runs]
    pending = [_unresolved_row(p) for p in unresolved]
    print_table(rows + pending)
    counts = {
        s: sum(1 for r in rows + pending if r["status"] == s)
        for s in ("done", "failed", "running", "interrupted", "queued", "new", NO_DATA)
    }
    print(
        f"{len(rows) + len(pending)} runs in {args.grid}: "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + f" (store {args.store}{'' if statuses or Path(args.store).exists() else ', not created yet'})"
    )
    # warnings, not an error: plan only lists; 'sweep run' still refuses until the data are fetched
    for message in missing:
        print(f"lossnet: warning: {message}", file=sys.stderr)
    if missing:
        print(
            f"lossnet: warning: {len(pending)} runs need missing data (listed without a run key, status '{NO_DATA}'); "
            "'lossnet sweep run' refuses the grid until it is fetched",
            file=sys.stderr,
        )
    if args.json_path:
        atomic_write_json(
            args.json_path,
            [dict(row, config=r.config) for row, r in zip(rows, runs)]
            + [dict(row, config=p) for row, p in zip(pending, unresolved)],
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    from lossnet.errors import LossnetError
    from lossnet.outputs import check_output_dir, check_output_file
    from lossnet.runs.runner import run_sweep
    from lossnet.runs.store import ResultsStore

    if args.workers < 1 or (args.threads is not None and args.threads < 1):
        raise LossnetError("--workers and --threads must be >= 1")
    if args.cpus_per_run <= 0 or args.gpus_per_run < 0:
        raise LossnetError("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
    check_output_file(args.store, "--store")
    check_output_dir(args.runs_dir, "--runs-dir")
    runs = _plan_runs(args)  # validates every point before anything runs
    # a terminated driver frees its runs (status interrupted) like Ctrl-C
    with _sigterm_as_interrupt(), ResultsStore(args.store, what="--store") as store:
        summary = run_sweep(
            runs,
            store,
            args.runs_dir,
            executor=args.executor,
            retry_failed=args.retry_failed,
            progress=not args.no_progress,
            workers=args.workers,
            threads=args.threads,
            address=args.address,
            num_cpus=args.num_cpus,
            cpus_per_run=args.cpus_per_run,
            gpus_per_run=args.gpus_per_run,
        )
    print_table([summary.as_row()])
    if summary.failed:
        print(f"{len(summary.failed)} run(s) failed; see 'lossnet runs list --status failed --store {args.store}'")
    return 1 if summary.failed else 0


def _estimate(args: argparse.Namespace) -> int:
    from lossnet.atomic import atomic_write_json
    from lossnet.outputs import check_output_file
    from lossnet.runs.estimate import estimate_grid

    if args.json_path:
        check_output_file(args.json_path, "--json")
    est = estimate_grid(
        args.grid,
        device=args.device,
        width=args.width,
        steps=args.steps,
        weights_dir=args.weights_dir,
        allow_modules=args.allow_module,
        progress=not args.no_progress,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print_table([p.row() for p in est.points])
    wall = est.wall_s
    print(
        f"{len(est.run_seconds)} runs in {args.grid} on {est.device}: {est.total_run_hours:.3g} run-hours; projected wall time "
        f"with width {est.width}: {wall / 3600:.3g} h ({wall:.0f} s)"
    )
    for note in est.notes:
        print(f"note: {note}")
    if args.json_path:
        atomic_write_json(args.json_path, est.as_json())
    return 0


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt while the block runs (main thread only).

    The handler also sets :data:`lossnet.runs.runner.STOP`: an exception raised inside a callback
    whose exceptions Python ignores (an at-fork hook while a worker process is being started) would
    otherwise be lost, and the driver would run on; the runner checks the flag every loop.
    """
    import signal
    import threading

    from lossnet.runs.runner import STOP

    def handler(signum, frame):
        STOP.set()
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    STOP.clear()
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def standalone_main(register_fn, prog: str, argv=None) -> int:
    """Run one subcommand module without the full ``lossnet`` parser (``python -m lossnet.cli.sweep``).

    Same contract as ``lossnet``: a :class:`~lossnet.errors.LossnetError` prints one line, exit 2.
    """
    import os
    import sys

    import lossnet  # noqa: F401  (torchvision shim)
    from lossnet.errors import LossnetError

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--debug", action="store_true")
    register_fn(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that went away (| head) shows up here, not at interpreter exit
        return code
    except BrokenPipeError:
        return stdout_closed()
    except KeyboardInterrupt:
        print("lossnet: interrupted", file=sys.stderr)
        return 130
    except (LossnetError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        if args.debug or os.environ.get("LOSSNET_DEBUG") == "1":
            raise
        print(f"lossnet: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    import sys

    sys.exit(standalone_main(register, "python -m lossnet.cli.sweep"))
