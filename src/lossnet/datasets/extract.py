"""Safe unpacking of tar and zip archives, hashing every file as it is written.

Only regular files and folders are ever created. Every member of the archive is checked before
anything of it is written, and the whole archive is refused (:class:`UnsafeArchiveError`) when a
member has an absolute name, a ``..`` component, is a symbolic or hard link, a device or FIFO, or
is encrypted; tar members are also passed through :func:`tarfile.data_filter` (PEP 706) where the
Python has it. Links are refused even when they point inside the root: the datasets hold none, and a
link is the usual way to make a later member land outside. File modes from the archive are ignored
(0644). The caller unpacks into a fresh staging folder and removes it on any error, so a refused
archive leaves nothing behind, inside or outside the root.

Size bound: with ``limit``, the bytes written are counted as they stream (and each member's declared
size is checked before it is written); an archive that would unpack to more is refused with
:class:`UnpackLimitError` before the disk fills (a gzip bomb of 0.5 MB can hold 500 MB of zeros).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from lossnet.errors import DataError

__all__ = ["UnsafeArchiveError", "UnpackLimitError", "safe_relpath", "extract_archive", "is_zip"]

_CHUNK = 1 << 20


class UnsafeArchiveError(DataError):
    """An archive member would write outside the target folder, or is a link or device."""


class UnpackLimitError(UnsafeArchiveError):
    """An archive unpacks to more bytes than its bound (a possible decompression bomb)."""


class _Budget:
    """Bytes still allowed to be written (None: unbounded)."""

    def __init__(self, archive: Path, limit: int | None, why: str) -> None:
        self.archive, self.limit, self.why, self.used = archive, limit, why, 0

    def check(self, more: int) -> None:
        if self.limit is not None and self.used + more > self.limit:
            from .download import format_bytes

            raise UnpackLimitError(
                f"{self.archive}: unpacks to more than {format_bytes(self.limit)}"
                f"{f' ({self.why})' if self.why else ''}; refused as a possible decompression bomb"
            )

    def add(self, n: int) -> None:
        self.check(n)
        self.used += n


def safe_relpath(name: str, archive: str | os.PathLike = "") -> str | None:
    """A member name as a safe relative POSIX path (``./`` and empty components removed), or None for
    the archive root itself.

    Raises:
        UnsafeArchiveError: absolute path, drive letter, ``..`` component or NUL byte.
    """
    raw = name.replace("\\", "/")
    if "\x00" in raw:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a NUL byte in its name; archive refused")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; archive refused")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchiveError(f"{archive}: member {name!r} points outside the target folder ('..'); archive refused")
    return "/".join(parts) if parts else None


def is_zip(path: str | os.PathLike) -> bool:
    return zipfile.is_zipfile(path)


def _target(dest: Path, rel: str) -> Path:
    target = dest.joinpath(*PurePosixPath(rel).parts)
    # Defence in depth: no component of the path may be a link (nothing here creates one).
    probe = target.parent
    while probe != dest and dest in probe.parents:
        if probe.is_symlink():
            raise UnsafeArchiveError(f"refusing to write {rel}: {probe} is a symbolic link")
        probe = probe.parent
    return target


def _write(stream, target: Path, bar, budget: _Budget | None = None) -> tuple[str, int]:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        raise UnsafeArchiveError(f"refusing to write through the symbolic link {target}")
    h = hashlib.sha256()
    n = 0
    with open(target, "wb") as out:
        while True:
            block = stream.read(_CHUNK)
            if not block:
                break
            if budget is not None:
                budget.add(len(block))  # counted as it streams: a lying header cannot get past it
            out.write(block)
            h.update(block)
            n += len(block)
            if bar is not None:
                bar.update(len(block))
    os.chmod(target, 0o644)
    return h.hexdigest(), n


def _strip(rel: str | None, prefix: str) -> str | None:
    """``rel`` without ``prefix`` (a folder path, ``""`` = take all), or None when it lies elsewhere."""
    if rel is None:
        return None
    prefix = prefix.strip("/")
    if not prefix:
        return rel
    if rel == prefix:
        return None
    if rel.startswith(prefix + "/"):
        return rel[len(prefix) + 1 :]
    return None


def _place(rel: str | None, members: str, tops: list[str]) -> str | None:
    """Where a safe member goes under ``dest`` (None: skip it); notes its top-level folder in
    ``tops`` (the first 20, for the error message when ``members`` matches nothing)."""
    if rel is None:
        return None
    top = rel.split("/", 1)[0]
    if top not in tops and len(tops) < 20:
        tops.append(top)
    return _strip(rel, members)


def extract_archive(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    members: str = "",
    *,
    progress: bool | None = None,
    desc: str | None = None,
    limit: int | None = None,
    limit_why: str = "",
) -> tuple[dict[str, str], int, list[str]]:
    """Unpack the members of ``archive`` under the prefix ``members`` into ``dest`` (prefix removed).

    Args:
        archive: a tar (any compression tarfile reads) or zip file.
        dest: an existing, empty staging folder.
        members: member-name prefix (folder) to take; ``""`` takes everything.
        progress: tqdm bar (None: on a terminal only).
        limit: most bytes the unpacked members may hold (None: no bound); ``limit_why`` says where it
            comes from, for the message.

    Returns:
        ``({relative path: sha256}, bytes written, top-level names of the archive)``.

    Raises:
        UnsafeArchiveError: a member is unsafe (the archive is refused as a whole).
        UnpackLimitError: the members taken hold more than ``limit`` bytes.
        DataError: the file is neither tar nor zip, or is corrupt.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    bar = tqdm(
        unit="B",
        unit_scale=True,
        desc=desc or f"unpack {archive.name}",
        leave=False,
        disable=None if progress is None else not progress,
    )
    budget = _Budget(archive, limit, limit_why)
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip(archive, dest, members, bar, budget)
        try:
            return _extract_tar(archive, dest, members, bar, budget)
        except tarfile.ReadError as exc:
            raise DataError(f"{archive}: not a readable tar or zip archive ({exc})") from exc
    finally:
        bar.close()


