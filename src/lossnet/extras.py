"""Optional extras: which installed packages an application feature needs, and the one-line error
that names the extra to install when they are missing.

The core (``pip install lossnet``) needs torch, torchvision, numpy, safetensors and pillow only;
the benchmarks, sweep, report and dataset fetching need ``lossnet[bench]``; ``net="timm:..."``
loss networks need ``lossnet[timm]``.
"""

from __future__ import annotations

import importlib.util
from typing import Iterable

from lossnet.errors import LossnetError

__all__ = ["EXTRAS", "MissingExtraError", "missing", "require"]

#: extra -> the import names it provides (what :func:`require` checks).
EXTRAS: dict[str, tuple[str, ...]] = {
    "bench": ("scipy", "sklearn", "skimage", "matplotlib", "torchmetrics", "pooch", "requests", "tqdm"),
    "ray": ("ray",),
    "kaggle": ("kaggle",),
    "fast-png": ("imagecodecs",),
    # the ST-LPIPS presets read their weight files from this wheel (never import it)
    "stlpips": ("stlpips_pytorch",),
    "timm": ("timm",),
}


class MissingExtraError(LossnetError):
    """A feature needs an optional extra that is not installed."""


def missing(modules: Iterable[str]) -> list[str]:
    """The import names among ``modules`` that cannot be found (nothing is imported)."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken parent package, or a module with __spec__ None
            found = False
        if not found:
            out.append(name)
    return out


def require(extra: str, what: str, modules: Iterable[str] | None = None) -> None:
    """Raise :class:`MissingExtraError` (one line naming the pip command) when ``what`` cannot run
    because packages of ``extra`` (default: all of them) are missing."""
    gone = missing(EXTRAS[extra] if modules is None else modules)
    if gone:
        raise MissingExtraError(
            f'{what} needs the [{extra}] extra: pip install "lossnet[{extra}]" (missing: {", ".join(gone)})'
        )
