"""Stable identity of a benchmark run: a hash of its resolved config, the content of its weights
file (when it names one) and the lossnet version.

Weight files: when ``config["weights"]`` is a file path (anything but ``"imagenet"``, ``"none"`` or
None), the sha256 of the file's *content* is mixed into the key, so overwriting a checkpoint in place
gives new runs a new key instead of silently reusing old results. The path stays part of the config,
so the same content at two different paths gives two different keys (the key never depends on what
else happens to exist on disk; renaming a file is a new run). Digests are cached per process by
``(absolute path, size, mtime_ns)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from lossnet.errors import LossnetError

__all__ = ["run_key", "canonical_json", "weights_digest", "differing_keys", "WEIGHT_LABELS", "RUNTIME_KEYS"]

#: Config keys that describe where/how a run executes, not what it computes. They are kept in the
#: stored config but excluded from the run key and from checkpoint fingerprints.
RUNTIME_KEYS = frozenset({"device", "weights_dir", "num_workers", "progress", "threads"})

#: ``weights`` values that name a source, not a file (compared case-insensitively).
WEIGHT_LABELS = ("imagenet", "none")

_DIGESTS: dict[tuple[str, int, int], str] = {}


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal strings in any process."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def weights_digest(weights: Any) -> str | None:
    """sha256 (hex) of the weights file named by a config's ``weights`` value; None for a label
    (``"imagenet"``, ``"none"``) or None.

    Raises:
        LossnetError: the value names a file that does not exist or cannot be read.
    """
    if weights is None or (isinstance(weights, str) and weights.strip().lower() in WEIGHT_LABELS):
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise LossnetError(f"weights must be 'imagenet', 'none' or a file path, got {weights!r}")
    path = Path(weights)
    try:
        st = path.stat()
    except OSError as exc:
        raise LossnetError(f"weights file not found: {weights} ({exc.strerror or exc})") from exc
    if not path.is_file():
        raise LossnetError(f"weights {weights} is not a file")
    cache_key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    digest = _DIGESTS.get(cache_key)
    if digest is None:
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as exc:
            raise LossnetError(f"cannot read weights file {weights}: {exc.strerror or exc}") from exc
        digest = _DIGESTS[cache_key] = h.hexdigest()
    return digest


def run_key(config: dict[str, Any], version: str | None = None) -> str:
    """16 hex digits of sha256 over the config (without the runtime keys of
    :data:`RUNTIME_KEYS`), the weights file's sha256 (when ``weights`` is a
    file) and the version.

    Args:
        config: a resolved benchmark config (JSON-serialisable).
        version: lossnet version to mix in; defaults to the installed one.

    Raises:
        LossnetError: ``config["weights"]`` names a missing or unreadable file.
    """
    if version is None:
        from lossnet._version import __version__ as version
    runtime = RUNTIME_KEYS
    identity = {k: v for k, v in config.items() if k not in runtime}
    payload: dict[str, Any] = {"config": identity, "lossnet": version}
    digest = weights_digest(config.get("weights"))
    if digest is not None:  # keys of configs without a weights file are unchanged
        payload["weights_sha256"] = digest
    return hashlib.sha256(canonical_json(payload).encode("ascii")).hexdigest()[:16]


def differing_keys(configs: Iterable[dict], exclude: Iterable[str] = ()) -> list[str]:
    """Sorted config keys whose value differs among ``configs`` (a key missing from some counts as
    differing), leaving out ``exclude``: what tells runs apart in ``runs list``/``export`` and the report."""
    configs = list(configs)
    skip = set(exclude)
    keys = sorted({k for c in configs for k in c} - skip)
    out = []
    for k in keys:
        seen = {(k in c, json.dumps(c.get(k), sort_keys=True, default=str)) for c in configs}
        if len(seen) > 1:
            out.append(k)
    return out
