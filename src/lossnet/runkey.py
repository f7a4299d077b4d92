"""Stable identity of a benchmark run: a hash of its resolved config and the lossnet version."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lossnet.bench.base import RUNTIME_KEYS

__all__ = ["run_key", "canonical_json"]


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal strings in any process."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def run_key(config: dict[str, Any], version: str | None = None) -> str:
    """16 hex digits of sha256 over the config (without :data:`RUNTIME_KEYS`) and the version.

    Args:
        config: a resolved benchmark config (JSON-serialisable).
        version: lossnet version to mix in; defaults to the installed one.
    """
    if version is None:
        from lossnet import __version__ as version
    identity = {k: v for k, v in config.items() if k not in RUNTIME_KEYS}
    payload = canonical_json({"config": identity, "lossnet": version})
    return hashlib.sha256(payload.encode("ascii")).hexdigest()[:16]
