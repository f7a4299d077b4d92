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
                continue  # not built yet
            raise
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
    partial = common_config_from_args(args)
    partial.update(module.config_from_args(args))
    partial["benchmark"] = args.bench_name
    config = module.resolve_config(partial)
    key = run_key(config)
    workdir = Path(args.out) if args.out else default_workdir(args.bench_name, key)
    workdir.mkdir(parents=True, exist_ok=True)
    result = module.run(config, workdir, progress=not args.no_progress)

    print(f"benchmark {args.bench_name} (preset {config.get('preset')}), run key {key}, status {result.status}")
    if result.details:
        print_table(result.details)
        print()
    print_table([{"metric": k, "value": v} for k, v in result.metrics.items()])
    if args.json_path:
        atomic_write_json(args.json_path, {"config": config, "metrics": result.to_json()["metrics"]})
        print(f"wrote {args.json_path}")
    if args.store:
        from lossnet.sweep.store import ResultsStore

        with ResultsStore(args.store) as store:
            store.record_result(key, config, result)
        print(f"recorded run {key} in {args.store}")
    return 0 if result.status == "done" else 1
