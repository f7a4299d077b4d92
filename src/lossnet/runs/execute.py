"""Execute one run in this process, for ``lossnet bench`` and the sweep worker: plan -> execute -> record.

- *plan*: a resolved config and its run key (:func:`lossnet.runs.plan.plan_grid` for grids;
  ``resolve_config`` + :func:`lossnet.runs.identity.run_key` for one point);
- *execute*: :func:`execute_in_process` runs one benchmark config in this process and returns a
  :class:`RunRecord` -- used by the sweep worker (:mod:`lossnet.runs.worker`, whose ``result.json``
  is ``RunRecord.to_json()``) and by :func:`execute_point` (``lossnet bench``);
- *record*: :meth:`lossnet.runs.store.ResultsStore.record` takes exactly one :class:`RunRecord`.

So ``lossnet sweep run`` and ``lossnet bench --store`` write the same columns (status, attempts,
duration, host, device, metrics, artifacts, error).
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from lossnet.errors import LossnetError
from lossnet.runs.record import RunRecord, absolute_artifacts

__all__ = ["execute_in_process", "execute_point"]


def _set_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads: directly when torch is loaded, else through the OpenMP/MKL
    environment torch reads when it is imported (a torch-free benchmark does not import it)."""
    if not threads:
        return
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(int(threads))


def _device(config: dict[str, Any], *, after_run: bool = False) -> str | None:
    """``str`` of the run's torch device (:func:`lossnet.devices.resolve_device`).

    Before the run (``after_run=False``) it is resolved only when it can fail -- a device was asked
    for (unavailable CUDA is a LossnetError before any work) -- or torch is loaded anyway; else None,
    and it is resolved after the run: a benchmark that never imported torch ran on the CPU (so a
    torch-free benchmark does not pay torch's import time for this column).
    """
    if not (config.get("device") or "torch" in sys.modules):
        return "cpu" if after_run else None
    from lossnet.devices import resolve_device

    try:
        return str(resolve_device(config))
    except ImportError:  # no torch at all
        return config.get("device") or "cpu"


def _makedirs(path: Path) -> list[Path]:
    """``mkdir -p`` returning the folders it created, outermost first."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _remove_if_empty(created: list[Path]) -> None:
    for p in reversed(created):  # innermost first
        try:
            p.rmdir()
        except OSError:  # not empty (the run wrote something) or already gone
            return


def execute_in_process(
    benchmark: str,
    config: dict[str, Any],
    workdir: str | os.PathLike,
    key: str,
    *,
    progress: bool = False,
    threads: int | None = None,
) -> tuple[RunRecord, BaseException | None]:
    """Run one benchmark config in this process; never raises.

    The benchmark is loaded and the device resolved first; only then is ``workdir`` created (with
    any missing parents). Folders created here are removed again if the run left them empty (an
    early failure leaves no empty workdir).

    Returns:
        ``(record, exception)``: the :class:`RunRecord` (status from the benchmark's result; or
        ``"failed"`` with the traceback; or ``"interrupted"`` on KeyboardInterrupt) and the exception
        that ended the run (None when the benchmark returned). Callers record, then re-raise.
    """
    workdir = Path(workdir)
    started = time.time()
    t0 = time.perf_counter()
    host = socket.gethostname()
    device: str | None = None
    created: list[Path] = []
    exc_out: BaseException | None = None
    try:
        import lossnet  # noqa: F401  (torchvision shim before any benchmark imports torchvision)
        from lossnet.bench.base import get_benchmark

        _set_threads(threads)
        module = get_benchmark(benchmark)
        device = _device(config)
        created = _makedirs(workdir)
        result = module.run(config, workdir, progress=progress)
        record = RunRecord(  # the config as planned: the one its run key was computed from
            key=key,
            benchmark=benchmark,
            config=config,
            status=getattr(result, "status", "done") or "done",
            metrics=dict(getattr(result, "metrics", {}) or {}),
            artifacts=absolute_artifacts(getattr(result, "artifacts", {}) or {}),
            details=list(getattr(result, "details", None) or []),
            signature=getattr(result, "signature", None),
        )
        if not record.ok:
            record.error = f"benchmark status: {record.status}"
    except KeyboardInterrupt as exc:
        record = RunRecord.failure(key, benchmark, config, "interrupted (KeyboardInterrupt)", status="interrupted")
        exc_out = exc
    except BaseException as exc:  # noqa: BLE001  (the run fails; the caller records and decides)
        record = RunRecord.failure(key, benchmark, config, traceback.format_exc().strip())
        exc_out = exc
    finally:
        _remove_if_empty(created)
    record.started_at = started
    record.duration_s = time.perf_counter() - t0
    record.host = host
    if device is None and not (isinstance(exc_out, LossnetError) and config.get("device")):
        try:
            device = _device(config, after_run=True)
        except Exception:  # noqa: BLE001  (a column, never a reason to lose the record)
            device = None
    record.device = device
    return record, exc_out


def execute_point(
    benchmark_name: str,
    config: dict[str, Any],
    workdir: str | os.PathLike,
    key: str,
    *,
    progress: bool = True,
    store=None,
    threads: int | None = None,
) -> RunRecord:
    """Run one resolved config in this process (``lossnet bench``), recording it in ``store``.

    With a store, the run is first claimed there (status running, attempts + 1, owner = this
    process, heartbeat while it runs), and its :class:`RunRecord` is recorded when it ends -- the
    same columns ``lossnet sweep run`` writes. A finished run in the store is run again (the user
    asked for it); a run that another live process is executing right now is refused.

    Args:
        benchmark_name: built-in name or module path (as planned).
        config: the resolved config; key: its run key.
        workdir: the run's folder; created only when the run begins (missing parents too) and
            removed again if the run failed before writing anything into it.
        progress: the benchmark's progress bars.
        store: a :class:`~lossnet.runs.store.ResultsStore`, or None.
        threads: torch intra-op threads (None: leave torch's default).

    Returns:
        The :class:`RunRecord` when the benchmark returned (status ``"done"`` or its own status such
        as ``"diverged"``) or raised an unexpected exception (status ``"failed"``, ``error`` holds
        the traceback; nothing is raised so a multi-run command can go on).

    Raises:
        LossnetError: the run is held by another live process; or the benchmark raised a
            LossnetError (bad data, weights...) -- recorded as failed first, then re-raised so the
            CLI prints its one-line message.
        KeyboardInterrupt: recorded as ``"interrupted"`` (never left ``running``), then re-raised.
    """
    if store is not None and store.claim(key, config, benchmark=benchmark_name, force=True) is None:
        holder = store.holder(key) or "another process"
        raise LossnetError(
            f"run {key} is being run right now by {holder} (results store {store.path}); wait for it to finish"
        )
    record, exc = execute_in_process(benchmark_name, config, workdir, key, progress=progress, threads=threads)
    if store is not None:
        store.record(record)
    if exc is not None and (isinstance(exc, LossnetError) or not isinstance(exc, Exception)):
        raise exc
    return record