def _extract_tar(
    archive: Path, dest: Path, members: str, bar, budget: _Budget
) -> tuple[dict[str, str], int, list[str]]:
    files: dict[str, str] = {}
    total = 0
    tops: list[str] = []
    data_filter = getattr(tarfile, "data_filter", None)
    try:
        # Streaming mode: one pass over a (possibly gzip-compressed) archive, member by member.
        with tarfile.open(archive, mode="r|*") as tf:
            for m in tf:
                rel = safe_relpath(m.name, archive)
                if m.issym() or m.islnk():
                    raise UnsafeArchiveError(
                        f"{archive}: member {m.name!r} is a {'symbolic' if m.issym() else 'hard'} link "
                        f"(to {m.linkname!r}); links are not unpacked; archive refused"
                    )
                if not (m.isfile() or m.isdir()):
                    raise UnsafeArchiveError(
                        f"{archive}: member {m.name!r} is a device, FIFO or other special file; archive refused"
                    )
                if data_filter is not None:
                    try:
                        data_filter(m, str(dest))
                    except tarfile.FilterError as exc:
                        raise UnsafeArchiveError(
                            f"{archive}: member {m.name!r} refused by tarfile's data filter ({exc})"
                        ) from exc
                out = _place(rel, members, tops)
                if out is None:
                    continue
                target = _target(dest, out)
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                budget.check(m.size)  # the declared size, before a byte is written
                src = tf.extractfile(m)
                if src is None:  # pragma: no cover - isfile() members always have data
                    raise DataError(f"{archive}: cannot read member {m.name!r}")
                digest, n = _write(src, target, bar, budget)
                files[out] = digest
                total += n
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        if isinstance(exc, tarfile.ReadError) and not files and not tops:
            raise  # not a tar at all: extract_archive says so
        raise DataError(f"{archive}: corrupt or truncated archive ({exc})") from exc
    return files, total, tops


def _extract_zip(
    archive: Path, dest: Path, members: str, bar, budget: _Budget
) -> tuple[dict[str, str], int, list[str]]:
    files: dict[str, str] = {}
    total = 0
    tops: list[str] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            # Check every member before writing any.
            plan = []
            for info in infos:
                rel = safe_relpath(info.filename, archive)
                ftype = stat.S_IFMT((info.external_attr >> 16) & 0xFFFF)  # 0: no Unix file type recorded
                if ftype == stat.S_IFLNK:
                    raise UnsafeArchiveError(
                        f"{archive}: member {info.filename!r} is a symbolic link; links are not unpacked; archive refused"
                    )
                if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise UnsafeArchiveError(
                        f"{archive}: member {info.filename!r} is a device, FIFO or other special file; archive refused"
                    )
                if info.flag_bits & 0x1:
                    raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is encrypted; archive refused")
                out = _place(rel, members, tops)
                if out is not None:
                    plan.append((info, out))
            bar.total = sum(i.file_size for i, _ in plan)
            budget.check(bar.total)  # declared sizes first; the streamed bytes are counted too
            for info, out in plan:
                target = _target(dest, out)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                with zf.open(info) as src:  # zipfile checks the CRC-32 at the end of the member
                    digest, n = _write(src, target, bar, budget)
                files[out] = digest
                total += n
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: corrupt zip archive ({exc})") from exc
    return files, total, tops
