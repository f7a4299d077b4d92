"""The four benchmarks of Pihlgren et al. as plug-ins with one interface.

A benchmark is a module with:

- ``PRESETS: dict[str, dict]`` -- at least ``"paper"`` (the papers' hyperparameters, for a GPU) and
  ``"quick"`` (finishes in minutes on a 2-core CPU);
- ``add_arguments(parser)`` -- its own CLI options (the common ones are added by
  :func:`lossnet.bench.base.add_common_arguments`);
- ``config_from_args(args) -> dict`` -- a partial config from parsed CLI options;
- ``resolve_config(partial) -> dict`` -- the full, validated, JSON-serialisable config
  (preset expanded; raises :class:`lossnet.errors.LossnetError` on bad values);
- ``run(config, workdir, *, progress=True) -> BenchResult``.

Both ``lossnet bench NAME`` and the sweep runner call exactly these functions.
"""

from lossnet.bench.base import BenchResult, get_benchmark, list_benchmarks

__all__ = ["BenchResult", "get_benchmark", "list_benchmarks"]
