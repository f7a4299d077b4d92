"""The four benchmarks of Pihlgren et al., each a :class:`~lossnet.bench.base.Benchmark` on one harness.

A benchmark is a module with ``BENCHMARK = MyBenchmark()``, where ``MyBenchmark`` sets

- ``name`` and ``Config``: a dataclass extending :class:`~lossnet.bench.base.CommonConfig` whose
  fields are declared with :func:`~lossnet.bench.base.option` (type, range, choices, help -- the CLI
  options are generated from them);
- ``PRESETS``: ``{"paper": {...}, "quick": {...}}`` overriding the field defaults;
- ``validate(config)`` (optional) and ``run(config, workdir, *, progress) -> BenchResult``; both
  receive an instance of ``Config`` (``config.epochs``: attributes a type checker knows; configs are
  dicts only at the run key, the store, the worker spec and the checkpoint fingerprint). A training
  benchmark builds a :class:`~lossnet.bench.trainer.TrainingTask` (its ``batches`` and ``step``) and
  calls :func:`~lossnet.bench.trainer.fit`, which owns the loop: seeding, mixed precision,
  channels_last, safe checkpoints, resume, divergence and history;
- optional hooks for ``lossnet sweep estimate``, ``--profile`` and the report (``time_steps``,
  ``training_setup``, ``reduced_config``, ``synthetic_data``, ``scale_to_real``, ``trains``,
  ``paper_benchmark``): nothing outside a benchmark's package switches on its name.

``lossnet bench NAME``, ``lossnet sweep`` and the Python API all use
:func:`~lossnet.bench.base.get_benchmark` (built-in names in ``BENCHMARKS``, or a dotted module path).
``tests/example_bench/`` is a complete fifth benchmark in two files (config + run, and its training task).
"""

from lossnet.bench.base import Benchmark, BenchResult, CommonConfig, get_benchmark, list_benchmarks, option

__all__ = ["Benchmark", "BenchResult", "CommonConfig", "get_benchmark", "list_benchmarks", "option"]
