"""The data root: where datasets live, their completion markers and manifests, ``locate`` and ``verify``.

Layout under the root (``$LOSSNET_DATA``, else the per-user cache folder, see :func:`data_root`)::

    <root>/<dataset>/...                       the files, in the layout the benchmark reads
    <root>/<dataset>/.lossnet/<part>.json      completion marker: sources, checksums, counts (written last)
    <root>/<dataset>/.lossnet/<part>.sha256    manifest: "<sha256>  <path relative to the dataset folder>"
    <root>/.lossnet-downloads/<dataset>/       downloads (``<file>.part`` while a transfer is incomplete)
    <root>/.lossnet-staging/<dataset>-<part>/  unpacking / per-file fetches before the part is moved in place

A part is *complete* exactly when its marker exists: the marker is written atomically after every file
was checked and moved in place, so a part is either complete and verified or (to every reader) absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from lossnet.errors import DataError

from .registry import Dataset, Part, get_dataset

__all__ = [
    "data_root",
    "dataset_dir",
    "marker_path",
    "manifest_path",
    "read_marker",
    "is_complete",
    "locate",
    "missing_error",
    "fetch_command",
    "part_status",
    "verify_part",
    "sha256_file",
    "resolve_parts",
    "part_info",
    "DOWNLOADS",
    "STAGING",
    "META",
]

DOWNLOADS = ".lossnet-downloads"
STAGING = ".lossnet-staging"
META = ".lossnet"
MARKER_VERSION = 1


def data_root() -> Path:
    """The folder all datasets live in: ``$LOSSNET_DATA``, else ``<user cache>/lossnet/data``
    (``~/.cache/lossnet/data`` on Linux, via platformdirs)."""
    env = os.environ.get("LOSSNET_DATA")
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("lossnet", appauthor=False))
    except ImportError:  # pragma: no cover - platformdirs comes with pooch
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lossnet"
    return base / "data"


def check_root(root: str | os.PathLike | None, given: str | None = None) -> Path:
    """The data root (``root``, else :func:`data_root`), refused when it exists and is not a folder.

    A file in its place would otherwise surface much later as an "unreadable completion marker
    <file>/<dataset>/.lossnet/..." or a failed mkdir. ``given`` names where the path came from in
    the message (the CLI passes ``"--root"``).
    """
    p = Path(root).expanduser() if root is not None else data_root()
    if p.exists() and not p.is_dir():
        if given is None:
            given = (
                "root"
                if root is not None
                else ("data root ($LOSSNET_DATA)" if os.environ.get("LOSSNET_DATA") else "data root")
            )
        raise DataError(f"{given} {p} is not a directory; give the folder that holds (or will hold) the datasets")
    return p


def dataset_dir(dataset: Dataset | str, root: str | os.PathLike | None = None) -> Path:
    name = dataset.name if isinstance(dataset, Dataset) else get_dataset(dataset).name
    return check_root(root) / name


def _safe_part_name(part: str) -> str:
    return part.replace("/", "_")


def marker_path(dataset: Dataset, part: Part, root: str | os.PathLike | None = None) -> Path:
    return dataset_dir(dataset, root) / META / f"{_safe_part_name(part.name)}.json"


def manifest_path(dataset: Dataset, part: Part, root: str | os.PathLike | None = None) -> Path:
    return dataset_dir(dataset, root) / META / f"{_safe_part_name(part.name)}.sha256"


def read_marker(dataset: Dataset, part: Part, root: str | os.PathLike | None = None) -> dict | None:
    """The completion marker of a part (a dict), or None when the part is not complete."""
    path = marker_path(dataset, part, root)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable completion marker {path}: {exc}; remove it and fetch again") from exc
    return data if isinstance(data, dict) and data.get("version") == MARKER_VERSION else None


def is_complete(dataset: Dataset, part: Part, root: str | os.PathLike | None = None) -> bool:
    marker = read_marker(dataset, part, root)
    if marker is None:
        return False
    base = dataset_dir(dataset, root)
    return all((base / p).exists() for p in marker.get("paths", []))


def resolve_parts(dataset: Dataset, parts: Iterable[str] | None) -> list[Part]:
    """Registry parts for the names given (aliases allowed), default parts when none; no duplicates."""
    if not parts:
        return list(dataset.default_parts)
    out: list[Part] = []
    for name in parts:
        p = dataset.part(name)
        if p not in out:
            out.append(p)
    return out


def locate(name: str, part: str | None = None, root: str | os.PathLike | None = None) -> Path | None:
    """The local path of a fetched and verified dataset (or one part of it), or None.

    ``part=None`` means every default part of the dataset (see ``lossnet data list``) is complete;
    the path is then the folder the benchmark reads. ``root`` defaults to :func:`data_root`.

    Layouts (what the returned folder holds):

    ========================  ===================================================================
    ``locate("bapps")``       BAPPS root: ``2afc/val/<subset>/{ref,p0,p1,judge}``, ``jnd/val/<subset>/{p0,p1,same}``
                              (``2afc/train`` too once ``lossnet data fetch bapps 2afc-train`` ran);
                              the similarity benchmark's ``--data``. Parts: ``2afc-val``, ``jnd-val``, ``2afc-train``
                              (each returns the same BAPPS root).
    ``locate("mrd")``         ``{train,valid,test}/{sat,map}/*.tif[f]``: the roads benchmark's ``--data``.
                              ``locate("mrd", "train")`` is the ``train`` folder itself.
    ``locate("svhn")``        the folder with ``train_32x32.mat``, ``test_32x32.mat``, ``extra_32x32.mat``
                              (the autoencoder benchmark's ``--data`` for svhn). A part returns its ``.mat`` file.
    ``locate("stl10")``       the folder with ``{train,test,unlabeled}_X.bin``, ``{train,test}_y.bin``.
    ``locate("set5")``        image folder ``img_001.png`` ... (likewise ``set14``, ``bsd100`` = SR crops).
    ``locate("bsds300", "test")``  the 100 BSD100 test JPEGs (the authors' BSD100); ``"train"``: 200 JPEGs.
    ``locate("coco2014", "train")`` image folder ``COCO_train2014_*.jpg`` (all, or the fetched seeded subset:
                              see :func:`part_info`); ``"val"``: ``COCO_val2014_*.jpg``.
    ========================  ===================================================================
    """
    dataset = get_dataset(name)
    base = dataset_dir(dataset, root)
    if part is None:
        parts = dataset.default_parts
        if not parts or not all(is_complete(dataset, p, root) for p in parts):
            return None
        return base
    p = dataset.part(part)
    if not is_complete(dataset, p, root):
        return None
    return base / p.path if p.path else base


def part_info(name: str, part: str, root: str | os.PathLike | None = None) -> dict | None:
    """The completion marker of a part: ``subset`` (``{"n", "seed", "of", "rule"}`` or None), ``files``,
    ``bytes``, ``sources`` (URL, checksums), ``completed``; None when the part is not complete."""
    dataset = get_dataset(name)
    return read_marker(dataset, dataset.part(part), root)


def fetch_command(name: str, parts: Iterable[str] = (), root: str | os.PathLike | None = None, extra: str = "") -> str:
    """The exact ``lossnet data fetch`` command line for a dataset (``--root`` only when not the default)."""
    cmd = ["lossnet", "data", "fetch", name, *parts]
    if root is not None and Path(root).expanduser() != data_root():
        cmd += ["--root", _quote(str(root))]
    if extra:
        cmd.append(extra)
    return " ".join(cmd)


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def missing_error(
    name: str, what: str, part: str | None = None, *, root: str | os.PathLike | None = None, extra: str = ""
) -> DataError:
    """The error for a benchmark whose dataset is not under the data root; its message prints the
    exact command that fetches it.

    Args:
        name: registry name (``bapps``, ``mrd``, ``svhn``, ``set5``...).
        what: who needs it and for what, e.g. ``"similarity benchmark: BAPPS 2AFC/JND val"``.
        part: the part needed (default: the dataset's default parts).
        root: the data root searched (default :func:`data_root`).
        extra: options appended to the command (e.g. ``"--subset paper --seed 42"``).
    """
    dataset = get_dataset(name)
    where = check_root(root)
    cmd = fetch_command(dataset.name, [part] if part else [], root, extra)
    source = (
        "--root"
        if root is not None
        else (
            "$LOSSNET_DATA"
            if os.environ.get("LOSSNET_DATA")
            else "the per-user cache; set LOSSNET_DATA to use another folder"
        )
    )
    return DataError(
        f"{what}: dataset {dataset.name!r}{f' part {part!r}' if part else ''} is not in {where} ({source}); "
        f"fetch it with: {cmd}"
    )


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        digest, _, rel = line.partition("  ")
        out.append((digest.strip(), rel))
    return out


def part_status(dataset: Dataset, part: Part, root: str | os.PathLike | None = None) -> str:
    """``complete``, ``partial`` (a resumable download or staging folder exists) or ``absent``."""
    if is_complete(dataset, part, root):
        return "complete"
    r = check_root(root)
    staging = r / STAGING / f"{dataset.name}-{_safe_part_name(part.name)}"
    downloads = r / DOWNLOADS / dataset.name
    if staging.exists() or any(
        (downloads / f"{rem.filename}.part").exists() or (downloads / rem.filename).exists() for rem in part.remotes
    ):
        return "partial"
    return "absent"


def verify_part(
    dataset: Dataset, part: Part, root: str | os.PathLike | None = None, progress: bool | None = None
) -> list[str]:
    """Re-hash every file of a complete part against its manifest.

    Returns:
        problems (empty when every file is present and matches), each naming the file and hashes.

    Raises:
        DataError: the part is not complete.
    """
    marker = read_marker(dataset, part, root)
    if marker is None:
        raise DataError(
            f"{dataset.name} {part.name}: not fetched; fetch it with: {fetch_command(dataset.name, [part.name], root)}"
        )
    base = dataset_dir(dataset, root)
    mpath = manifest_path(dataset, part, root)
    if not mpath.is_file():
        return [f"manifest {mpath} is missing"]
    problems: list[str] = []
    digest = sha256_file(mpath)
    if marker.get("manifest_sha256") and digest != marker["manifest_sha256"]:
        problems.append(
            f"manifest {mpath} changed since the fetch: sha256 {digest}, marker says {marker['manifest_sha256']}"
        )
    entries = read_manifest(mpath)
    if len(entries) != marker.get("files", len(entries)):
        problems.append(f"manifest {mpath} lists {len(entries)} files, marker says {marker.get('files')}")
    from tqdm.auto import tqdm

    total = int(marker.get("bytes") or 0)
    with tqdm(
        total=total or None,
        unit="B",
        unit_scale=True,
        desc=f"verify {dataset.name} {part.name}",
        disable=_disable(progress),
        leave=False,
    ) as bar:
        for expected, rel in entries:
            path = base / rel
            if not path.is_file():
                problems.append(f"{path}: missing")
                continue
            actual = sha256_file(path)
            bar.update(path.stat().st_size)
            if actual != expected:
                problems.append(f"{path}: sha256 {actual}, expected {expected}")
    # Files added to the part's folders since the fetch: the benchmark would read them too.
    listed = {rel for _, rel in entries}
    for top in marker.get("paths", []):
        start = base / top
        if not start.is_dir():
            continue
        for dirpath, dirs, names in os.walk(start):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                rel = (Path(dirpath) / name).relative_to(base).as_posix()
                if rel not in listed:
                    problems.append(f"{base / rel}: extra file, not in the manifest (added after the fetch)")
    return problems


def _disable(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None = show on a terminal only."""
    return None if progress is None else not progress


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def prune_empty(path: Path, stop: Path) -> None:
    """Remove ``path`` and its empty parents up to (not including) ``stop``."""
    path, stop = Path(path), Path(stop)
    while path != stop and stop in path.parents:
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent
