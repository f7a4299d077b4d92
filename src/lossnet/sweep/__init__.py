"""Sweeps: the paper's loss networks x benchmarks as a resumable grid, run locally or on Ray.

- :mod:`lossnet.sweep.grid` -- TOML grid files -> planned runs (resolved configs, run keys);
- :mod:`lossnet.sweep.pipeline` -- :class:`RunRecord`, the one outcome type of a run, and
  :func:`execute_point` (one run in this process, as ``lossnet bench`` does);
- :mod:`lossnet.sweep.store` -- the SQLite results store (:class:`ResultsStore`, leases);
- :mod:`lossnet.sweep.runner` -- the resumable driver (:func:`run_sweep`);
- :mod:`lossnet.sweep.executors` / :mod:`lossnet.sweep.worker` -- local processes or Ray tasks.

CLI: ``lossnet sweep plan|run`` and ``lossnet runs list|show|export``.
"""

from typing import TYPE_CHECKING

__all__ = [
    "PlannedRun", "ResultsStore", "RunRecord", "SweepSummary", "execute_point", "load_grid", "plan_file", "plan_grid", "run_sweep",
]

# Lazy attributes: importing the package must not import lossnet.sweep.worker, which runs as
# ``python -m lossnet.sweep.worker`` (runpy warns when the module is already imported).
_WHERE = {
    "PlannedRun": "grid", "load_grid": "grid", "plan_file": "grid", "plan_grid": "grid",
    "RunRecord": "pipeline", "execute_point": "pipeline",
    "SweepSummary": "runner", "run_sweep": "runner",
    "ResultsStore": "store",
}

if TYPE_CHECKING:  # pragma: no cover
    from lossnet.sweep.grid import PlannedRun, load_grid, plan_file, plan_grid
    from lossnet.sweep.pipeline import RunRecord, execute_point
    from lossnet.sweep.runner import SweepSummary, run_sweep
    from lossnet.sweep.store import ResultsStore


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(f"lossnet.sweep.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lossnet.sweep' has no attribute {name!r}")
