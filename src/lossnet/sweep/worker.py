"""Execute one sweep run: the code that runs inside a worker process (local subprocess or Ray task).

The driver writes ``runs/<key>/spec.json`` and starts ``python -m lossnet.sweep.worker SPEC`` with
stdout/stderr appended to ``runs/<key>/run.log``. The worker calls the benchmark's ``run(config,
workdir)`` -- the same workdir on every attempt, so a benchmark that checkpoints there resumes --
and writes ``runs/<key>/result.json`` atomically: ``{"key", "ok": true, "metrics", "artifacts",
"status", "duration_s", "started_at"}`` or ``{"key", "ok": false, "error": traceback}``. The driver
alone writes the results store.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["execute", "RESULT_FILE", "SPEC_FILE", "LOG_FILE", "read_result"]

RESULT_FILE = "result.json"
SPEC_FILE = "spec.json"
LOG_FILE = "run.log"


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _set_threads(threads: int | None) -> None:
    if not threads:
        return
    try:
        import torch

        torch.set_num_threads(int(threads))
    except ImportError:  # a benchmark without torch needs no pinning
        pass


def execute(
    benchmark: str,
    config: dict[str, Any],
    workdir: str | os.PathLike,
    key: str,
    *,
    threads: int | None = None,
    progress: bool = False,
    sys_path: list[str] | None = None,
) -> dict[str, Any]:
    """Run one benchmark config in this process and write ``result.json`` into ``workdir``.

    Args:
        benchmark: built-in benchmark name or dotted module path.
        config: resolved config.
        workdir: the run's folder (checkpoints, artifacts, log).
        key: run key (stored in the result so a stale file is never mistaken for another run's).
        threads: torch intra-op threads for this run (its share of the machine).
        progress: show the benchmark's own progress bars (into the log).
        sys_path: extra import paths (a Ray worker does not inherit the driver's ``sys.path``).

    Returns:
        The payload written to ``result.json``. Exceptions of the benchmark are caught and returned
        as ``{"ok": False, "error": traceback}``.
    """
    import lossnet  # noqa: F401  (torchvision shim before any benchmark imports torchvision)
    from lossnet.atomic import atomic_write_json

    for p in reversed(sys_path or []):
        if p not in sys.path:
            sys.path.insert(0, p)
    _set_threads(threads)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    print(f"[lossnet sweep] run {key} benchmark {benchmark} started {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}", flush=True)
    try:
        from lossnet.sweep.grid import load_benchmark

        module = load_benchmark(benchmark)
        result = module.run(config, workdir, progress=progress)
        payload = {
            "key": key, "ok": True, "status": getattr(result, "status", "done") or "done",
            "metrics": {k: _finite(float(v)) if v is not None else None for k, v in dict(result.metrics).items()},
            "artifacts": {k: str(v) for k, v in dict(getattr(result, "artifacts", {}) or {}).items()},
        }
    except BaseException as exc:  # noqa: BLE001  (the run fails, the worker reports it)
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        payload = {"key": key, "ok": False, "error": tb.strip()}
    payload["started_at"] = started
    payload["duration_s"] = time.time() - started
    atomic_write_json(workdir / RESULT_FILE, payload)
    print(f"[lossnet sweep] run {key} {'finished' if payload['ok'] else 'FAILED'} after {payload['duration_s']:.1f} s", flush=True)
    return payload


def read_result(workdir: str | os.PathLike, key: str) -> dict[str, Any] | None:
    """The ``result.json`` of ``key`` in ``workdir``, or None when absent, unreadable or another run's."""
    path = Path(workdir) / RESULT_FILE
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) and payload.get("key") == key else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m lossnet.sweep.worker SPEC_JSON", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    payload = execute(
        spec["benchmark"], spec["config"], spec["workdir"], spec["key"],
        threads=spec.get("threads"), progress=spec.get("progress", False), sys_path=spec.get("sys_path"),
    )
    return 0 if payload["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
