"""``fetch``: download, check, unpack and install dataset parts under the data root.

Every part goes through the same steps: free-space check (before any transfer) -> download with
resume and checksum (:mod:`.download`) -> safe unpacking into a staging folder under the root
(:mod:`.extract`) -> published per-file checksums where they exist -> move into place -> manifest
and completion marker (written last). Any failure removes the staging folder, so a part is either
complete and verified or absent. What is kept for the rerun: an interrupted download's ``.part`` (with
its resume record), and a complete archive whose unpack was interrupted or hit an I/O error (Ctrl-C,
disk full): it is deleted only after its part was installed, or when it proved corrupt or unsafe.

Unpacking is bounded by :data:`UNPACK_FACTOR` times the registry's ``extracted_size`` of the part.

Concurrency: one fetch per dataset and root (a lock file that only its holder removes); fetches of
other datasets into the same root run beside it and touch only their own downloads and staging folders.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import posixpath
import queue
import sys
import threading
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Iterable, Mapping
from urllib.parse import unquote, urljoin, urlparse

from lossnet.errors import DataError

from .download import (
    DiskSpaceError,
    DownloadCancelled,
    OfflineError,
    check_free_space,
    check_mirror,
    download_remote,
    format_bytes,
    mirror_urls,
    source_path,
    thread_session,
)
from .extract import UnsafeArchiveError, extract_archive, safe_relpath
from .registry import Dataset, Part, Remote, get_dataset
from .store import (
    DOWNLOADS,
    MARKER_VERSION,
    META,
    STAGING,
    dataset_dir,
    fetch_command,
    is_complete,
    manifest_path,
    marker_path,
    prune_empty,
    read_marker,
    remove_tree,
    resolve_parts,
    sha256_file,
)
from .subset import SUBSET_RULE, coco_subset

__all__ = ["fetch", "PartResult", "parse_subset", "UNPACK_FACTOR"]

#: An archive part may unpack to at most this many times the registry's ``extracted_size`` (an
#: estimate, so a margin; a gzip bomb goes far beyond it) before the unpack is stopped and refused.
UNPACK_FACTOR = 4

_IMAGE_EXT = (".jpg", ".jpeg", ".png")


@dataclass
class PartResult:
    dataset: str
    part: str
    status: str  # "fetched" or "present"
    path: Path
    files: int
    bytes: int
    subset: dict | None = None


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_subset(values: Iterable[str] | None) -> dict[str, int | str] | int | str | None:
    """CLI ``--subset`` values: ``N``, ``paper`` or ``PART=N``/``PART=paper`` (repeatable)."""
    if not values:
        return None
    per: dict[str, int | str] = {}
    bare: int | str | None = None
    for v in values:
        key, sep, val = v.partition("=")
        target = val if sep else key
        target = target.strip().lower()
        if target != "paper":
            try:
                target = int(target)
            except ValueError:
                raise DataError(f"--subset expects N, 'paper' or PART=N, got {v!r}") from None
            if target <= 0:
                raise DataError(f"--subset must be positive, got {v!r}")
        if sep:
            per[key.strip()] = target
        else:
            bare = target
    if per:
        if bare is not None:
            per.setdefault("*", bare)
        return per
    return bare


def _subset_for(part: Part, subset, dataset: Dataset) -> int | None:
    if subset is None:
        return None
    if isinstance(subset, Mapping):
        value = None
        for key, v in subset.items():
            if key != "*" and dataset.part(key) is part:
                value = v
        if value is None:
            value = subset.get("*")
    else:
        value = subset
    if value is None:
        return None
    if not part.subset_ok:
        raise DataError(
            f"{dataset.name} {part.name}: --subset works only for zip parts that can be read member by member "
            f"({', '.join(f'{d.name} {p.name}' for d in [dataset] for p in d.parts if p.subset_ok) or 'none in this dataset'})"
        )
    if value == "paper":
        if part.paper_subset is None:
            raise DataError(f"{dataset.name} {part.name}: no paper subset size is recorded")
        return int(part.paper_subset)
    return int(value)


@contextlib.contextmanager
def _lock(root: Path, name: str):
    """One fetch of a dataset at a time under a root (advisory ``flock``; no-op where fcntl is missing).

    Only the holder removes the lock file, and only while it holds it; a fetch that is refused touches
    nothing. A holder that dies (kill -9, power loss) leaves the file but not the lock: the kernel
    releases a ``flock`` with its last descriptor, so the next fetch takes the stale file over. After
    taking the lock, the file is checked to still be the one at the path (a holder may have just
    removed it); if not, the lock is taken again on the new file.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = root / f".lossnet-lock-{name}"
    while True:
        try:
            fh = open(path, "a+")
        except OSError as exc:
            raise _write_error(exc, root) from exc
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise DataError(
                f"another 'lossnet data fetch {name}' is running on {root} (lock {path}); wait for it to finish"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fh.fileno()), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # the previous holder removed this file as we opened it: lock the current one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still held here, so no other fetch is using this file
        fh.close()


