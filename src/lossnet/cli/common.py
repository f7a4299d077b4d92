"""Helpers shared by CLI subcommands: tables, JSON output, progress settings."""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Iterable, Sequence

__all__ = ["format_table", "print_table", "format_value", "format_time", "stdout_closed"]


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.4f}"
    if value is None:
        return "-"
    return str(value)


def format_time(value: Any) -> str:
    """A Unix time as an ISO 8601 UTC date-time to the second (``2026-11-28T09:30:00Z``): format_value
    would print ``1.796e+09``. Anything that is not a time is shown as format_value shows it."""
    import datetime

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, OSError, ValueError):
            pass
    return format_value(value)


def stdout_closed() -> int:
    """Exit status after a BrokenPipeError on stdout (``lossnet runs list | head``), the way the Python
    docs' "Note on SIGPIPE" does it: point stdout at devnull so the interpreter's final flush cannot
    raise again, and exit 1 without a message (the reader went away on purpose)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no real file (replaced in-process): nothing to redirect
        pass
    return 1


def format_table(rows: Sequence[dict[str, Any]], columns: Iterable[str] | None = None) -> str:
    """A plain-text table with a header row; columns default to the keys of the first row."""
    if not rows:
        return "(no rows)"
    cols = list(columns) if columns is not None else list(rows[0].keys())
    cells = [[format_value(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def print_table(rows: Sequence[dict[str, Any]], columns: Iterable[str] | None = None, file=None) -> None:
    print(format_table(rows, columns), file=file or sys.stdout)
