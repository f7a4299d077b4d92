"""SQLite results store of benchmark runs (schema version 1).

One file (default ``results.db``) holds every run of ``lossnet sweep run`` and
``lossnet bench ... --store``. Schema::

    meta(key TEXT PRIMARY KEY, value TEXT)              -- schema_version = 1
    runs(key TEXT PRIMARY KEY,                          -- lossnet.runkey.run_key(config)
         benchmark TEXT,
         config TEXT,                                   -- resolved config as JSON
         status TEXT,                                   -- queued | running | done | failed
         error TEXT,                                    -- traceback / reason when failed
         started_at REAL, ended_at REAL, duration_s REAL,  -- unix time, seconds
         host TEXT, device TEXT,
         attempts INTEGER,                              -- times the run was started
         lossnet_version TEXT)
    metrics(run_key TEXT, dataset TEXT, name TEXT, value REAL,
            PRIMARY KEY (run_key, dataset, name))       -- "set5/psnr" -> ("set5", "psnr");
                                                        -- a key without "/" -> dataset ""
    artifacts(run_key TEXT, name TEXT, path TEXT, PRIMARY KEY (run_key, name))

Durability: WAL journal, ``synchronous=FULL``, and every write (a run's status change together with
all of its metrics and artifacts) is one transaction, so a process killed at any moment leaves
either the old or the new state of a run, never half of it. The sweep driver is the only writer
during a sweep; workers hand their results back to it.

A store written by a newer lossnet (higher ``schema_version``) is refused with a
:class:`~lossnet.errors.LossnetError` rather than silently misread.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

from lossnet.errors import LossnetError

__all__ = ["ResultsStore", "SCHEMA_VERSION", "STATUSES", "split_metric", "DEFAULT_STORE"]

SCHEMA_VERSION = 1
STATUSES = ("queued", "running", "done", "failed")
DEFAULT_STORE = "results.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    benchmark TEXT,
    config TEXT,
    status TEXT,
    error TEXT,
    started_at REAL,
    ended_at REAL,
    duration_s REAL,
    host TEXT,
    device TEXT,
    attempts INTEGER,
    lossnet_version TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_key TEXT, dataset TEXT, name TEXT, value REAL,
    PRIMARY KEY (run_key, dataset, name)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_key TEXT, name TEXT, path TEXT,
    PRIMARY KEY (run_key, name)
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_benchmark ON runs(benchmark);
"""


def split_metric(metric: str) -> tuple[str, str]:
    """``"set5/psnr"`` -> ``("set5", "psnr")``; split on the first "/", no "/" -> ``("", metric)``."""
    dataset, sep, name = metric.partition("/")
    return (dataset, name) if sep else ("", metric)


def _version() -> str:
    from lossnet import __version__

    return __version__


