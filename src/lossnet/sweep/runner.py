"""The sweep driver: decide which planned runs still need running, run them, record the outcomes.

Resumption rules (the store is the single source of truth):

- ``done`` -> skipped;
- ``failed`` -> skipped unless ``retry_failed``;
- ``running`` at start -> interrupted (its driver died): run again with the same workdir
  ``runs/<key>/``, so a benchmark that checkpoints there resumes; if the worker had already written
  its ``result.json`` before the driver died, that result is recorded without re-running;
- ``queued`` or unknown -> run.

Only this driver process writes the store, one transaction per state change, so killing it at any
moment loses no recorded result and leaves no partial row.
"""

from __future__ import annotations

import collections
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from lossnet.sweep.executors import Job, Outcome, make_executor
from lossnet.sweep.grid import PlannedRun
from lossnet.sweep.store import ResultsStore
from lossnet.sweep.worker import RESULT_FILE, read_result

__all__ = ["SweepSummary", "run_sweep", "classify"]


@dataclass
class SweepSummary:
    """Counts of one ``run_sweep`` call (keys of the runs in each class)."""

    planned: int = 0
    skipped_done: list[str] = field(default_factory=list)
    skipped_failed: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # interrupted runs started again
    harvested: list[str] = field(default_factory=list)  # finished before the last driver died
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_row(self) -> dict[str, Any]:
        return {
            "planned": self.planned, "already_done": len(self.skipped_done), "failed_skipped": len(self.skipped_failed),
            "resumed": len(self.resumed), "done": len(self.done), "failed": len(self.failed), "seconds": round(self.seconds, 1),
        }


def classify(runs: Sequence[PlannedRun], statuses: dict[str, str], retry_failed: bool = False) -> dict[str, list[PlannedRun]]:
    """Split planned runs into ``skip_done``, ``skip_failed``, ``interrupted`` and ``todo``."""
    out: dict[str, list[PlannedRun]] = {"skip_done": [], "skip_failed": [], "interrupted": [], "todo": []}
    for run in runs:
        status = statuses.get(run.key)
        if status == "done":
            out["skip_done"].append(run)
        elif status == "failed" and not retry_failed:
            out["skip_failed"].append(run)
        elif status == "running":
            out["interrupted"].append(run)
        else:
            out["todo"].append(run)
    return out


def _record(store: ResultsStore, job: Job, payload: dict[str, Any]) -> bool:
    if payload.get("ok"):
        store.record_result(
            job.key, job.config,
            {"metrics": payload.get("metrics", {}), "artifacts": payload.get("artifacts", {}), "status": payload.get("status", "done")},
            started_at=payload.get("started_at"), duration_s=payload.get("duration_s"),
        )
        return payload.get("status", "done") == "done"
    store.record_failure(job.key, job.config, str(payload.get("error") or "unknown error"), duration_s=payload.get("duration_s"))
    return False


def _reason(payload: dict[str, Any]) -> str:
    """One line saying why a run failed: a traceback's last line, else the message's first."""
    if payload.get("ok"):
        return f"benchmark status {payload.get('status')}"
    lines = str(payload.get("error") or "unknown error").strip().splitlines() or ["unknown error"]
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def run_sweep(
    runs: Sequence[PlannedRun],
    store: ResultsStore,
    runs_dir: str | Path = "runs",
    *,
    executor: str = "local",
    retry_failed: bool = False,
    progress: bool = True,
    log=print,
    **executor_kwargs: Any,
) -> SweepSummary:
    """Run every planned run that is not finished yet and record each outcome as it arrives.

    Args:
        runs: planned runs (:func:`lossnet.sweep.grid.plan_file`).
        store: the results store (written by this process only).
        runs_dir: per-run folders ``runs_dir/<key>/`` (checkpoints, artifacts, ``run.log``).
        executor: ``"local"`` or ``"ray"``; ``executor_kwargs`` go to it (``workers``, ``threads``,
            ``address``, ``cpus_per_run``, ``gpus_per_run``, ``num_cpus``).
        retry_failed: run ``failed`` runs again.
        progress: one tqdm bar over the grid (done/failed/remaining in its postfix).
        log: where one-line messages go (None to silence).

    Returns:
        A :class:`SweepSummary`.
    """
    from tqdm.auto import tqdm

    t0 = time.time()
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda *_: None)
    groups = classify(runs, store.statuses(), retry_failed)
    summary = SweepSummary(
        planned=len(runs), skipped_done=[r.key for r in groups["skip_done"]], skipped_failed=[r.key for r in groups["skip_failed"]],
    )
    for run in groups["todo"]:
        store.mark_queued(run.key, run.config)

    # Interrupted runs whose worker finished before the driver died: record, do not re-run.
    pending: collections.deque[Job] = collections.deque()
    for run in groups["interrupted"] + groups["todo"]:
        job = Job(run.key, run.benchmark, run.config, runs_dir / run.key)
        payload = read_result(job.workdir, run.key)
        if run in groups["interrupted"] and payload and payload.get("ok"):
            _record(store, job, payload)
            summary.harvested.append(run.key)
            (summary.done if payload.get("status", "done") == "done" else summary.failed).append(run.key)
            continue
        if run in groups["interrupted"]:
            summary.resumed.append(run.key)
        pending.append(job)

    say(
        f"sweep: {len(runs)} runs planned, {len(summary.skipped_done)} already done, "
        f"{len(summary.skipped_failed)} failed (skipped{'' if retry_failed else '; --retry-failed to rerun'}), "
        f"{len(summary.resumed)} interrupted (resuming), {len(pending)} to run"
    )
    bar = tqdm(total=len(runs), initial=len(runs) - len(pending), desc="sweep", unit="run", disable=not progress, dynamic_ncols=True)

    def update_bar() -> None:
        bar.set_postfix(done=len(summary.skipped_done) + len(summary.done), failed=len(summary.failed) + len(summary.skipped_failed),
                        remaining=len(pending) + (ex.active if ex else 0), refresh=False)

    ex = None
    if not pending:
        bar.close()
        summary.seconds = time.time() - t0
        return summary
    ex = make_executor(executor, progress=False, **executor_kwargs)
    say(ex.describe())
    try:
        update_bar()
        while pending or ex.active:
            while pending and ex.free_slots > 0:
                job = pending.popleft()
                with contextlib.suppress(FileNotFoundError):
                    (job.workdir / RESULT_FILE).unlink()  # a stale failed result must not be read back
                store.mark_running(job.key, job.config, device=job.config.get("device"))
                ex.submit(job)
            outcomes: list[Outcome] = ex.wait(timeout=0.5)
            for outcome in outcomes:
                ok = _record(store, outcome.job, outcome.payload)
                (summary.done if ok else summary.failed).append(outcome.job.key)
                if not ok:
                    bar.write(f"run {outcome.job.key} failed: {_reason(outcome.payload)} (log: {outcome.job.workdir / 'run.log'})")
                bar.update(1)
            if outcomes:
                update_bar()
    finally:
        ex.shutdown()
        bar.close()
    summary.seconds = time.time() - t0
    return summary
