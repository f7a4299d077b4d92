"""Stable identity of a benchmark run: a hash of its resolved config with every file and folder it
names replaced by a digest of its *content*, and the lossnet version.

No path is part of the key: moving the data, a second machine with another ``$LOSSNET_DATA``, or a
copy of the same folder elsewhere keeps the key (so a shared store does not rerun finished runs), and
changing what is behind a path changes it. The values of :data:`CONTENT_KEYS` (strings, and the
strings in lists and dict values) that name an existing file or folder are replaced by:

- a file (``weights``, ``heads``, ...): ``sha256:<hex>`` of its bytes;
- a folder (``data``, superres ``train``/``val``/``test``): ``listing:<hex>``, the sha256 of its
  *listing*: every regular file below it, as its path relative to the folder and its size in bytes,
  sorted; names starting with ``.`` (the ``.lossnet`` markers of ``lossnet data fetch``, ``.DS_Store``)
  are left out. Modification times are left out on purpose: ``cp -r``, ``scp`` and a fresh
  ``lossnet data fetch`` give new mtimes to the same bytes. Contents are not hashed (a BAPPS train
  folder is 5.8 GB); an edit that keeps a file's size is therefore not seen -- give the run a new
  ``--seed`` or folder name after editing data in place.
- ``weights="imagenet"``: the sha256 of the local file it resolves to (``find_local_weights`` with the
  config's ``weights_dir``, then ``$LOSSNET_WEIGHTS_DIR``); without a local file, torchvision's
  hash-checked download, named by its enum.

The ``layer`` enters as the FX nodes it names, so an alias (``relu1``) and its E/S/M/L name (``E``)
give one key.

Digests are cached per process: files by ``(absolute path, size, mtime_ns)``, folders by absolute path.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from lossnet.errors import LossnetError

__all__ = [
    "run_key",
    "canonical_json",
    "weights_digest",
    "folder_digest",
    "content_identity",
    "differing_keys",
    "WEIGHT_LABELS",
    "CONTENT_KEYS",
    "RUNTIME_KEYS",
]

#: Config keys that describe where/how a run executes, not what it computes. They are kept in the
#: stored config but excluded from the run key and from checkpoint fingerprints.
RUNTIME_KEYS = frozenset({"device", "weights_dir", "num_workers", "progress", "threads", "deterministic"})

#: ``weights`` values that name a source, not a file (compared case-insensitively).
WEIGHT_LABELS = ("imagenet", "none")

#: Config keys whose values name files or folders (replaced by content digests in the key).
CONTENT_KEYS = ("data", "train", "val", "test", "heads", "weights")

_DIGESTS: dict[tuple[str, int, int], str] = {}
_FOLDERS: dict[str, str] = {}


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
    return _file_digest(path, st, "weights file")


def _file_digest(path: Path, st: os.stat_result, what: str) -> str:
    cache_key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    digest = _DIGESTS.get(cache_key)
    if digest is None:
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as exc:
            raise LossnetError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
        digest = _DIGESTS[cache_key] = h.hexdigest()
    return digest


def folder_digest(folder: str | os.PathLike) -> str:
    """sha256 (hex) of a folder's listing: ``<relative POSIX path>\\t<size>\\n`` for every regular file
    below it (symlinks followed), sorted, hidden names (``.`` first) left out. Cached per process."""
    top = os.path.abspath(folder)
    digest = _FOLDERS.get(top)
    if digest is not None:
        return digest
    lines = []
    for dirpath, dirs, names in os.walk(top, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith("."):
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:
                continue  # a broken link: the benchmark cannot read it either
            if os.path.isfile(full):
                rel = os.path.relpath(full, top).replace(os.sep, "/")
                lines.append(f"{rel}\t{st.st_size}\n")
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line.encode("utf-8", "surrogateescape"))
    digest = _FOLDERS[top] = h.hexdigest()
    return digest


def _content(value: Any) -> Any:
    """A path value as its content digest; other values unchanged (lists and dict values recursively)."""
    if isinstance(value, list):
        return [_content(v) for v in value]
    if isinstance(value, dict):
        return {k: _content(v) for k, v in value.items()}
    if isinstance(value, (str, os.PathLike)) and str(value) and str(value).strip().lower() not in WEIGHT_LABELS:
        path = Path(value).expanduser()
        try:
            st = path.stat()
        except (OSError, ValueError):
            return value  # not a path on this machine: the value itself is the identity
        if path.is_dir():
            return f"listing:{folder_digest(path)}"
        if path.is_file():
            return f"sha256:{_file_digest(path, st, 'file')}"
    return value


def _imagenet_identity(config: dict[str, Any]) -> str:
    """What ``weights="imagenet"`` resolves to for this config: the local file's sha256, else torchvision's."""
    net = config.get("net")
    if not isinstance(net, str) or not net:
        return "imagenet"
    try:
        from lossnet.weights import find_local_weights

        local = find_local_weights(net, config.get("weights_dir"))
    except Exception:  # an unusable weights_dir is reported by the run itself
        local = None
    if local is None:
        return f"imagenet:torchvision:{net}"
    return f"imagenet:sha256:{_file_digest(local, local.stat(), 'weights file')}"


def content_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The config as the run key sees it: :data:`CONTENT_KEYS` values naming files or folders replaced
    by content digests, ``weights="imagenet"`` by the digest of the file it resolves to."""
    out = dict(config)
    for k in CONTENT_KEYS:
        if k in out and out[k] is not None:
            out[k] = _content(out[k])
    w = config.get("weights")
    if isinstance(w, str) and w.strip().lower() == "imagenet":
        out["weights"] = _imagenet_identity(config)
    layer = _layer_nodes(config.get("net"), config.get("layer"))
    if layer is not None:
        out["layer"] = layer
    return out


def _layer_nodes(net: Any, layer: Any) -> str | None:
    """``layer`` as the FX nodes it names (``E`` and ``relu1`` of alexnet are both ``features.1``), so
    an alias and its E/S/M/L name are one run; None when it cannot be mapped (the value stays)."""
    if not isinstance(net, str) or not isinstance(layer, str) or not layer.strip():
        return None
    try:
        from lossnet.models.layers import resolve_layer

        return ",".join(resolve_layer(net, n, validate=False) for n in layer.split(",") if n.strip())
    except Exception:  # noqa: BLE001 - an unknown arch/layer is reported by the benchmark's own checks
        return None


def run_key(config: dict[str, Any], version: str | None = None) -> str:
    """16 hex digits of sha256 over :func:`content_identity` of the config (without the runtime keys
    of :data:`RUNTIME_KEYS`) and the version: no path enters the key.

    Args:
        config: a resolved benchmark config (JSON-serialisable).
        version: lossnet version to mix in; defaults to the installed one.

    Raises:
        LossnetError: ``config["weights"]`` names a missing or unreadable file.
    """
    if version is None:
        from lossnet._version import __version__ as version
    runtime = RUNTIME_KEYS
    weights_digest(config.get("weights"))  # a missing or unreadable weights file is an error, as before
    identity = {k: v for k, v in content_identity(config).items() if k not in runtime}
    payload: dict[str, Any] = {"config": identity, "lossnet": version}
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
