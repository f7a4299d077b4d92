"""``lossnet runs list|show|export``: inspect the SQLite results store of sweeps and ``bench --store``."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Any, Sequence

from lossnet.cli.common import format_time, format_value, print_table
from lossnet.runs.identity import differing_keys
from lossnet.runs.record import error_line
from lossnet.runs.store import STATUSES

EXPORT_COLUMNS = (
    "run_key",
    "benchmark",
    "net",
    "layer",
    "preset",
    "seed",
    "distance",
    "weights",
    "dataset",
    "metric",
    "value",
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("runs", help="list, show and export runs recorded in a results store")
    sub = parser.add_subparsers(dest="runs_command", metavar="{list,show,export}")

    def store_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", default="results.db", help="SQLite results store (default results.db)")

    p = sub.add_parser("list", help="one line per run")
    store_arg(p)
    p.add_argument("--status", choices=STATUSES, help="only runs with this status")
    p.add_argument("--benchmark", help="only runs of this benchmark")
    p.set_defaults(func=_list)

    p = sub.add_parser("show", help="config, metrics, artifacts and error of one run")
    store_arg(p)
    p.add_argument("key", help="run key (a unique prefix is enough)")
    p.set_defaults(func=_show)

    p = sub.add_parser("export", help="one CSV row per run x metric")
    store_arg(p)
    p.add_argument(
        "--csv", action="store_true", help="CSV format (the only format, and the default; accepted for scripts)"
    )
    p.add_argument("-o", "--output", help="output file (written atomically; default stdout)")
    p.add_argument("--all", action="store_true", help="include metrics of failed runs (default: done runs only)")
    p.set_defaults(func=_export)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


#: config keys ``runs list`` always shows as columns of their own
LIST_CONFIG_KEYS = ("benchmark", "preset", "net", "layer", "seed")


def _config_cell(value: Any) -> Any:
    """A config value as a table/CSV cell: scalars as they are, anything else JSON-encoded."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _variant(config: dict, keys: Sequence[str]) -> str:
    """``"scale=8 loss=lpips"``: the run's values of the ``keys`` that tell the listed runs apart."""
    return " ".join(f"{k}={_config_cell(config[k])}" for k in keys if k in config)


def _open(args: argparse.Namespace):
    from lossnet.runs.store import ResultsStore

    return ResultsStore(args.store, readonly=True, what="--store")


def _list(args: argparse.Namespace) -> int:
    with _open(args) as store:
        runs = store.runs(status=args.status)
    if args.benchmark:
        runs = [r for r in runs if r["benchmark"] == args.benchmark]
    variant_keys = differing_keys((r["config"] for r in runs), exclude=LIST_CONFIG_KEYS)
    rows = []
    for r in runs:
        c = r["config"]
        rows.append(
            {
                "key": r["key"],
                "benchmark": r["benchmark"],
                "preset": c.get("preset"),
                "net": c.get("net"),
                "layer": c.get("layer"),
                "seed": c.get("seed"),
                "status": r["status"],
                "attempts": r["attempts"],
                "seconds": round(r["duration_s"], 1) if r["duration_s"] is not None else None,
                "error": (error_line(r.get("error"))[:60] or None),
            }
        )
        if variant_keys:
            rows[-1]["variant"] = _variant(c, variant_keys)
    print_table(rows)
    print(f"{len(rows)} run(s) in {args.store}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from lossnet.errors import LossnetError

    with _open(args) as store:
        run = store.get_run(args.key)
    if run is None:
        raise LossnetError(f"no run {args.key!r} in {args.store}")
    print(f"run {run['key']}  benchmark {run['benchmark']}  status {run['status']}  attempts {run['attempts']}")
    for k in ("started_at", "ended_at", "duration_s", "host", "device", "owner", "lossnet_version", "signature"):
        # *_at columns are Unix times: a date-time, not format_value's 4 significant digits
        print(f"  {k}: {(format_time if k.endswith('_at') else format_value)(run.get(k))}")
    print("config:")
    print("  " + json.dumps(run["config"], indent=2, sort_keys=True).replace("\n", "\n  "))
    print("metrics:")
    print_table([{"metric": k, "value": v} for k, v in run["metrics"].items()])
    if run["artifacts"]:
        print("artifacts:")
        print_table([{"name": k, "path": v} for k, v in run["artifacts"].items()])
    if run.get("error"):
        print("error:")
        print(run["error"])
    return 0


def export_columns(rows: Sequence[dict]) -> list[str]:
    """CSV header of ``rows`` (from :func:`export_rows`): :data:`EXPORT_COLUMNS`, then the extra
    config-key columns the rows carry, in their order."""
    cols = list(EXPORT_COLUMNS)
    for row in rows[:1]:
        cols += [k for k in row if k not in EXPORT_COLUMNS]
    return cols


def export_rows(store, include_failed: bool = False) -> list[dict]:
    """Rows of ``lossnet runs export``: one per run x metric with the config's identifying keys,
    plus one column per other config key whose value differs among the exported runs (named after
    the key, ``config.<key>`` where that clashes with a standard column; non-scalar values
    JSON-encoded), so runs that differ only there (super-resolution ``scale``...) stay apart."""
    metric_rows = store.metric_rows(status=None if include_failed else "done")
    configs = {r["run_key"]: r["config"] for r in metric_rows}
    extra = differing_keys(configs.values(), exclude=EXPORT_COLUMNS[1:8])  # benchmark ... weights
    rows = []
    for r in metric_rows:
        c = r["config"]
        row = {
            "run_key": r["run_key"],
            "benchmark": r["benchmark"],
            "net": c.get("net"),
            "layer": c.get("layer"),
            "preset": c.get("preset"),
            "seed": c.get("seed"),
            "distance": c.get("distance"),
            "weights": c.get("weights"),
            "dataset": r["dataset"],
            "metric": r["name"],
            "value": r["value"],
        }
        for k in extra:
            row[f"config.{k}" if k in EXPORT_COLUMNS else k] = _config_cell(c.get(k))
        rows.append(row)
    return rows


def _export(args: argparse.Namespace) -> int:
    from lossnet.atomic import atomic_write_text
    from lossnet.outputs import check_output_file

    if args.output:
        check_output_file(args.output, "-o/--output")
    with _open(args) as store:
        rows = export_rows(store, include_failed=args.all)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=export_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    if args.output:
        atomic_write_text(args.output, buf.getvalue())
        print(f"wrote {len(rows)} rows to {args.output}")
    else:
        sys.stdout.write(buf.getvalue())
    return 0


if __name__ == "__main__":
    from lossnet.cli.sweep import standalone_main

    sys.exit(standalone_main(register, "python -m lossnet.cli.runs"))
