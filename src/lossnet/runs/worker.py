"""Execute one sweep run: the code that runs inside a worker process (local subprocess or Ray task).

The driver writes ``runs/<key>/spec.json`` and starts ``python -m lossnet.runs.worker SPEC`` with
stdout/stderr appended to ``runs/<key>/run.log``. The worker runs the benchmark through
:func:`lossnet.runs.execute.execute_in_process` -- in the same workdir on every attempt, so a
benchmark that checkpoints there resumes -- and writes the run's
:class:`~lossnet.runs.record.RunRecord` as ``runs/<key>/result.json`` (atomically). The driver
alone writes the results store, recording that record unchanged.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from lossnet.runs.execute import execute_in_process
from lossnet.runs.record import RunRecord

__all__ = ["execute", "RESULT_FILE", "SPEC_FILE", "LOG_FILE", "read_result", "write_spec", "command"]

RESULT_FILE = "result.json"
SPEC_FILE = "spec.json"
LOG_FILE = "run.log"


def write_spec(
    workdir: str | os.PathLike,
    *,
    key: str,
    benchmark: str,
    config: dict[str, Any],
    threads: int | None,
    progress: bool = False,
    sys_path: list[str] | None = None,
) -> Path:
    """Write ``workdir/spec.json`` (atomically) for :func:`main`: the one place a worker spec is
    written (the local executor and the estimate's timed worker both call it). Returns its path."""
    from lossnet.atomic import atomic_write_json

    path = Path(workdir) / SPEC_FILE
    atomic_write_json(
        path,
        {
            "key": key,
            "benchmark": benchmark,
            "config": config,
            "workdir": str(workdir),
            "threads": threads,
            "progress": progress,
            "sys_path": sys_path,
        },
    )
    return path


def command(spec_path: str | os.PathLike) -> list[str]:
    """The worker's command line: this interpreter, ``-m lossnet.runs.worker SPEC``."""
    return [sys.executable, "-m", "lossnet.runs.worker", str(spec_path)]


def execute(
    benchmark: str,
    config: dict[str, Any],
    workdir: str | os.PathLike,
    key: str,
    *,
    threads: int | None = None,
    progress: bool = False,
    sys_path: list[str] | None = None,
) -> RunRecord:
    """Run one benchmark config in this process and write its RunRecord to ``workdir/result.json``.

    Args:
        benchmark: built-in benchmark name or module path.
        config: resolved config.
        workdir: the run's folder (checkpoints, artifacts, log).
        key: run key (stored in the result so a stale file is never mistaken for another run's).
        threads: torch intra-op threads for this run (its share of the machine).
        progress: show the benchmark's own progress bars (into the log).
        sys_path: extra import paths (a Ray worker does not inherit the driver's ``sys.path``).

    Returns:
        The :class:`RunRecord`. Exceptions of the benchmark are caught into a ``failed`` record with
        the traceback; on KeyboardInterrupt an ``interrupted`` record is written, then it is re-raised.
    """
    from lossnet.atomic import atomic_write_json

    for p in reversed(sys_path or []):
        if p not in sys.path:
            sys.path.insert(0, p)
    print(
        f"[lossnet sweep] run {key} benchmark {benchmark} started {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}",
        flush=True,
    )
    record, exc = execute_in_process(benchmark, config, workdir, key, progress=progress, threads=threads)
    if record.status == "failed":
        print(record.error, file=sys.stderr, flush=True)
    Path(workdir).mkdir(parents=True, exist_ok=True)  # an early failure removed a workdir it had created
    atomic_write_json(Path(workdir) / RESULT_FILE, record.to_json())
    if isinstance(exc, KeyboardInterrupt):  # recorded as "interrupted" (resumable), then stop
        raise exc
    print(
        f"[lossnet sweep] run {key} {'finished' if record.finished else 'FAILED'} ({record.status}) after {record.duration_s:.1f} s",
        flush=True,
    )
    return record


def read_result(workdir: str | os.PathLike, key: str) -> RunRecord | None:
    """The RunRecord in ``workdir/result.json`` for ``key``, or None when absent, unreadable or
    another run's."""
    path = Path(workdir) / RESULT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    try:
        return RunRecord.from_json(data)
    except (TypeError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m lossnet.runs.worker SPEC_JSON", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    record = execute(
        spec["benchmark"],
        spec["config"],
        spec["workdir"],
        spec["key"],
        threads=spec.get("threads"),
        progress=spec.get("progress", False),
        sys_path=spec.get("sys_path"),
    )
    return 0 if record.finished else 1


if __name__ == "__main__":
    sys.exit(main())
