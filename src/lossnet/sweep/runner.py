"""The sweep driver: decide which planned runs still need running, claim them, run them, record them.

Resumption rules (the store is the single source of truth; see :mod:`lossnet.sweep.store`):

- ``done`` -> skipped;
- ``failed`` -> skipped unless ``retry_failed`` (then retried if it failed before this sweep began);
- ``running`` under a live owner (another driver) -> skipped, left to that driver;
- ``interrupted`` (Ctrl-C'd, or ``running`` under a dead owner) -> run again in the same workdir
  ``runs/<key>/``, so a benchmark that checkpoints there resumes; if the worker had already written
  its ``result.json`` before its driver died, that result is recorded without re-running;
- ``queued`` or unknown -> run.

A run is executed only after this driver claimed it (:meth:`ResultsStore.claim`, one atomic
transaction), just before it is submitted -- so several drivers on one store share the work and
never run a run twice or touch each other's workdirs. Each worker's :class:`RunRecord` is recorded
unchanged, one transaction per state change, so killing the driver at any moment loses no recorded
result and leaves no partial row. On Ctrl-C (or any error) the runs this driver had in flight are
recorded as ``interrupted``, free for the next driver.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from lossnet.sweep.executors import Job, Outcome, make_executor
from lossnet.sweep.grid import PlannedRun
from lossnet.sweep.pipeline import RunRecord
from lossnet.sweep.store import ResultsStore
from lossnet.sweep.worker import RESULT_FILE, read_result

#: Set by a signal handler that asked the driver to stop (checked every loop of :func:`run_sweep`).
STOP = threading.Event()

__all__ = ["SweepSummary", "run_sweep", "classify"]


@dataclass
class SweepSummary:
    """Counts of one ``run_sweep`` call (keys of the runs in each class)."""

    planned: int = 0
    skipped_done: list[str] = field(default_factory=list)
    skipped_failed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # running under another live driver: left to it
    resumed: list[str] = field(default_factory=list)  # interrupted runs started again
    harvested: list[str] = field(default_factory=list)  # finished before the last driver died
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)  # stopped (Ctrl-C of a worker): resumable
    lost: list[str] = field(default_factory=list)  # lease taken over by another driver meanwhile
    seconds: float = 0.0

    def as_row(self) -> dict[str, Any]:
        return {
            "planned": self.planned, "already_done": len(self.skipped_done), "failed_skipped": len(self.skipped_failed),
            "other_driver": len(self.busy), "resumed": len(self.resumed), "done": len(self.done), "failed": len(self.failed),
            "seconds": round(self.seconds, 1),
        }


def classify(runs: Sequence[PlannedRun], statuses: dict[str, str], retry_failed: bool = False) -> dict[str, list[PlannedRun]]:
    """Split planned runs into ``skip_done``, ``skip_failed``, ``busy`` (running under a live owner),
    ``interrupted`` and ``todo``, by the store's (effective) statuses."""
    out: dict[str, list[PlannedRun]] = {"skip_done": [], "skip_failed": [], "busy": [], "interrupted": [], "todo": []}
    for run in runs:
        status = statuses.get(run.key)
        if status == "done":
            out["skip_done"].append(run)
        elif status == "failed" and not retry_failed:
            out["skip_failed"].append(run)
        elif status == "running":
            out["busy"].append(run)
        elif status == "interrupted":
            out["interrupted"].append(run)
        else:
            out["todo"].append(run)
    return out


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
    """Run every planned run that is not finished (nor running elsewhere) and record each outcome.

    Args:
        runs: planned runs (:func:`lossnet.sweep.grid.plan_file`).
        store: the results store (other drivers may use it at the same time).
        runs_dir: per-run folders ``runs_dir/<key>/`` (checkpoints, artifacts, ``run.log``).
        executor: ``"local"`` or ``"ray"``; ``executor_kwargs`` go to it (``workers``, ``threads``,
            ``address``, ``cpus_per_run``, ``gpus_per_run``, ``num_cpus``).
        retry_failed: run ``failed`` runs again (those that failed before this call started).
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
        busy=[r.key for r in groups["busy"]],
    )
    for run in groups["todo"]:
        store.mark_queued(run.key, run.config, benchmark=run.benchmark)
    pending: collections.deque[Job] = collections.deque(
        Job(r.key, r.benchmark, r.config, runs_dir / r.key) for r in groups["interrupted"] + groups["todo"]
    )
    say(
        f"sweep: {len(runs)} runs planned, {len(summary.skipped_done)} already done, "
        f"{len(summary.skipped_failed)} failed (skipped{'' if retry_failed else '; --retry-failed to rerun'}), "
        + (f"{len(summary.busy)} running in another driver (left to it), " if summary.busy else "")
        + f"{len(groups['interrupted'])} interrupted (resuming), {len(groups['todo'])} to run"
    )
    ex = None
    if pending:  # before claiming anything: a bad executor set-up (Ray address) fails with no run touched
        ex = make_executor(executor, progress=False, **executor_kwargs)
        say(ex.describe())
    bar = tqdm(total=len(runs), initial=len(runs) - len(pending), desc="sweep", unit="run", disable=not progress, dynamic_ncols=True)
    active: dict[str, Job] = {}

    def update_bar() -> None:
        bar.set_postfix(done=len(summary.skipped_done) + len(summary.done), failed=len(summary.failed) + len(summary.skipped_failed),
                        remaining=len(pending) + len(active), refresh=False)

    def not_claimed(job: Job) -> None:
        """Another driver got there first (it finished, failed or is running the run)."""
        status = store.status(job.key)
        {"done": summary.skipped_done, "failed": summary.skipped_failed}.get(status, summary.busy).append(job.key)
        bar.update(1)

    def finish(job: Job, record: RunRecord) -> None:
        if not store.record(record):
            summary.lost.append(job.key)
            bar.write(f"run {job.key}: another driver took over its lease; this result was not recorded")
        elif record.ok:
            summary.done.append(job.key)
        elif record.status == "interrupted":
            summary.interrupted.append(job.key)
            bar.write(f"run {job.key} was interrupted; the next 'sweep run' resumes it")
        else:
            summary.failed.append(job.key)
            bar.write(f"run {job.key} failed: {record.reason} (log: {job.workdir / 'run.log'})")
        bar.update(1)

    retry_before = t0 if retry_failed else None
    try:
        while pending or active:
            if STOP.is_set():  # a stop request whose KeyboardInterrupt was swallowed (see cli.sweep)
                raise KeyboardInterrupt
            while pending and ex.free_slots > 0:
                job = pending.popleft()
                harvest = read_result(job.workdir, job.key) if store.status(job.key) == "interrupted" else None
                harvest = harvest if harvest is not None and harvest.finished else None
                active[job.key] = job  # from here on an interruption frees the run (see finally; harmless if unclaimed)
                previous = store.claim(job.key, job.config, benchmark=job.benchmark, retry_failed_before=retry_before,
                                       count_attempt=harvest is None)
                if previous is None:
                    active.pop(job.key)
                    not_claimed(job)
                    continue
                if harvest is not None:  # the worker finished before its driver died: record, do not re-run
                    summary.harvested.append(job.key)
                    finish(job, harvest)
                    active.pop(job.key)
                    continue
                if previous == "interrupted":
                    summary.resumed.append(job.key)
                with contextlib.suppress(FileNotFoundError):
                    (job.workdir / RESULT_FILE).unlink()  # a stale failed result must not be read back
                ex.submit(job)
            update_bar()
            if not ex.active:
                continue
            outcomes: list[Outcome] = ex.wait(timeout=0.5)
            for outcome in outcomes:
                finish(outcome.job, outcome.record)
                active.pop(outcome.job.key, None)
            if outcomes:
                update_bar()
    finally:
        if ex is not None:
            ex.shutdown()
        for job in active.values():  # Ctrl-C or an error: free the runs this driver held
            with contextlib.suppress(Exception):
                store.record(job.failure("interrupted: the sweep driver stopped before the run ended", status="interrupted"))
        bar.close()
    if summary.busy:
        say(f"{len(summary.busy)} run(s) are being run by another driver; rerun later to collect them")
    summary.seconds = time.time() - t0
    return summary

