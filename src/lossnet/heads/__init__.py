"""Calibrated LPIPS-style heads for any backbone (issue #20).

- :mod:`lossnet.heads.file`: the heads file (safetensors + JSON metadata), the LPIPS v0.1 export;
- :mod:`lossnet.heads.fit`: Zhang et al.'s 2AFC fitting protocol on :func:`lossnet.bench.trainer.fit`;
- :mod:`lossnet.heads.data`: BAPPS 2AFC folders and CSV judgments.

See ``docs/heads.md``.
"""

from lossnet.heads.file import HEADS_FORMAT, Heads, export_lpips_heads, heads_digest, load_heads, save_heads
from lossnet.heads.fit import HeadsFitConfig, HeadsFitResult, fit_heads

__all__ = ["HEADS_FORMAT", "Heads", "load_heads", "save_heads", "export_lpips_heads", "heads_digest", "HeadsFitConfig",
           "HeadsFitResult", "fit_heads"]
