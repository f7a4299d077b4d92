"""The sweep driver: decide which planned runs still need running, claim them, run them, record them.

Resumption rules (the store is the single source of truth; see :mod:`lossnet.runs.store`):

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

from lossnet.runs.executors import Job, Outcome, make_executor
from lossnet.runs.plan import PlannedRun
from lossnet.runs.record import RunRecord
from lossnet.runs.store import ResultsStore
from lossnet.runs.worker import RESULT_FILE, read_result

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
            "planned": self.planned,
            "already_done": len(self.skipped_done),
            "failed_skipped": len(self.skipped_failed),
            "other_driver": len(self.busy),
            "resumed": len(self.resumed),
            "done": len(self.done),
            "failed": len(self.failed),
            "seconds": round(self.seconds, 1),
        }


def classify(
    runs: Sequence[PlannedRun], statuses: dict[str, str], retry_failed: bool = False
) -> dict[str, list[PlannedRun]]:
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
        runs: planned runs (:func:`lossnet.runs.plan.plan_file`).
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
    t0 = time.time()
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda *_: None)
    groups = classify(runs, store.statuses(), retry_failed)
    summary = SweepSummary(
        planned=len(runs),
        skipped_done=[r.key for r in groups["skip_done"]],
        skipped_failed=[r.key for r in groups["skip_failed"]],
        busy=[r.key for r in groups["busy"]],
    )
    pending = collections.deque(
        Job(r.key, r.benchmark, r.config, runs_dir / r.key) for r in groups["interrupted"] + groups["todo"]
    )
    # The executor first: a bad set-up (Ray address, a run size no node has) fails with no row written.
    ex = make_executor(executor, progress=False, **executor_kwargs) if pending else None
    try:
        for run in groups["todo"]:
            store.mark_queued(run.key, run.config, benchmark=run.benchmark)
    except BaseException:
        if ex is not None:
            ex.shutdown()
        raise
    say(
        f"sweep: {len(runs)} runs planned, {len(summary.skipped_done)} already done, "
        f"{len(summary.skipped_failed)} failed (skipped{'' if retry_failed else '; --retry-failed to rerun'}), "
        + (f"{len(summary.busy)} running in another driver (left to it), " if summary.busy else "")
        + f"{len(groups['interrupted'])} interrupted (resuming), {len(groups['todo'])} to run"
    )
    if ex is not None:
        say(ex.describe())
        _Driver(
            store, ex, summary, pending, len(runs), retry_before=t0 if retry_failed else None, progress=progress
        ).drive()
    if summary.busy:
        say(f"{len(summary.busy)} run(s) are being run by another driver; rerun later to collect them")
    summary.seconds = time.time() - t0
    return summary


class _Driver:
    """The claim -> submit -> record loop of one :func:`run_sweep` call over its pending jobs."""

    def __init__(
        self,
        store: ResultsStore,
        ex,
        summary: SweepSummary,
        pending: collections.deque,
        total: int,
        *,
        retry_before: float | None,
        progress: bool,
    ) -> None:
        from tqdm.auto import tqdm

        self.store, self.ex, self.summary, self.pending = store, ex, summary, pending
        self.retry_before = retry_before
        self.active: dict[str, Job] = {}
        self.bar = tqdm(
            total=total,
            initial=total - len(pending),
            desc="sweep",
            unit="run",
            disable=not progress,
            dynamic_ncols=True,
        )

    def drive(self) -> None:
        try:
            while self.pending or self.active:
                if STOP.is_set():  # a stop request whose KeyboardInterrupt was swallowed (see cli.sweep)
                    raise KeyboardInterrupt
                while self.pending and self.ex.free_slots > 0:
                    self.start(self.pending.popleft())
                self.update_bar()
                if not self.ex.active:
                    continue
                outcomes: list[Outcome] = self.ex.wait(timeout=0.5)
                for outcome in outcomes:
                    self.finish(outcome.job, outcome.record)
                    self.active.pop(outcome.job.key, None)
                if outcomes:
                    self.update_bar()
        finally:
            self.ex.shutdown()
            for job in self.active.values():  # Ctrl-C or an error: free the runs this driver held
                with contextlib.suppress(Exception):
                    self.store.record(
                        job.failure("interrupted: the sweep driver stopped before the run ended", status="interrupted")
                    )
            self.bar.close()

    def start(self, job: Job) -> None:
        """Claim the run and submit it -- or record the result its worker left before its driver died."""
        harvest = read_result(job.workdir, job.key) if self.store.status(job.key) == "interrupted" else None
        harvest = harvest if harvest is not None and harvest.finished else None
        self.active[job.key] = job  # from here on an interruption frees the run (see drive; harmless if unclaimed)
        previous = self.store.claim(
            job.key,
            job.config,
            benchmark=job.benchmark,
            retry_failed_before=self.retry_before,
            count_attempt=harvest is None,
        )
        if previous is None:
            self.active.pop(job.key)
            self.not_claimed(job)
            return
        if harvest is not None:  # the worker finished before its driver died: record, do not re-run
            self.summary.harvested.append(job.key)
            self.finish(job, harvest)
            self.active.pop(job.key)
            return
        if previous == "interrupted":
            self.summary.resumed.append(job.key)
        with contextlib.suppress(FileNotFoundError):
            (job.workdir / RESULT_FILE).unlink()  # a stale failed result must not be read back
        self.ex.submit(job)

    def not_claimed(self, job: Job) -> None:
        """Another driver got there first (it finished, failed or is running the run)."""
        status = self.store.status(job.key)
        {"done": self.summary.skipped_done, "failed": self.summary.skipped_failed}.get(
            status, self.summary.busy
        ).append(job.key)
        self.bar.update(1)

    def finish(self, job: Job, record: RunRecord) -> None:
        summary = self.summary
        if not self.store.record(record):
            summary.lost.append(job.key)
            self.bar.write(f"run {job.key}: another driver took over its lease; this result was not recorded")
        elif record.ok:
            summary.done.append(job.key)
        elif record.status == "interrupted":
            summary.interrupted.append(job.key)
            self.bar.write(f"run {job.key} was interrupted; the next 'sweep run' resumes it")
        else:
            summary.failed.append(job.key)
            self.bar.write(f"run {job.key} failed: {record.reason} (log: {job.workdir / 'run.log'})")
        self.bar.update(1)

    def update_bar(self) -> None:
        s = self.summary
        self.bar.set_postfix(
            done=len(s.skipped_done) + len(s.done),
            failed=len(s.failed) + len(s.skipped_failed),
            remaining=len(self.pending) + len(self.active),
            refresh=False,
        )
