"""``lossnet bench NAME ...``: run one benchmark (one or several runs), print a summary table,
optionally write JSON and record in a results store.

A command line is a small plan: its runs are resolved and every output is checked before any
work starts, then each run goes through the same execute -> record path as ``lossnet sweep run``.
Building the parser imports no torch (the options come from the benchmarks' config fields).
"""

from __future__ import annotations

import argparse
import sys

from lossnet.bench.base import default_workdir, get_benchmark, list_benchmarks


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="run one benchmark (" + ", ".join(list_benchmarks()) + ")")
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name in list_benchmarks():
        bench = get_benchmark(name)
        doc = (sys.modules[type(bench).__module__].__doc__ or name).strip()
        p = sub.add_parser(
            name, help=doc.splitlines()[0], description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        bench.add_arguments(p)
        p.set_defaults(func=_run, bench=bench)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def plan_runs(bench, args: argparse.Namespace) -> list[tuple[str, dict]]:
    """``[(run key, resolved config)]`` of a command line, each key once, in command-line order
    (:func:`lossnet.runs.plan.plan_partials`, the planner the grids use too). With ``--print-config``
    the configs resolve without the data (missing data left null)."""
    import contextlib

    from lossnet.bench.base import resolving_without_data
    from lossnet.runs.plan import plan_partials

    with resolving_without_data() if getattr(args, "print_config", False) else contextlib.nullcontext():
        return [(run.key, run.config) for run in plan_partials(bench, bench.partials_from_args(args))]


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lossnet.atomic import atomic_write_json
    from lossnet.cli.common import print_table
    from lossnet.outputs import check_output_dir, check_output_file
    from lossnet.runs.execute import execute_point

    bench = args.bench
    runs = plan_runs(bench, args)
    if args.print_config:
        import json

        print(json.dumps(dict(runs), indent=2, sort_keys=True))
        return 0
    if args.profile is not None:
        return _profile(bench, runs, args.profile)
    # every output is checked before any work: a bad path must not cost a finished run
    json_path = check_output_file(args.json_path, "--json") if args.json_path else None
    out = check_output_dir(args.out, "--out") if args.out else None
    store = None
    if args.store:
        from lossnet.runs.store import ResultsStore

        check_output_file(args.store, "--store")
        store = ResultsStore(args.store)

    records = []
    try:
        for key, config in runs:
            workdir = (out / key if len(runs) > 1 else out) if out else default_workdir(bench.name, key)
            record = execute_point(bench.name, config, workdir, key, progress=not args.no_progress, store=store)
            records.append(record)
            print(
                f"benchmark {bench.name} (preset {config.get('preset')}), net {config.get('net')}, "
                f"layer {config.get('layer')}, run key {key}, status {record.status}"
            )
            if record.error and record.status == "failed":
                print(f"run {key} failed: {record.error.strip().splitlines()[-1]}")
            details = getattr(record, "details", None)
            if details:
                print_table(details)
                print()
            if record.metrics:
                print_table([{"metric": k, "value": v} for k, v in record.metrics.items()])
            if record.signature:
                print(f"signature: {record.signature}")
            if store is not None:
                print(f"recorded run {key} in {args.store}")
    finally:
        if store is not None:
            store.close()
        if json_path is not None and records:
            payload = {
                "benchmark": bench.name,
                "runs": {
                    r.key: {
                        "status": r.status,
                        "error": r.error,
                        "config": r.config,
                        "metrics": r.metrics,
                        "artifacts": r.artifacts,
                        "duration_s": r.duration_s,
                        "device": r.device,
                        "details": r.details,
                        "signature": r.signature,
                    }
                    for r in records
                },
            }
            if len(records) == 1:  # one run: its config and metrics also at the top level
                payload.update(
                    config=records[0].config,
                    metrics=payload["runs"][records[0].key]["metrics"],
                    status=records[0].status,
                    signature=records[0].signature,
                )
            atomic_write_json(Path(json_path), payload)
            print(f"wrote {json_path}")
    if len(records) > 1:
        print()
        print_table(
            [
                {
                    "run key": r.key,
                    "status": r.status,
                    "net": r.config.get("net"),
                    "layer": r.config.get("layer"),
                    "weights": Path(str(r.config.get("weights"))).name,
                    **r.metrics,
                }
                for r in records
            ]
        )
    return 0 if all(r.status == "done" for r in records) else 1


def _profile(bench, runs: list[tuple[str, dict]], steps: int) -> int:
    """``--profile K``: time K steps of each run (:func:`lossnet.bench.profile.time_benchmark`; a
    benchmark that does not train times its evaluation batches) and print the phase table of each."""
    from lossnet.bench.profile import format_profile, time_benchmark
    from lossnet.cli.common import print_table
    from lossnet.errors import InputError

    if steps < 1:
        raise InputError(f"--profile must be at least 1 step, got {steps}")
    for key, config in runs:
        timing = time_benchmark(bench, config, None, steps, warmup=1, fixed=False)
        print(
            f"{bench.name} run {key}: {timing.steps_timed} timed step(s), {timing.step_s * 1000:.1f} ms per step, "
            f"{timing.steps_per_run} steps in a full run"
        )
        print_table(format_profile(timing))
    return 0
