"""Fitting calibrated heads: Zhang et al.'s 2AFC protocol as a training task beside the benchmarks.

- :mod:`lossnet.bench.heads.fit`: the fitting task on :func:`lossnet.bench.trainer.fit`;
- :mod:`lossnet.bench.heads.data`: BAPPS 2AFC folders and CSV judgments.

The heads *file* (what a fit writes and a loss reads) is core: :mod:`lossnet.heads`.
See ``docs/heads.md``.
"""

from lossnet.bench.heads.fit import HeadsFitConfig, HeadsFitResult, fit_heads

__all__ = ["HeadsFitConfig", "HeadsFitResult", "fit_heads"]