def _write_error(exc: OSError, root: Path) -> DataError:
    """One line for a data root that cannot be written (read-only file system, permissions, full disk)."""
    if exc.errno == errno.ENOSPC:
        return DiskSpaceError(
            f"disk full under {root} ({exc.filename or root}); free some space or choose another folder with "
            "--root DIR or LOSSNET_DATA, then run the same command again"
        )
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = "is on a read-only file system" if exc.errno == errno.EROFS else "is not writable (permission denied)"
        return DataError(
            f"data root {root} {why}: {exc.filename or root}; choose a writable folder with --root DIR or LOSSNET_DATA"
        )
    return DataError(f"cannot write under the data root {root}: {exc.strerror or exc} ({exc.filename or root})")


def fetch(
    dataset: str | Dataset,
    parts: Iterable[str] | None = None,
    *,
    root: str | os.PathLike | None = None,
    mirror: str | None = None,
    subset=None,
    seed: int = 42,
    source: str = "http",
    retries: int = 3,
    progress: bool | None = None,
    force: bool = False,
    keep_downloads: bool = False,
    space_check: bool = True,
    log: Callable[[str], None] | None = _stderr,
    backoff: float = 1.0,
) -> list[PartResult]:
    """Fetch parts of a dataset into the data root, in the layout the benchmarks read.

    Args:
        dataset: registry name, or a :class:`Dataset` (tests pass one pointing at a local server).
        parts: part names (default: the dataset's default parts).
        root: data root (default :func:`lossnet.datasets.data_root`).
        mirror: base URL tried before the registry's URLs (``<mirror>/<file name>``).
        subset: COCO: members per part, fetched by HTTP range requests: ``N`` or ``"paper"`` for every
            part named in ``parts``; with no part named, ``N`` goes to the first subset part (train) and
            the others take their paper size (val: 100); or ``{part: N | "paper"}``.
        seed: seed of the subset choice (:func:`lossnet.datasets.coco_subset`); a part with
            ``subset_seed_offset`` (COCO val: 1) uses ``seed + offset``, as the superres benchmark does.
        source: ``"http"`` (registry URLs) or ``"kaggle"`` (the dataset's Kaggle mirror; needs ``lossnet[kaggle]``).
        retries: resumes per file after a transfer is cut.
        progress: progress bars (None: on a terminal only).
        force: fetch again even when complete.
        keep_downloads: keep downloaded archives after unpacking.
        space_check: refuse when the free disk space is below the estimate (before any download).
        log: one-line progress messages (None: silent).

    Returns:
        one :class:`PartResult` per part.

    Raises:
        DataError (ChecksumError, OfflineError, InterruptedDownload, DiskSpaceError, UnsafeArchiveError...).
    """
    ds = dataset if isinstance(dataset, Dataset) else get_dataset(dataset)
    say = log or (lambda _m: None)
    root = Path(root).expanduser() if root is not None else None
    from .store import check_root

    base_root = check_root(root)
    check_mirror(mirror)
    chosen = resolve_parts(ds, parts)
    if subset is not None and not isinstance(subset, Mapping) and not parts:
        capable = [p for p in chosen if p.subset_ok]
        if capable:  # the issue's `fetch coco2014 --subset 10000`: 10,000 train images + the paper's 100 val images
            subset = {capable[0].name: subset, **{p.name: "paper" for p in capable[1:] if p.paper_subset}}
    wanted = {p.name: _subset_for(p, subset, ds) for p in chosen}
    if source not in ("http", "kaggle"):
        raise DataError(f"unknown --source {source!r}; use 'http' or 'kaggle'")
    if source == "kaggle":
        if ds.kaggle is None:
            raise DataError(f"{ds.name} has no Kaggle mirror; use the default source")
        if any(wanted.values()):
            raise DataError("--subset cannot be combined with --source kaggle")
    results: list[PartResult] = []
    if not force:  # every part already there: report it without a lock (a read-only root works too)
        present = _present(ds, chosen, base_root, wanted, seed)
        if len(present) == len(chosen):
            for p, _marker in present:
                say(f"{ds.name} {p.name}: already complete in {dataset_dir(ds, base_root)}")
            return [_result(ds, p, base_root, "present", m) for p, m in present]
    try:
        base_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(exc, base_root) from exc
    with _lock(base_root, ds.name):
        todo: list[Part] = []
        done = dict((p.name, m) for p, m in ([] if force else _present(ds, chosen, base_root, wanted, seed)))
        for p in chosen:
            if p.name in done:
                results.append(_result(ds, p, base_root, "present", done[p.name]))
                say(f"{ds.name} {p.name}: already complete in {dataset_dir(ds, base_root)}")
                continue
            todo.append(p)
        if not todo:
            return results
        if space_check:
            need = _space_needed(ds, todo, base_root, wanted, source)
            check_free_space(base_root, need, f"{ds.name} {' '.join(p.name for p in todo)}")
        installed: set[Path] = set()  # archives whose part was installed
        unfinished = list(todo)
        try:
            if source == "kaggle":
                results += _fetch_kaggle(ds, todo, base_root, progress, say, keep_downloads)
            else:
                for p in todo:
                    _clear_leftovers(ds, p, base_root)
                    n = wanted[p.name]
                    if n is not None:
                        results.append(
                            _fetch_subset(
                                ds,
                                p,
                                base_root,
                                n,
                                seed + p.subset_seed_offset,
                                mirror,
                                retries,
                                progress,
                                say,
                                space_check,
                            )
                        )
                    elif p.kind == "archive":
                        results.append(
                            _fetch_archive(ds, p, base_root, mirror, retries, progress, say, installed, backoff)
                        )
                    elif p.kind == "file":
                        results.append(_fetch_files(ds, p, base_root, mirror, retries, progress, say, backoff))
                    elif p.kind == "listing":
                        results.append(_fetch_listing(ds, p, base_root, mirror, retries, progress, say, backoff))
                    else:  # pragma: no cover - registry error
                        raise DataError(f"{ds.name} {p.name}: unknown part kind {p.kind!r}")
                    unfinished.remove(p)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM):
                raise _write_error(exc, base_root) from exc
            raise
        finally:
            if not keep_downloads:  # an archive still needed by a part not installed stays for the rerun
                needed = {r.filename for p in unfinished for r in p.remotes}
                for a in installed:
                    if a.name not in needed:
                        _drop_archive(a)
            _prune(base_root, ds)
    return results


