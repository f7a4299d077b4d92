"""``lossnet sweep plan|run GRID.toml``: expand a grid of benchmark runs, run the unfinished ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from lossnet.cli.common import print_table

_EPILOG = """grid file (TOML):
  [sweep]                      # defaults for all benchmarks
  archs = "paper"              # 14 paper architectures, or ["alexnet", "vgg16"]
  layers = "paper"             # E, S, M, L, or a list ("E,M" = one layer set)
  seeds = [0]
  preset = "quick"
  [benchmarks.superres]        # one table per benchmark; other keys are fixed options
  scale = 4

store: SQLite, one row per run (see lossnet.sweep.store); runs/<key>/ holds each run's
checkpoints, artifacts and run.log. Rerunning the same command resumes the sweep."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="plan or run a grid of benchmark runs (resumable; local processes or Ray)",
        description=__doc__, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="sweep_command", metavar="{plan,run}")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("grid", help="grid TOML file")
        p.add_argument("--store", default="results.db", help="SQLite results store (default results.db)")
        p.add_argument("--device", help="torch device for every run (runtime only: not part of the run key)")
        p.add_argument("--weights-dir", help="folder with <arch>-imagenet1k-v1*.safetensors (runtime only)")

    plan = sub.add_parser("plan", help="list the runs of a grid and whether each is done, without running")
    common(plan)
    plan.add_argument("--json", dest="json_path", help="also write the plan as JSON to this file")
    plan.set_defaults(func=_plan)

    run = sub.add_parser("run", help="run every unfinished run of a grid; safe to kill and rerun",
                         epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(run)
    run.add_argument("--runs-dir", default="runs", help="per-run folders runs/<key>/ (default runs)")
    run.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes (default) or Ray tasks")
    run.add_argument("--workers", type=int, default=1, help="local: concurrent runs (default 1)")
    run.add_argument("--threads", type=int, help="local: torch threads per run (default CPUs // workers)")
    run.add_argument("--address", help="ray: cluster address (auto or HOST:PORT); default: start a local instance")
    run.add_argument("--num-cpus", type=int, help="ray: CPUs of the local instance")
    run.add_argument("--cpus-per-run", type=float, default=1, help="ray: CPUs each run declares (default 1)")
    run.add_argument("--gpus-per-run", type=float, default=0, help="ray: GPUs each run declares (default 0)")
    run.add_argument("--retry-failed", action="store_true", help="also rerun runs recorded as failed")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _overrides(args: argparse.Namespace) -> dict:
    return {"device": args.device, "weights_dir": args.weights_dir}


def _plan(args: argparse.Namespace) -> int:
    from lossnet.atomic import atomic_write_json
    from lossnet.sweep.grid import plan_file
    from lossnet.sweep.store import ResultsStore

    runs = plan_file(args.grid, overrides=_overrides(args))
    statuses: dict[str, str] = {}
    if Path(args.store).exists():
        with ResultsStore(args.store, readonly=True) as store:
            statuses = store.statuses()
    rows = [dict(r.summary(), status=statuses.get(r.key, "new")) for r in runs]
    print_table(rows)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("done", "failed", "running", "queued", "new")}
    print(f"{len(rows)} runs in {args.grid}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
          + f" (store {args.store}{'' if statuses or Path(args.store).exists() else ', not created yet'})")
    if args.json_path:
        atomic_write_json(args.json_path, [dict(row, config=r.config) for row, r in zip(rows, runs)])
    return 0


def _run(args: argparse.Namespace) -> int:
    from lossnet.sweep.grid import plan_file
    from lossnet.sweep.runner import run_sweep
    from lossnet.sweep.store import ResultsStore

    from lossnet.errors import LossnetError

    if args.workers < 1 or (args.threads is not None and args.threads < 1):
        raise LossnetError("--workers and --threads must be >= 1")
    if args.cpus_per_run <= 0 or args.gpus_per_run < 0:
        raise LossnetError("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
    runs = plan_file(args.grid, overrides=_overrides(args))  # validates every point before anything runs
    with ResultsStore(args.store) as store:
        summary = run_sweep(
            runs, store, args.runs_dir, executor=args.executor, retry_failed=args.retry_failed, progress=not args.no_progress,
            workers=args.workers, threads=args.threads, address=args.address, num_cpus=args.num_cpus,
            cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
        )
    print_table([summary.as_row()])
    if summary.failed:
        print(f"{len(summary.failed)} run(s) failed; see 'lossnet runs list --status failed --store {args.store}'")
    return 1 if summary.failed else 0


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
        return int(args.func(args) or 0)
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
