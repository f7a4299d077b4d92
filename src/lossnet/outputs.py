"""One rule for every output path a command writes (``--json``, ``--store``, ``-o/--out``,
``--runs-dir``), checked *before* any work starts so a long run never fails at its very end.

Files (:func:`check_output_file`):

- the folder the file goes into must already exist and be writable -- a missing folder tree is
  *not* created silently (a typo such as ``--json reslts/x.json`` is reported, not obeyed);
- the target must not be an existing directory; an existing file must be writable (it is replaced).

Directories (:func:`check_output_dir`):

- the target must not be an existing file; an existing directory must be writable;
- a missing directory is created later by the command, so its parent folder must exist and be
  writable (again: one level, no silent trees).

Errors are :class:`~lossnet.errors.LossnetError` naming the option (``what``) and the user's path
exactly as given. Nothing is left behind by the checks: besides ``os.access``, which trusts root
everywhere (``--json /proc/x.json`` passed it and failed after the run), a probe file is created in
the folder and removed at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from lossnet.errors import LossnetError

__all__ = ["check_output_file", "check_output_dir"]


def _describe(what: str, path: str | os.PathLike) -> str:
    return f"{what} {os.fspath(path)}" if what else os.fspath(path)


def _check_parent(path: Path, label: str) -> None:
    parent = Path(os.path.abspath(path)).parent
    shown = path.parent if str(path.parent) not in ("", ".") else parent
    if not parent.exists():
        raise LossnetError(f"{label}: folder {shown} does not exist (create it first)")
    if not parent.is_dir():
        raise LossnetError(f"{label}: {shown} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LossnetError(f"{label}: folder {shown} is not writable")
    _probe(parent, shown, label)


def _probe(parent: Path, shown, label: str) -> None:
    """Create and remove a file in ``parent``: the one test that holds for root, read-only mounts and
    pseudo file systems (/proc, /sys) alike."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=".lossnet-write-probe-", dir=parent)
    except OSError as exc:
        raise LossnetError(f"{label}: folder {shown} is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:
        pass


def _check_name(path: str | os.PathLike, what: str) -> Path:
    text = os.fspath(path)
    if not str(text).strip():
        raise LossnetError(f"{what or 'output path'}: empty path")
    return Path(text)


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """Check that ``path`` can be written as a file (see the module doc) and return it as a Path.

    Args:
        path: the file path as the user gave it.
        what: the option or role named in errors, e.g. ``"--json"`` or ``"results store"``.

    Raises:
        LossnetError: the folder is missing / not a folder / not writable, the target is a
            directory, or an existing target is not writable.
    """
    p = _check_name(path, what)
    label = _describe(what, path)
    if p.is_dir():
        raise LossnetError(f"{label} is a directory; give a file path")
    if p.exists() and not os.access(p, os.W_OK):
        raise LossnetError(f"{label} exists and is not writable")
    _check_parent(p, label)
    return p


def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """Check that ``path`` is a writable directory or can be created as one (its parent exists and
    is writable); return it as a Path. Nothing is created.

    Raises:
        LossnetError: the target is an existing file (or other non-directory), an existing
            directory is not writable, or a missing directory's parent is missing / not writable.
    """
    p = _check_name(path, what)
    label = _describe(what, path)
    if p.exists() or p.is_symlink():
        if not p.is_dir():
            raise LossnetError(f"{label} exists and is not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise LossnetError(f"{label} is not writable")
        return p
    _check_parent(p, label)
    return p
