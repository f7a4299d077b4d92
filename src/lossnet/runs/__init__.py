"""Runs: everything about one benchmark run's life, for ``lossnet bench``, ``lossnet sweep`` and ``lossnet runs``.

- :mod:`lossnet.runs.identity` -- what a run *is*: the run key over the config's content
  (:func:`run_key`), the runtime keys left out of it, variant identity (:func:`differing_keys`);
- :mod:`lossnet.runs.plan` -- the one planner: command-line partials or TOML grid points ->
  :class:`PlannedRun` (resolved config + run key, each key once);
- :mod:`lossnet.runs.execute` -- one run in this process (:func:`execute_point`, as ``lossnet bench``
  and the worker do);
- :mod:`lossnet.runs.record` -- :class:`RunRecord`, the one outcome type of a run;
- :mod:`lossnet.runs.worker` -- the worker process (``python -m lossnet.runs.worker SPEC``) and the
  only writer of its spec file (:func:`~lossnet.runs.worker.write_spec`);
- :mod:`lossnet.runs.executors` -- local processes or Ray tasks;
- :mod:`lossnet.runs.runner` -- the resumable driver (:func:`run_sweep`);
- :mod:`lossnet.runs.store` -- the SQLite results store (:class:`ResultsStore`, leases);
- :mod:`lossnet.runs.estimate` -- a grid's projected wall time (``lossnet sweep estimate``).

CLI: ``lossnet sweep plan|estimate|run`` and ``lossnet runs list|show|export``.
"""

from typing import TYPE_CHECKING

__all__ = [
    "PlannedRun",
    "ResultsStore",
    "RunRecord",
    "SweepSummary",
    "execute_point",
    "load_grid",
    "plan_file",
    "plan_grid",
    "run_sweep",
]

# Lazy attributes: importing the package must not import lossnet.runs.worker, which runs as
# ``python -m lossnet.runs.worker`` (runpy warns when the module is already imported).
_WHERE = {
    "PlannedRun": "plan",
    "load_grid": "plan",
    "plan_file": "plan",
    "plan_grid": "plan",
    "RunRecord": "record",
    "execute_point": "execute",
    "SweepSummary": "runner",
    "run_sweep": "runner",
    "ResultsStore": "store",
}

if TYPE_CHECKING:  # pragma: no cover
    from lossnet.runs.execute import execute_point
    from lossnet.runs.plan import PlannedRun, load_grid, plan_file, plan_grid
    from lossnet.runs.record import RunRecord
    from lossnet.runs.runner import SweepSummary, run_sweep
    from lossnet.runs.store import ResultsStore


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(f"lossnet.runs.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lossnet.runs' has no attribute {name!r}")
