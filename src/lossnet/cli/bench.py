"""``lossnet bench NAME ...``: run one benchmark, print a summary table, optionally write JSON/store."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from lossnet.bench.base import BENCHMARKS, add_common_arguments, common_config_from_args, default_workdir
from lossnet.cli.common import print_table


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="run one benchmark (similarity, superres, roads, autoencoder)")
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, module_name in BENCHMARKS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not installed in this build
            raise
        if not all(hasattr(module, a) for a in ("add_arguments", "config_from_args", "resolve_config", "run")):
            continue
        doc = (module.__doc__ or name).strip().splitlines()[0]
        p = sub.add_parser(name, help=doc, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        add_common_arguments(p)
        module.add_arguments(p)
        p.set_defaults(func=_run, bench_module=module, bench_name=name)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _run(args: argparse.Namespace) -> int:
    from lossnet.atomic import atomic_write_json
    from lossnet.runkey import run_key

    module = args.bench_module
    parts = module.config_from_args(args)
    parts = parts if isinstance(parts, list) else [parts]
    configs = []
    for part in parts:
        partial = common_config_from_args(args)
        partial.update({k: v for k, v in part.items()})
        partial["benchmark"] = args.bench_name
        configs.append(module.resolve_config(partial))  # validate every run before running any

    results, failed = [], 0
    for config in configs:
        key = run_key(config)
        if args.out:
            workdir = Path(args.out) / key if len(configs) > 1 else Path(args.out)
        else:
            workdir = default_workdir(args.bench_name, key)
        workdir.mkdir(parents=True, exist_ok=True)
        result = module.run(config, workdir, progress=not args.no_progress)
        results.append((key, config, result))
        failed += result.status != "done"
        print(f"benchmark {args.bench_name} (preset {config.get('preset')}), net {config.get('net')}, "
              f"layer {config.get('layer')}, run key {key}, status {result.status}")
        if result.details:
            print_table(result.details)
            print()
        print_table([{"metric": k, "value": v} for k, v in result.metrics.items()])
        if args.store:
            from lossnet.sweep.store import ResultsStore

            with ResultsStore(args.store) as store:
                store.record_result(key, config, result)
            print(f"recorded run {key} in {args.store}")

    if len(results) > 1:
        print()
        print_table([{"run key": k, "net": c.get("net"), "layer": c.get("layer"), **r.metrics} for k, c, r in results])
    if args.json_path:
        if len(results) == 1:
            key, config, result = results[0]
            payload = {"config": config, "metrics": result.to_json()["metrics"]}
        else:
            payload = {
                "config": {"benchmark": args.bench_name, "runs": [c for _, c, _ in results]},
                "metrics": {f"{c.get('net')}/{c.get('layer')}/{m}": v for _, c, r in results for m, v in r.to_json()["metrics"].items()},
            }
        atomic_write_json(args.json_path, payload)
        print(f"wrote {args.json_path}")
    return 0 if failed == 0 else 1
