"""Atomic file writes: write to a temporary file in the same folder, fsync, then ``os.replace``.

A reader (or a resumed run after a kill) sees either the old file or the complete new one, never a
half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    The caller writes the temporary path with any library (``torch.save``, ``safetensors``,
    ``matplotlib``...). On an exception the temporary file is removed and ``path`` is untouched.

    Errors name ``path``, never the temporary file: an :class:`OSError` about the temporary file
    (raised here or by the caller's writer) is re-raised as the same type with ``path`` as its
    file name; any other exception gets a note "while writing PATH".
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException as exc:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
        if isinstance(exc, OSError):
            renamed = _for_destination(exc, path, tmp_path)
            if renamed is not exc:
                raise renamed from exc
        if isinstance(exc, Exception) and hasattr(exc, "add_note"):
            exc.add_note(f"while writing {path}")
        raise


def _for_destination(exc: OSError, path: Path, tmp_path: Path | None) -> OSError:
    """``exc`` re-targeted at ``path`` when it names the temporary file (or no file at all): same
    type and errno, the destination as its file name. Errors about other files pass unchanged."""
    names = [os.fspath(f) for f in (exc.filename, exc.filename2) if f is not None]
    about_tmp = any(
        os.path.basename(str(n)).startswith(f".{path.name}.") or (tmp_path is not None and str(n) == str(tmp_path))
        for n in names
    )
    if exc.errno is None or (names and not about_tmp):
        if exc.errno is None and hasattr(exc, "add_note"):
            exc.add_note(f"while writing {path}")
        return exc
    try:
        return type(exc)(exc.errno, exc.strerror or str(exc), os.fspath(path))
    except TypeError:  # an OSError subclass with another constructor
        return OSError(exc.errno, exc.strerror or str(exc), os.fspath(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_save(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