def _value(v: Any) -> float | None:
    """Metric value as a float; NaN/inf are stored as NULL (SQLite has no NaN)."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


class ResultsStore:
    """The results store at ``path`` (created on first use).

    Args:
        path: SQLite file. Its folder must exist and be writable.
        readonly: open without creating or migrating (``lossnet runs`` uses this).

    Use as a context manager (``with ResultsStore("results.db") as store: ...``) or call
    :meth:`close`.

    Raises:
        LossnetError: the path is unusable (folder missing, not writable, not an SQLite file) or the
            store has a newer schema version than this lossnet understands.
    """

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise LossnetError(f"results store {self.path} is a directory, not a file")
        if readonly and not self.path.exists():
            raise LossnetError(f"results store {self.path} does not exist")
        if not readonly:
            parent = self.path.resolve().parent
            if not parent.is_dir():
                raise LossnetError(f"cannot create results store {self.path}: folder {parent} does not exist")
            if not os.access(parent, os.W_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
                raise LossnetError(f"results store {self.path} is not writable")
        try:
            uri = f"file:{self.path.resolve()}?mode=ro" if readonly else str(self.path)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves so each write is exactly one
            # transaction; timeout covers a concurrent reader's checkpoint.
            self._db = sqlite3.connect(uri, uri=readonly, timeout=30.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            self._init_schema(readonly)
        except sqlite3.DatabaseError as exc:
            raise LossnetError(f"results store {self.path} is not a usable SQLite database: {exc}") from exc

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "_db", None) is not None:
            self._db.close()
            self._db = None

    def _init_schema(self, readonly: bool) -> None:
        has_meta = self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if has_meta:
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else None
            if version is not None and version > SCHEMA_VERSION:
                raise LossnetError(
                    f"results store {self.path} has schema version {version}, newer than this lossnet understands "
                    f"({SCHEMA_VERSION}); upgrade lossnet"
                )
            if version == SCHEMA_VERSION:
                return
        if readonly:
            raise LossnetError(f"{self.path} is not a lossnet results store (no schema_version)")
        with self._transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            self._db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def _transaction(self):
        return _Transaction(self._db)

    # -- writes (driver only) ----------------------------------------------------------------------

    def _upsert_run(self, key: str, config: dict[str, Any], **fields: Any) -> None:
        benchmark = config.get("benchmark")
        self._db.execute(
            "INSERT INTO runs(key, benchmark, config, attempts, lossnet_version) VALUES (?, ?, ?, 0, ?) "
            "ON CONFLICT(key) DO UPDATE SET benchmark=excluded.benchmark, config=excluded.config, "
            "lossnet_version=excluded.lossnet_version",
            (key, benchmark, json.dumps(config, sort_keys=True, default=str), _version()),
        )
        if fields:
            cols = ", ".join(f"{c}=?" for c in fields)
            self._db.execute(f"UPDATE runs SET {cols} WHERE key=?", (*fields.values(), key))

    def mark_queued(self, key: str, config: dict[str, Any]) -> None:
        """Register a planned run (no-op for the status of an existing run)."""
        with self._transaction():
            if self.status(key) is None:
                self._upsert_run(key, config, status="queued")

    def mark_running(self, key: str, config: dict[str, Any], *, device: str | None = None, host: str | None = None) -> None:
        """The run starts now: status running, attempts + 1, old error cleared."""
        with self._transaction():
            self._upsert_run(
                key, config, status="running", error=None, started_at=time.time(), ended_at=None,
                duration_s=None, host=host or socket.gethostname(), device=device,
            )
            self._db.execute("UPDATE runs SET attempts = COALESCE(attempts, 0) + 1 WHERE key=?", (key,))

    def record_result(
        self,
        key: str,
        config: dict[str, Any],
        result: Any,
        *,
        started_at: float | None = None,
        duration_s: float | None = None,
        host: str | None = None,
    ) -> None:
        """Store a finished run with all its metrics and artifacts in one transaction.

        Args:
            key: run key (:func:`lossnet.runkey.run_key`).
            config: the resolved config.
            result: a :class:`lossnet.bench.base.BenchResult` (or an object/dict with ``metrics``,
                ``artifacts``, ``status``). A status other than ``"done"`` (e.g. ``"diverged"``) is
                stored as ``failed`` with the status as error text; its metrics are kept.
            started_at, duration_s, host: timing and host of the run (defaults: now / unknown).
        """
        get = (lambda k, d=None: result.get(k, d)) if isinstance(result, dict) else (lambda k, d=None: getattr(result, k, d))
        metrics = dict(get("metrics", {}) or {})
        artifacts = dict(get("artifacts", {}) or {})
        bench_status = get("status", "done") or "done"
        status, error = ("done", None) if bench_status == "done" else ("failed", f"benchmark status: {bench_status}")
        now = time.time()
        with self._transaction():
            row = self._db.execute("SELECT started_at, attempts, device FROM runs WHERE key=?", (key,)).fetchone()
            if started_at is None:
                started_at = row["started_at"] if row and row["started_at"] else (now - duration_s if duration_s else now)
            if duration_s is None:
                duration_s = max(0.0, now - started_at)
            self._upsert_run(
                key, config, status=status, error=error, started_at=started_at, ended_at=now, duration_s=duration_s,
                host=host or socket.gethostname(), device=config.get("device") or (row["device"] if row else None),
            )
            if not row or not row["attempts"]:
                self._db.execute("UPDATE runs SET attempts = 1 WHERE key=?", (key,))
            self._db.execute("DELETE FROM metrics WHERE run_key=?", (key,))
            self._db.execute("DELETE FROM artifacts WHERE run_key=?", (key,))
            self._db.executemany(
                "INSERT INTO metrics(run_key, dataset, name, value) VALUES (?, ?, ?, ?)",
                [(key, *split_metric(m), _value(v)) for m, v in metrics.items()],
            )
            self._db.executemany(
                "INSERT INTO artifacts(run_key, name, path) VALUES (?, ?, ?)",
                [(key, n, str(p)) for n, p in artifacts.items()],
            )

    def record_failure(self, key: str, config: dict[str, Any], error: str, *, duration_s: float | None = None) -> None:
        """The run ended without a result: status failed with ``error`` (e.g. the traceback)."""
        now = time.time()
        with self._transaction():
            row = self._db.execute("SELECT started_at, attempts FROM runs WHERE key=?", (key,)).fetchone()
            started = row["started_at"] if row and row["started_at"] else now
            self._upsert_run(
                key, config, status="failed", error=error, ended_at=now,
                duration_s=duration_s if duration_s is not None else max(0.0, now - started),
            )
            if not row or not row["attempts"]:
                self._db.execute("UPDATE runs SET attempts = 1 WHERE key=?", (key,))

    # -- reads -----------------------------------------------------------------------------------

    def status(self, key: str) -> str | None:
        row = self._db.execute("SELECT status FROM runs WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def statuses(self) -> dict[str, str]:
        """``{run key: status}`` of every run."""
        return {r[0]: r[1] for r in self._db.execute("SELECT key, status FROM runs")}

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        """All runs (optionally of one status), oldest first; ``config`` decoded to a dict."""
        if status is not None and status not in STATUSES:
            raise LossnetError(f"unknown run status {status!r}; choose one of {', '.join(STATUSES)}")
        sql = "SELECT * FROM runs" + (" WHERE status=?" if status else "") + " ORDER BY COALESCE(started_at, 0), key"
        return [self._run_dict(r) for r in self._db.execute(sql, (status,) if status else ())]

    def get_run(self, key: str) -> dict[str, Any] | None:
        """One run with its ``metrics`` ({"dataset/name": value}) and ``artifacts``; a unique key
        prefix is accepted."""
        rows = self._db.execute("SELECT * FROM runs WHERE key LIKE ? ORDER BY key", (key.replace("%", "") + "%",)).fetchall()
        if not rows:
            return None
        exact = [r for r in rows if r["key"] == key]
        if len(rows) > 1 and not exact:
            raise LossnetError(f"run key prefix {key!r} is ambiguous ({len(rows)} runs)")
        run = self._run_dict(exact[0] if exact else rows[0])
        run["metrics"] = {
            (f"{r['dataset']}/{r['name']}" if r["dataset"] else r["name"]): r["value"]
            for r in self._db.execute("SELECT dataset, name, value FROM metrics WHERE run_key=? ORDER BY dataset, name", (run["key"],))
        }
        run["artifacts"] = {
            r["name"]: r["path"] for r in self._db.execute("SELECT name, path FROM artifacts WHERE run_key=? ORDER BY name", (run["key"],))
        }
        return run

    def metric_rows(self, status: str | None = "done") -> list[dict[str, Any]]:
        """One row per (run, metric): ``run_key, benchmark, config (dict), dataset, name, value``.

        Args:
            status: only runs of this status (default ``"done"``); None for all.
        """
        sql = (
            "SELECT m.run_key, r.benchmark, r.config, m.dataset, m.name, m.value FROM metrics m "
            "JOIN runs r ON r.key = m.run_key" + (" WHERE r.status=?" if status else "") + " ORDER BY r.benchmark, m.run_key, m.dataset, m.name"
        )
        out = []
        for r in self._db.execute(sql, (status,) if status else ()):
            row = dict(r)
            row["config"] = json.loads(row["config"]) if row["config"] else {}
            out.append(row)
        return out

    def iter_metric_rows(self, status: str | None = "done") -> Iterator[dict[str, Any]]:
        yield from self.metric_rows(status)

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` ("ok" for a sound file)."""
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]

    @staticmethod
    def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        d["config"] = json.loads(d["config"]) if d.get("config") else {}
        return d


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
