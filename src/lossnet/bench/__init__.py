"""The four benchmarks of Pihlgren et al., each a :class:`~lossnet.bench.base.Benchmark` on one harness.

A benchmark is a module with ``BENCHMARK = MyBenchmark()``, where ``MyBenchmark`` sets

- ``name`` and ``Config``: a dataclass extending :class:`~lossnet.bench.base.CommonConfig` whose
  fields are declared with :func:`~lossnet.bench.base.option` (type, range, choices, help -- the CLI
  options are generated from them);
- ``PRESETS``: ``{"paper": {...}, "quick": {...}}`` overriding the field defaults;
- ``validate(config)`` (optional) and ``run(config, workdir, *, progress) -> BenchResult``; a
  training benchmark builds a :class:`~lossnet.bench.trainer.TrainingTask` and calls
  :func:`~lossnet.bench.trainer.fit` for seeding, safe checkpoints, resume, divergence and history.

``lossnet bench NAME``, ``lossnet sweep`` and the Python API all use
:func:`~lossnet.bench.base.get_benchmark` (built-in names in ``BENCHMARKS``, or a dotted module path).
``tests/example_bench/`` is a complete fifth benchmark in one file.
"""

from lossnet.bench.base import Benchmark, BenchResult, CommonConfig, get_benchmark, list_benchmarks, option

__all__ = ["Benchmark", "BenchResult", "CommonConfig", "get_benchmark", "list_benchmarks", "option"]