def _present(ds: Dataset, chosen: list[Part], root: Path, wanted: dict, seed: int) -> list[tuple[Part, dict]]:
    """The parts already complete (and serving the request), with their markers."""
    out = []
    for p in chosen:
        marker = read_marker(ds, p, root)
        if (
            marker is not None
            and is_complete(ds, p, root)
            and _satisfies(marker, wanted[p.name], seed + p.subset_seed_offset)
        ):
            out.append((p, marker))
    return out


def _prune(root: Path, ds: Dataset) -> None:
    """Remove the empty folders this fetch may leave: its dataset's downloads folder, the staging
    folders of its parts, then the two top folders when empty, so a failed fetch of a new dataset
    leaves nothing under the root. Other datasets' folders are never walked: a concurrent fetch of
    another dataset may have just created an (empty) staging folder."""
    mine = [root / DOWNLOADS / ds.name]
    for p in ds.parts:
        mine += [_staging(root, ds, p), _staging(root, ds, p, "-subset")]
    for top in mine:
        if top.is_dir():
            for dirpath, _dirs, _files in os.walk(top, topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
    for top in (root / DOWNLOADS, root / STAGING):
        with contextlib.suppress(OSError):
            top.rmdir()  # only when empty
    ddir = dataset_dir(ds, root)
    prune_empty(ddir / META, root)
    prune_empty(ddir, root)


def _satisfies(marker: dict, n: int | None, seed: int) -> bool:
    """Whether a complete part serves the request: the full set serves any subset (the benchmark's
    seeded choice from the full folder is the same), a subset serves only the same (n, seed)."""
    have = marker.get("subset")
    if have is None:
        return True
    if n is None:
        return False
    return have.get("requested", have.get("n")) == n and have.get("seed") == seed


def _result(ds: Dataset, p: Part, root: Path, status: str, marker: dict) -> PartResult:
    base = dataset_dir(ds, root)
    return PartResult(
        ds.name,
        p.name,
        status,
        base / p.path if p.path else base,
        int(marker.get("files", 0)),
        int(marker.get("bytes", 0)),
        marker.get("subset"),
    )


def _space_needed(ds: Dataset, todo: list[Part], root: Path, wanted: dict, source: str) -> int:
    if source == "kaggle":
        kag = ds.kaggle
        return int(kag.approx_size) + sum(p.extracted_size or 0 for p in todo)
    need = 0
    seen: set[str] = set()
    downloads = root / DOWNLOADS / ds.name
    for p in todo:
        if wanted[p.name] is not None:
            continue  # checked exactly once the central directory is read
        for r in p.remotes:
            if r.filename in seen:
                continue
            seen.add(r.filename)
            have = 0
            for f in (downloads / r.filename, downloads / f"{r.filename}.part"):
                if f.exists():
                    have = max(have, f.stat().st_size)
            need += max(r.nbytes - have, 0)
        if p.kind == "archive":
            need += p.extracted_size
    return need


def _pending_path(ds: Dataset, p: Part, root: Path) -> Path:
    return dataset_dir(ds, root) / META / f"{p.name.replace('/', '_')}.pending"


def _remove_listed(base: Path, rels: Iterable[str]) -> None:
    for rel in rels:
        target = base / rel
        resolved = target.resolve()
        if resolved != base.resolve() and base.resolve() in resolved.parents:
            remove_tree(target)


def _clear_leftovers(ds: Dataset, p: Part, root: Path) -> None:
    """Remove what an install that died half-way left (its ``.pending`` list); a complete part is kept
    until its replacement is ready (:func:`_install`)."""
    base = dataset_dir(ds, root)
    pending = _pending_path(ds, p, root)
    if not pending.exists():
        return
    if read_marker(ds, p, root) is None:
        with contextlib.suppress(OSError, ValueError):
            _remove_listed(base, json.loads(pending.read_text()))
        manifest_path(ds, p, root).unlink(missing_ok=True)
    pending.unlink(missing_ok=True)


def _install(
    ds: Dataset,
    p: Part,
    root: Path,
    content: Path,
    files: dict[str, str],
    nbytes: int,
    sources: list[dict],
    subset: dict | None = None,
) -> PartResult:
    """Move the staged files of a part into place, then write its manifest and (last) its marker."""
    from lossnet.atomic import atomic_write_text

    base = dataset_dir(ds, root)
    meta = base / META
    meta.mkdir(parents=True, exist_ok=True)
    if p.dest:
        tops = [p.dest]
        moves = [(content, base / p.dest)]
    else:
        tops = sorted(c.name for c in content.iterdir())
        moves = [(content / t, base / t) for t in tops]
    # A previous copy of the part (another subset, --force) goes first: marker, then its files.
    old = read_marker(ds, p, root)
    marker_path(ds, p, root).unlink(missing_ok=True)
    pending = _pending_path(ds, p, root)
    atomic_write_text(pending, json.dumps(sorted(set(tops) | set(old.get("paths", []) if old else []))))
    if old:
        _remove_listed(base, old.get("paths", []))
    for src, dst in moves:
        remove_tree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    prefix = p.dest
    lines = [f"{digest}  {posixpath.join(prefix, rel) if prefix else rel}" for rel, digest in sorted(files.items())]
    manifest = "\n".join(lines) + "\n"
    atomic_write_text(manifest_path(ds, p, root), manifest)
    marker = {
        "version": MARKER_VERSION,
        "dataset": ds.name,
        "part": p.name,
        "completed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": len(files),
        "bytes": nbytes,
        "paths": tops,
        "manifest_sha256": hashlib.sha256(manifest.encode("utf-8")).hexdigest(),
        "subset": subset,
        "sources": sources,
    }
    atomic_write_text(marker_path(ds, p, root), json.dumps(marker, indent=2) + "\n")
    pending.unlink(missing_ok=True)
    return _result(ds, p, root, "fetched", marker)


def _source_record(remote: Remote, path: Path | None, url: str | None = None, used: dict | None = None) -> dict:
    """What the marker says about one downloaded file: the URL its bytes came from (``url``, or
    ``used`` as filled by :func:`download_remote`), its size and sha256, the published checksums."""
    if used is not None:
        url = used.get("url")
    rec = {"file": remote.filename, "urls": [url] if url else ([] if used is not None else list(remote.urls))}
    if used is not None and not url:
        rec["origin"] = "a file found in the downloads folder (placed by hand); its URL is unknown"
    if path is not None and path.exists():
        rec["size"] = path.stat().st_size
        rec["sha256"] = sha256_file(path)
    if remote.md5:
        rec["md5_published"] = remote.md5
    if remote.sha256:
        rec["sha256_registry"] = remote.sha256
    rec["checksum_source"] = remote.checksum_source
    return rec


def _staging(root: Path, ds: Dataset, p: Part, suffix: str = "") -> Path:
    return root / STAGING / f"{ds.name}-{p.name.replace('/', '_')}{suffix}"


def _fetch_archive(
    ds: Dataset, p: Part, root: Path, mirror, retries, progress, say, installed: set, backoff
) -> PartResult:
    remote = p.remotes[0]
    downloads = root / DOWNLOADS / ds.name
    say(
        f"{ds.name} {p.name}: downloading {remote.filename} ({format_bytes(remote.nbytes)}{'' if remote.size else ', estimate'})"
    )
    used: dict = {}
    archive = download_remote(
        remote,
        downloads,
        mirror=mirror,
        retries=retries,
        progress=progress,
        what=f"{ds.name} {p.name}",
        command=fetch_command(ds.name, [p.name], root),
        backoff=backoff,
        source=used,
    )
    source = _source_record(remote, archive, used=used)
    staging = _staging(root, ds, p)
    remove_tree(staging)
    content = staging / "content"
    limit = UNPACK_FACTOR * p.extracted_size if p.extracted_size else None
    try:
        say(f"{ds.name} {p.name}: unpacking {archive.name}")
        files, nbytes, tops = extract_archive(
            archive,
            content,
            p.members,
            progress=progress,
            desc=f"unpack {ds.name} {p.name}",
            limit=limit,
            limit_why=f"{UNPACK_FACTOR}x the registry's estimate of {format_bytes(p.extracted_size)} for {ds.name} {p.name}",
        )
        if not files:
            raise DataError(
                f"{archive}: no files under {p.members or '/'!r} (top-level entries: {', '.join(tops) or 'none'}); "
                "the archive does not have the expected layout"
            )
        _check_member_md5(p, content, archive)
        result = _install(ds, p, root, content, files, nbytes, [source])
    except DataError:
        # The archive itself is bad (corrupt, unsafe, too large, wrong layout or member checksums):
        # keeping it would only reuse it on the next run.
        _drop_archive(archive)
        raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskSpaceError(
                f"disk full while unpacking {archive.name} into {staging}; the downloaded archive is kept "
                f"({archive}): free some space and run {fetch_command(ds.name, [p.name], root)} again "
                "(no new download)"
            ) from exc
        raise  # kept, like after Ctrl-C: the rerun unpacks it without a download
    finally:
        remove_tree(staging)
    installed.add(archive)  # deleted by fetch() once no other part of this run needs it
    return result


def _drop_archive(archive: Path) -> None:
    with contextlib.suppress(OSError):
        archive.unlink()
    with contextlib.suppress(OSError):
        source_path(archive).unlink()


def _check_member_md5(p: Part, content: Path, archive: Path) -> None:
    for rel, md5 in p.member_md5:
        f = content / rel
        if not f.is_file():
            raise DataError(f"{archive}: expected file {rel} is missing after unpacking")
        h = hashlib.md5()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != md5:
            raise DataError(
                f"checksum mismatch for {rel} unpacked from {archive.name}: expected md5:{md5}, got md5:{h.hexdigest()}"
            )


def _fetch_files(ds: Dataset, p: Part, root: Path, mirror, retries, progress, say, backoff) -> PartResult:
    downloads = root / DOWNLOADS / ds.name
    staging = _staging(root, ds, p)
    content = staging / "content"
    content.mkdir(parents=True, exist_ok=True)
    say(
        f"{ds.name} {p.name}: downloading {len(p.remotes)} file{'s' if len(p.remotes) != 1 else ''} "
        f"({format_bytes(p.download_size)})"
    )
    sources = []
    origins = _read_origins(staging)
    try:
        for remote in p.remotes:
            target = content / remote.filename
            if not target.exists():  # files are moved here only after their checksum passed
                used: dict = {}
                path = download_remote(
                    remote,
                    downloads,
                    mirror=mirror,
                    retries=retries,
                    progress=progress,
                    what=f"{ds.name} {p.name}",
                    command=fetch_command(ds.name, [p.name], root),
                    manual_hint=(
                        f"The part has {len(p.remotes)} files (every URL: lossnet data list --sources); "
                        f"place each in {downloads}"
                        if len(p.remotes) > 1
                        else ""
                    ),
                    backoff=backoff,
                    source=used,
                )
                os.replace(path, target)
                source_path(path).unlink(missing_ok=True)
                origins[remote.filename] = used
                _write_origins(staging, origins)  # a later run that finds the file staged still knows its URL
            sources.append(_source_record(remote, target, used=origins.get(remote.filename, {})))
        files = {r.filename: s["sha256"] for r, s in zip(p.remotes, sources)}
        nbytes = sum(s["size"] for s in sources)
        result = _install(ds, p, root, content, files, nbytes, sources)
    except (OfflineError, KeyboardInterrupt, DownloadCancelled):
        raise  # verified files already staged are kept: the next run continues with the rest
    except BaseException:
        remove_tree(staging)
        raise
    remove_tree(staging)
    return result


def _read_origins(staging: Path) -> dict:
    try:
        data = json.loads((staging / "origins.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_origins(staging: Path, origins: dict) -> None:
    from lossnet.atomic import atomic_write_text

    atomic_write_text(staging / "origins.json", json.dumps(origins, sort_keys=True))


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag.lower() == "a":
            for k, v in attrs:
                if k.lower() == "href" and v:
                    self.hrefs.append(v)


def _listing(html: str, index_url: str, exts: tuple[str, ...]) -> list[tuple[str, str]]:
    """(file name, URL) of every link with one of ``exts``; the file is fetched from the folder of the
    index page actually read (so a mirror serves the files too)."""
    parser = _Links()
    parser.feed(html)
    out: dict[str, str] = {}
    for href in parser.hrefs:
        name = unquote(posixpath.basename(urlparse(href).path))
        if not name or not name.lower().endswith(exts) or name.startswith("."):
            continue
        safe_relpath(name)  # no separators or '..' can hide in a basename, but be explicit
        out.setdefault(name, urljoin(index_url, name))
    return sorted(out.items())


def _get_index(urls: list[str], what: str, manual: str) -> tuple[str, str]:
    import requests

    failures = []
    for url in urls:
        try:
            r = thread_session().get(url, timeout=(15, 60))
            if r.status_code >= 400:
                failures.append(f"{url} (HTTP {r.status_code})")
                continue
            return r.text, r.url or url
        except requests.RequestException as exc:
            failures.append(f"{url} ({type(exc).__name__})")
    raise OfflineError(
        f"cannot read the file list of {what}: no source reachable (offline?). Tried: {'; '.join(failures)}. "
        f"Manual steps: {manual}"
    )


def _parallel_files(fn, items: list, workers: int, desc: str, progress: bool | None, stop: threading.Event) -> None:
    """:func:`_parallel` under a per-file progress bar (``progress`` None: only on a terminal)."""
    from tqdm.auto import tqdm

    with tqdm(
        total=len(items), unit="file", desc=desc, leave=False, disable=None if progress is None else not progress
    ) as bar:
        _parallel(fn, items, workers, bar, stop)


def _parallel(fn, items: list, workers: int, bar=None, stop: threading.Event | None = None, grace: float = 2.0) -> None:
    """Run ``fn(item)`` for every item on ``workers`` threads; the first error (or Ctrl-C) stops the rest.

    Why not ThreadPoolExecutor: its worker threads are joined at interpreter exit, so after Ctrl-C
    the process waited for every in-flight transfer (57 s at 50 KB/s, up to the 60 s read timeout per
    thread on a stalled server). Here the workers are daemon threads that check ``stop`` between two
    reads; on an error the event is set, the workers get ``grace`` seconds to leave their files
    consistent, and the error is raised at once after that.
    """
    if not items:
        return
    if workers <= 1 or len(items) == 1:
        for it in items:
            fn(it)
            if bar is not None:
                bar.update(1)
        return
    stop = stop or threading.Event()
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for it in items:
        todo.put(it)
    done: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        while not stop.is_set():
            try:
                it = todo.get_nowait()
            except queue.Empty:
                return
            try:
                fn(it)
            except BaseException as exc:  # handed to the caller's thread
                done.put(exc)
                return
            done.put(None)

    threads = [
        threading.Thread(target=work, daemon=True, name=f"lossnet-fetch-{i}") for i in range(min(workers, len(items)))
    ]
    for t in threads:
        t.start()
    try:
        finished = 0
        while finished < len(items):
            try:
                exc = done.get(timeout=0.2)  # a timeout keeps the wait interruptible by Ctrl-C
            except queue.Empty:
                if not any(t.is_alive() for t in threads) and done.empty():
                    raise DataError("fetch workers stopped without finishing") from None  # pragma: no cover - defensive
                continue
            if exc is not None:
                raise exc
            finished += 1
            if bar is not None:
                bar.update(1)
    except BaseException:
        stop.set()
        deadline = time.monotonic() + grace
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        raise


def _fetch_listing(
    ds: Dataset, p: Part, root: Path, mirror, retries, progress, say, backoff, workers: int = 4
) -> PartResult:

    downloads = root / DOWNLOADS / ds.name / p.name
    staging = _staging(root, ds, p)
    content = staging / "content"
    files: dict[str, str] = {}
    sources = []
    for remote in p.remotes:
        sub = content / remote.filename
        sub.mkdir(parents=True, exist_ok=True)
        rel_index = f"{p.dest}/{remote.filename}/index.html"
        manual = (
            f"download every {'/'.join(p.listing_ext)} file linked from {remote.urls[0]} into "
            f"{sub} (one folder per index page), then run {fetch_command(ds.name, [p.name], root)} again"
        )
        html, index_url = _get_index(
            mirror_urls(remote, mirror, rel_index), f"{ds.name} {p.name}/{remote.filename}", manual
        )
        entries = _listing(html, index_url, p.listing_ext)
        if not entries:
            raise DataError(f"{index_url}: the page links no {'/'.join(p.listing_ext)} files")
        todo = [(n, u) for n, u in entries if not (sub / n).exists()]
        say(f"{ds.name} {p.name}/{remote.filename}: {len(entries)} files listed, {len(todo)} to download")

        stop = threading.Event()

        def one(item, sub=sub, stop=stop):
            name, url = item
            r = Remote(name, (url,))
            path = download_remote(
                r,
                downloads / remote.filename,
                retries=retries,
                progress=False,
                what=f"{ds.name} {p.name} {name}",
                backoff=backoff,
                stop=stop,
            )
            os.replace(path, sub / name)
            source_path(path).unlink(missing_ok=True)

        _parallel_files(one, todo, workers, f"{ds.name} {p.name}/{remote.filename}", progress, stop)
        sources.append(
            {
                "file": remote.filename,
                "urls": [index_url],
                "listed": len(entries),
                "checksum_source": remote.checksum_source,
            }
        )
        for name, _ in entries:
            files[f"{remote.filename}/{name}"] = sha256_file(sub / name)
    nbytes = sum((content / rel).stat().st_size for rel in files)
    result = _install(ds, p, root, content, files, nbytes, sources)
    remove_tree(staging)
    return result


def _fetch_subset(
    ds: Dataset, p: Part, root: Path, n: int, seed: int, mirror, retries, progress, say, space_check, workers: int = 8
) -> PartResult:
    import requests

    from .remotezip import RemoteZip

    remote = p.remotes[0]
    failures = []
    rz = entries = None
    for url in mirror_urls(remote, mirror):
        try:
            rz = RemoteZip(url)
            entries = rz.entries()
            break
        except requests.HTTPError as exc:
            failures.append(f"{url} ({exc.response.status_code if exc.response is not None else 'HTTP error'})")
        except requests.RequestException as exc:  # refused, timeout, invalid URL or redirect, redirect loop
            failures.append(f"{url} ({type(exc).__name__})")
    if entries is None:
        raise OfflineError(
            f"cannot read the member list of {remote.filename} ({ds.name} {p.name} --subset {n}): no source reachable "
            f"(offline?). Tried: {'; '.join(failures)}. Manual steps: download {remote.filename} from {remote.urls[0]}, "
            f"copy it to {root / DOWNLOADS / ds.name / remote.filename} and run "
            f"{fetch_command(ds.name, [p.name], root)} (the whole archive, without --subset)"
        )
    prefix = p.members.strip("/")
    candidates = {}
    for e in entries:
        if e.is_dir or not e.name.lower().endswith(_IMAGE_EXT):
            continue
        rel = safe_relpath(e.name, remote.filename)
        if rel is None or (prefix and not rel.startswith(prefix + "/")):
            continue
        if ((e.external_attr >> 16) & 0o170000) == 0o120000:
            raise UnsafeArchiveError(f"{remote.filename}: member {e.name!r} is a symbolic link; refused")
        candidates[e.name] = e
    if not candidates:
        raise DataError(f"{rz.url}: no image members under {p.members!r}")
    if n > len(candidates):
        say(
            f"{ds.name} {p.name}: --subset {n} asked for more members than {remote.filename} has under {p.members!r} "
            f"({len(candidates)}): fetching all {len(candidates)}"
        )
    chosen = coco_subset(list(candidates), n, seed)
    need = sum(candidates[c].file_size for c in chosen)
    staging = _staging(root, ds, p, "-subset")
    content = staging / "content"
    meta = staging / "subset.json"
    want = {"n": n, "seed": seed, "of": len(candidates), "url_file": remote.filename}
    if meta.exists():
        try:
            same = json.loads(meta.read_text()) == want
        except (OSError, ValueError):
            same = False
        if not same:
            remove_tree(staging)
    have = sum((content / _strip(c, prefix)).stat().st_size for c in chosen if (content / _strip(c, prefix)).is_file())
    if space_check:
        check_free_space(root, need - have, f"{ds.name} {p.name} subset of {n}")
    content.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(want))
    todo = [c for c in chosen if not (content / _strip(c, prefix)).is_file()]
    say(
        f"{ds.name} {p.name}: {len(chosen)} of {len(candidates)} members (seed {seed}), {len(todo)} to download "
        f"({format_bytes(sum(candidates[c].compressed_size for c in todo))}) by range requests from {rz.url}"
    )

    stop = threading.Event()

    def one(name: str) -> None:
        e = candidates[name]
        target = content / _strip(name, prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        last = None
        for _ in range(retries + 1):
            try:
                with open(tmp, "wb") as fh:  # streamed: memory stays a few blocks per member
                    rz.extract(e, fh, session=thread_session(), stop=stop)
                break
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                last = exc
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        else:
            tmp.unlink(missing_ok=True)
            raise DataError(
                f"{rz.url}: member {name} failed {retries + 1} times ({last}); run the same command again to resume"
            )
        os.replace(tmp, target)

    _parallel_files(one, todo, workers, f"{ds.name} {p.name} subset", progress, stop)
    files = {_strip(c, prefix): sha256_file(content / _strip(c, prefix)) for c in chosen}
    nbytes = sum(candidates[c].file_size for c in chosen)
    subset = {"n": len(chosen), "seed": seed, "of": len(candidates), "rule": SUBSET_RULE, "requested": n}
    sources = [
        {
            "file": remote.filename,
            "urls": [rz.url],
            "members": len(chosen),
            "bytes_transferred": rz.bytes_received,
            "checksum_source": "CRC-32 of each member from the zip central directory",
        }
    ]
    result = _install(ds, p, root, content, files, nbytes, sources, subset)
    remove_tree(staging)
    return result


def _strip(name: str, prefix: str) -> str:
    rel = safe_relpath(name) or ""
    return rel[len(prefix) + 1 :] if prefix and rel.startswith(prefix + "/") else rel


# ------------------------------------------------------------------------------------------------
# Kaggle (optional extra)
# ------------------------------------------------------------------------------------------------
def kaggle_credentials_problem() -> str | None:
    """None when Kaggle API credentials are configured, else what is missing."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return None
    if os.environ.get("KAGGLE_API_TOKEN"):
        return None
    dirs = [os.environ.get("KAGGLE_CONFIG_DIR"), Path.home() / ".kaggle", Path.home() / ".config" / "kaggle"]
    for d in dirs:
        if d and ((Path(d) / "kaggle.json").is_file() or (Path(d) / "access_token").is_file()):
            return None
    return (
        "no Kaggle API credentials: create a token at https://www.kaggle.com/settings (API -> Create New Token) and save "
        "it as ~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY"
    )


def _fetch_kaggle(ds: Dataset, todo: list[Part], root: Path, progress, say, keep_downloads: bool) -> list[PartResult]:
    import importlib.util

    kag = ds.kaggle
    if importlib.util.find_spec("kaggle") is None:
        raise DataError("--source kaggle needs the kaggle package: pip install 'lossnet[kaggle]'")
    problem = kaggle_credentials_problem()
    if problem:
        raise DataError(f"--source kaggle: {problem}")
    downloads = root / DOWNLOADS / ds.name
    downloads.mkdir(parents=True, exist_ok=True)
    from kaggle.api.kaggle_api_extended import KaggleApi  # authenticates from the credentials above

    api = KaggleApi()
    api.authenticate()
    say(f"{ds.name}: downloading the Kaggle dataset {kag.slug} (about {format_bytes(kag.approx_size)})")
    api.dataset_download_files(kag.slug, path=str(downloads), unzip=False, quiet=progress is False)
    zips = sorted(downloads.glob("*.zip"))
    if not zips:
        raise DataError(f"the Kaggle download of {kag.slug} left no zip file in {downloads}")
    archive = zips[0]
    results = []
    remote = Remote(archive.name, (f"https://www.kaggle.com/datasets/{kag.slug}",))
    source = _source_record(remote, archive)
    try:
        for p in todo:
            _clear_leftovers(ds, p, root)
            prefix = kag.prefix(p.name)
            if prefix is None:
                raise DataError(f"the Kaggle mirror of {ds.name} has no part {p.name}")
            staging = _staging(root, ds, p)
            remove_tree(staging)
            try:
                files, nbytes, tops = extract_archive(archive, staging / "content", prefix, progress=progress)
                if not files:
                    raise DataError(f"{archive}: no files under {prefix!r} (top-level entries: {', '.join(tops)})")
                results.append(_install(ds, p, root, staging / "content", files, nbytes, [source]))
            finally:
                remove_tree(staging)
    finally:
        if not keep_downloads:
            archive.unlink(missing_ok=True)
    return results
