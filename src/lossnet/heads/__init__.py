"""Calibrated LPIPS-style heads for any backbone: the heads file (core).

- :mod:`lossnet.heads.file`: the heads file (safetensors + JSON metadata), the LPIPS v0.1 export.

Fitting heads is a training task of the application: :mod:`lossnet.bench.heads` (``lossnet heads fit``).
See ``docs/heads.md``.
"""

from lossnet.heads.file import HEADS_FORMAT, Heads, export_lpips_heads, heads_digest, load_heads, save_heads

__all__ = ["HEADS_FORMAT", "Heads", "load_heads", "save_heads", "export_lpips_heads", "heads_digest"]
