"""Sweeps: the paper's loss networks x benchmarks as a resumable grid, run locally or on Ray.

- :mod:`lossnet.sweep.grid` -- TOML grid files -> planned runs (resolved configs, run keys);
- :mod:`lossnet.sweep.store` -- the SQLite results store (:class:`ResultsStore`);
- :mod:`lossnet.sweep.runner` -- the resumable driver (:func:`run_sweep`);
- :mod:`lossnet.sweep.executors` / :mod:`lossnet.sweep.worker` -- local processes or Ray tasks.

CLI: ``lossnet sweep plan|run`` and ``lossnet runs list|show|export``.
"""

from lossnet.sweep.grid import PlannedRun, load_grid, plan_file, plan_grid
from lossnet.sweep.runner import SweepSummary, run_sweep
from lossnet.sweep.store import ResultsStore

__all__ = ["PlannedRun", "ResultsStore", "SweepSummary", "load_grid", "plan_file", "plan_grid", "run_sweep"]
