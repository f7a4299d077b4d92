"""Datasets of the four benchmarks: registry, fetching (``lossnet data``), and where they live.

For the benchmarks (cheap to import: no torch, numpy, pooch or requests)::

    from lossnet.datasets import locate, missing_error, coco_subset

    root = locate("bapps")            # Path | None: BAPPS root with 2afc/ and jnd/
    if root is None:
        raise missing_error("bapps", "similarity benchmark (BAPPS 2AFC and JND val)")

Layouts that :func:`locate` returns (relative to ``data_root()/<name>``):

* ``bapps``: ``2afc/{val,train}/<subset>/{ref,p0,p1,judge}``, ``jnd/val/<subset>/{p0,p1,same}`` (similarity ``--data``);
* ``mrd``: ``{train,valid,test}/{sat,map}/*.tif[f]`` (roads ``--data``);
* ``svhn``: ``{train,test,extra}_32x32.mat``; ``stl10``: ``{train,test,unlabeled}_X.bin``, ``{train,test}_y.bin``
  (autoencoder ``--data``);
* ``set5``, ``set14``, ``bsd100``: image folders; ``locate("bsds300", "test")``: the BSD100 JPEGs;
  ``locate("coco2014", "train")`` / ``"val"``: image folders (full or a seeded subset, see :func:`part_info`)
  (superres ``--train/--val/--test``).

Fetching: :func:`fetch` (``lossnet data fetch``), checking: :func:`verify` (``lossnet data verify``).
Sources, checksums and their provenance: :mod:`lossnet.datasets.registry` and ``docs/data.md``.
"""

from __future__ import annotations

from .registry import DATASETS, Dataset, Part, Remote, dataset_names, get_dataset
from .store import data_root, fetch_command, locate, missing_error, part_info
from .subset import coco_subset

__all__ = [
    "DATASETS",
    "Dataset",
    "Part",
    "Remote",
    "dataset_names",
    "get_dataset",
    "data_root",
    "locate",
    "missing_error",
    "fetch_command",
    "part_info",
    "coco_subset",
    "fetch",
    "verify",
    "status",
]


# The submodule is loaded here, before the function below takes its name: Python binds a package
# attribute to a submodule when that submodule is first imported, so a later
# ``import lossnet.datasets.fetch`` (the CLI, user code) would otherwise replace this function
# with the module and ``lossnet.datasets.fetch(...)`` would fail with "'module' object is not callable".
from . import fetch as _fetch_module  # noqa: E402  (stdlib-only imports; no network libraries)


def fetch(*args, **kwargs):
    """See :func:`lossnet.datasets.fetch.fetch`."""
    return _fetch_module.fetch(*args, **kwargs)


def verify(name: str, parts=None, root=None, progress=None) -> dict[str, list[str]]:
    """Re-hash the fetched parts of a dataset against their manifests.

    Returns:
        ``{part: [problems]}`` for every complete part among ``parts`` (default: all complete parts).

    Raises:
        DataError: none of the parts is fetched (the message prints the fetch command).
    """
    from lossnet.errors import DataError

    from .store import is_complete, resolve_parts, verify_part

    ds = get_dataset(name)
    chosen = resolve_parts(ds, parts) if parts else list(ds.parts)
    done = [p for p in chosen if is_complete(ds, p, root)]
    if not done:
        raise DataError(
            f"{ds.name}: nothing fetched under {root or data_root()}; fetch it with: "
            f"{fetch_command(ds.name, list(parts or []), root)}"
        )
    return {p.name: verify_part(ds, p, root, progress) for p in done}


def status(name: str, root=None) -> dict[str, str]:
    """``{part: "complete" | "partial" | "absent"}``."""
    from .store import part_status

    ds = get_dataset(name)
    return {p.name: part_status(ds, p, root) for p in ds.parts}
