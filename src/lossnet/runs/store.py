"""SQLite results store of benchmark runs (schema version 3).

One file (default ``results.db``) holds every run of ``lossnet sweep run`` and
``lossnet bench ... --store``. Schema::

    meta(key TEXT PRIMARY KEY, value TEXT)              -- schema_version = 3
    runs(key TEXT PRIMARY KEY,                          -- lossnet.runs.identity.run_key(config)
         benchmark TEXT,
         config TEXT,                                   -- resolved config as JSON
         status TEXT,                                   -- queued | running | done | failed | interrupted
         error TEXT,                                    -- traceback / reason when failed
         started_at REAL, ended_at REAL, duration_s REAL,  -- unix time, seconds
         host TEXT, device TEXT,                        -- where the run executed; str(torch device)
         attempts INTEGER,                              -- times the run was started
         lossnet_version TEXT,
         owner TEXT,                                    -- v2: driver holding the lease, "host:pid"
         lease_token TEXT,                              -- v2: that driver's store instance
         heartbeat_at REAL,                             -- v2: last heartbeat of the lease
         signature TEXT)                                -- v3: reproducibility signature of the run's
                                                        --     perceptual loss/metric (lossnet.signature)
    metrics(run_key TEXT, dataset TEXT, name TEXT, value REAL,
            PRIMARY KEY (run_key, dataset, name))       -- "set5/psnr" -> ("set5", "psnr");
                                                        -- a key without "/" -> dataset ""
    artifacts(run_key TEXT, name TEXT, path TEXT, PRIMARY KEY (run_key, name))

Durability: WAL journal, ``synchronous=FULL``, and every write (a run's status change together with
all of its metrics and artifacts) is one transaction, so a process killed at any moment leaves
either the old or the new state of a run, never half of it.

Leases (several drivers on one store): a process runs a run only after :meth:`ResultsStore.claim`
moved it to ``running`` under its own lease, in one ``BEGIN IMMEDIATE`` transaction (so two drivers
can never both claim it). While it runs, a background thread refreshes ``heartbeat_at`` every
``heartbeat_s`` (30 s). Another driver treats a ``running`` run as *live* (skips it) unless its
owner is dead: on the same host the owner's pid no longer exists (or is this very process, under a
store instance that is closed), or -- on any host -- its heartbeat is older than ``lease_timeout``
(10 min). A dead owner's run reads as ``interrupted`` and is reclaimed and resumed.

A store written by a newer lossnet (higher ``schema_version``) is refused with a
:class:`~lossnet.errors.LossnetError` rather than silently misread; a version-1 or -2 store is migrated
to version 3 (the v2 lease columns and the v3 ``signature`` column added, none changed) when opened
for writing, and read as it is when read-only.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from lossnet.errors import LossnetError

if TYPE_CHECKING:
    from lossnet.runs.record import RunRecord

__all__ = [
    "ResultsStore",
    "SCHEMA_VERSION",
    "STATUSES",
    "split_metric",
    "DEFAULT_STORE",
    "LEASE_TIMEOUT_S",
    "HEARTBEAT_S",
]

SCHEMA_VERSION = 3
STATUSES = ("queued", "running", "done", "failed", "interrupted")
DEFAULT_STORE = "results.db"
LEASE_TIMEOUT_S = 600.0
HEARTBEAT_S = 30.0

_RUN_COLUMNS_V1 = (
    "key TEXT PRIMARY KEY",
    "benchmark TEXT",
    "config TEXT",
    "status TEXT",
    "error TEXT",
    "started_at REAL",
    "ended_at REAL",
    "duration_s REAL",
    "host TEXT",
    "device TEXT",
    "attempts INTEGER",
    "lossnet_version TEXT",
)
_RUN_COLUMNS_V2 = ("owner TEXT", "lease_token TEXT", "heartbeat_at REAL")
#: v3: the reproducibility signature of the run's perceptual metric / loss (lossnet.signature)
_RUN_COLUMNS_V3 = ("signature TEXT",)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs ({", ".join(_RUN_COLUMNS_V1 + _RUN_COLUMNS_V2 + _RUN_COLUMNS_V3)});
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

#: lease tokens of the store instances open (for writing) in this process
_LIVE_TOKENS: set[str] = set()


def split_metric(metric: str) -> tuple[str, str]:
    """``"set5/psnr"`` -> ``("set5", "psnr")``; split on the first "/", no "/" -> ``("", metric)``."""
    dataset, sep, name = metric.partition("/")
    return (dataset, name) if sep else ("", metric)


def _version() -> str:
    from lossnet._version import __version__

    return __version__


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    except OSError:
        return False
    try:  # a zombie (killed, not yet reaped) is dead
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _uri(path: Path, mode: str) -> str:
    """SQLite URI of ``path`` (percent-encoded, so ``#``, ``?`` and ``%`` in names are safe)."""
    return f"{Path(os.path.abspath(path)).as_uri()}?mode={mode}"


class ResultsStore:
    """The results store at ``path`` (created on first use).

    Args:
        path: SQLite file. Its folder must exist and be writable (the rule of
            :func:`lossnet.outputs.check_output_file`).
        readonly: open without creating or migrating (``lossnet runs`` uses this).
        what: how errors name the path (e.g. ``"--store"``).
        lease_timeout: seconds without a heartbeat after which another driver's ``running`` run is
            considered abandoned; heartbeat_s: how often this store refreshes its leases.

    Use as a context manager (``with ResultsStore("results.db") as store: ...``) or call
    :meth:`close`.

    Raises:
        LossnetError: the path is unusable (folder missing, not writable, not an SQLite file) or the
            store has a newer schema version than this lossnet understands.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        readonly: bool = False,
        what: str = "results store",
        lease_timeout: float = LEASE_TIMEOUT_S,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        from lossnet.outputs import check_output_file

        self.path = Path(path)
        self.what = what
        self.readonly = readonly
        self.lease_timeout = float(lease_timeout)
        self.heartbeat_s = float(heartbeat_s)
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}"
        self.token = uuid.uuid4().hex
        self._db: sqlite3.Connection | None = None
        self._keeper: _Heartbeat | None = None
        if readonly:
            if self.path.is_dir():
                raise LossnetError(f"{what} {self.path} is a directory, not a file")
            if not self.path.exists():
                raise LossnetError(f"{what} {self.path} does not exist")
        else:
            check_output_file(self.path, what)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves so each write is exactly one
            # transaction; timeout covers concurrent writers (other drivers, the heartbeat thread).
            self._db = sqlite3.connect(
                _uri(self.path, "ro" if readonly else "rwc"), uri=True, timeout=30.0, isolation_level=None
            )
            self._db.row_factory = sqlite3.Row
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            self._init_schema(readonly)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise LossnetError(f"{what} {self.path} is not a usable SQLite database: {exc}") from exc
        except BaseException:
            self.close()
            raise
        if not readonly:
            _LIVE_TOKENS.add(self.token)

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a store dropped without close() must not keep its leases alive
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass

    def close(self) -> None:
        if getattr(self, "_keeper", None) is not None:
            self._keeper.stop()
            self._keeper = None
        _LIVE_TOKENS.discard(getattr(self, "token", None))
        if getattr(self, "_db", None) is not None:
            self._db.close()
            self._db = None

    def _schema_version(self) -> int | None:
        has_meta = self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if not row:
            return None
        try:
            return int(row[0])
        except (TypeError, ValueError):
            raise LossnetError(
                f"{self.what} {self.path}: its schema_version {row[0]!r} is not a number (meta table); "
                "the file is damaged or not a lossnet store"
            ) from None

    def _check_version(self, version: int | None) -> None:
        if version is not None and version > SCHEMA_VERSION:
            raise LossnetError(
                f"{self.what} {self.path} has schema version {version}, newer than this lossnet understands "
                f"({SCHEMA_VERSION}); upgrade lossnet"
            )

    def _init_schema(self, readonly: bool) -> None:
        version = self._schema_version()
        self._check_version(version)
        if version == SCHEMA_VERSION:
            return
        if readonly:
            if version is None:
                raise LossnetError(f"{self.path} is not a lossnet results store (no schema_version)")
            return  # an older store is read as it is
        with self._transaction():
            version = self._schema_version()  # again, inside the write lock: another process may have migrated
            self._check_version(version)
            if version == SCHEMA_VERSION:
                return
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            have = {r[1] for r in self._db.execute("PRAGMA table_info(runs)")}
            for column in _RUN_COLUMNS_V2 + _RUN_COLUMNS_V3:  # v1 -> v2 -> v3: columns added, none changed
                if column.split()[0] not in have:
                    self._db.execute(f"ALTER TABLE runs ADD COLUMN {column}")
            self._db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def _transaction(self):
        return _Transaction(self._db)

    def _writable(self) -> None:
        if self._db is None:
            raise LossnetError(f"{self.what} {self.path} is closed")
        if self.readonly:
            raise LossnetError(f"{self.what} {self.path} was opened read-only")

    # -- leases ----------------------------------------------------------------------------------

    def _lease_alive(self, row: Any, now: float | None = None) -> bool:
        """Whether the lease on a ``running`` row is held by a live process (see the module doc)."""
        row = dict(row)
        owner, token, beat = row.get("owner"), row.get("lease_token"), row.get("heartbeat_at")
        if not owner or not token or beat is None:
            return False  # a v1 row, or a lease released without a status change
        now = time.time() if now is None else now
        if now - float(beat) > self.lease_timeout:
            return False
        host, _, pid = str(owner).rpartition(":")
        if host == self.host:
            try:
                pid_n = int(pid)
            except ValueError:
                return False
            if pid_n == os.getpid():
                return token in _LIVE_TOKENS
            return _pid_alive(pid_n)
        return True  # another machine: trust a fresh heartbeat

    def _effective(self, row: Any, now: float | None = None) -> str:
        status = row["status"]
        if status == "running" and not self._lease_alive(row, now):
            return "interrupted"
        return status

    def claim(
        self,
        key: str,
        config: dict[str, Any],
        *,
        benchmark: str | None = None,
        retry_failed_before: float | None = None,
        force: bool = False,
        count_attempt: bool = True,
    ) -> str | None:
        """Take the lease on run ``key`` if it may run now, in one ``BEGIN IMMEDIATE`` transaction.

        Claimable: no row, ``queued``, ``interrupted``, ``running`` under a dead owner, ``failed``
        when ``retry_failed_before`` is given and the failure ended before that time (so two drivers
        with ``--retry-failed`` do not both retry it), and -- with ``force`` -- ``done``/``failed``
        too. Never claimable: ``running`` under a live owner (another driver, or this store).

        A claim sets status ``running``, owner = ``host:pid``, this store's lease token, heartbeat
        now, started_at now, clears error/ended_at/duration, and (``count_attempt``) attempts + 1.
        This store's heartbeat thread keeps the lease alive until the run is recorded.

        Returns:
            The run's previous status (``"new"`` when it had no row; ``"interrupted"`` for a dead
            owner's ``running`` run), or None when it was not claimed.
        """
        self._writable()
        now = time.time()
        with self._transaction():
            row = self._db.execute("SELECT * FROM runs WHERE key=?", (key,)).fetchone()
            previous = "new" if row is None else self._effective(row, now)
            if previous == "running":
                return None
            if previous == "done" and not force:
                return None
            if previous == "failed" and not force:
                ended = row["ended_at"]
                if retry_failed_before is None or (ended is not None and ended >= retry_failed_before):
                    return None
            self._upsert_run(key, config, benchmark)
            self._db.execute(
                "UPDATE runs SET status='running', owner=?, lease_token=?, heartbeat_at=?, started_at=?, error=NULL, "
                "ended_at=NULL, duration_s=NULL, attempts=COALESCE(attempts, 0) + ? WHERE key=?",
                (self.owner, self.token, now, now, 1 if count_attempt else 0, key),
            )
        self._start_heartbeat()
        return previous

    def holder(self, key: str) -> str | None:
        """``owner`` of a live lease on ``key`` (e.g. ``"node3:4711"``), else None."""
        row = self._db.execute("SELECT * FROM runs WHERE key=?", (key,)).fetchone()
        if row is None or row["status"] != "running" or not self._lease_alive(row):
            return None
        return row["owner"]

    def heartbeat(self) -> None:
        """Refresh ``heartbeat_at`` of every run this store holds (the heartbeat thread calls this)."""
        self._writable()
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET heartbeat_at=? WHERE lease_token=? AND status='running'", (time.time(), self.token)
            )

    def _start_heartbeat(self) -> None:
        if self._keeper is None and self.heartbeat_s > 0:
            self._keeper = _Heartbeat(self.path, self.token, self.heartbeat_s)

    # -- writes ----------------------------------------------------------------------------------

    def _upsert_run(self, key: str, config: dict[str, Any], benchmark: str | None = None) -> None:
        benchmark = benchmark or config.get("benchmark")
        self._db.execute(
            "INSERT INTO runs(key, benchmark, config, attempts, lossnet_version) VALUES (?, ?, ?, 0, ?) "
            "ON CONFLICT(key) DO UPDATE SET benchmark=excluded.benchmark, config=excluded.config, "
            "lossnet_version=excluded.lossnet_version",
            (key, benchmark, json.dumps(config, sort_keys=True, default=str), _version()),
        )

    def mark_queued(self, key: str, config: dict[str, Any], *, benchmark: str | None = None) -> None:
        """Register a planned run (no-op for a run that already has a row)."""
        self._writable()
        with self._transaction():
            if self._db.execute("SELECT 1 FROM runs WHERE key=?", (key,)).fetchone() is None:
                self._upsert_run(key, config, benchmark)
                self._db.execute("UPDATE runs SET status='queued' WHERE key=?", (key,))

    def record(self, record: "RunRecord") -> bool:
        """Store a run's outcome with all its metrics and artifacts in one transaction.

        Args:
            record: the :class:`~lossnet.runs.record.RunRecord` of the run. Status ``"done"``,
                ``"failed"`` and ``"interrupted"`` are stored as they are; a benchmark's own status
                (e.g. ``"diverged"``) is stored as ``failed`` with error "benchmark status: ...";
                its metrics are kept.

        Returns:
            True; False (nothing written) when another live process holds the run's lease -- this
            process lost it (e.g. it was presumed dead), so its result must not overwrite the run --
            or when an ``"interrupted"`` record would overwrite a finished (done/failed) run.
        """
        from lossnet.runs.record import RunRecord

        if not isinstance(record, RunRecord):
            raise TypeError(f"ResultsStore.record takes a RunRecord, not {type(record).__name__}")
        self._writable()
        status, error = record.status, record.error
        if status not in ("done", "failed", "interrupted"):
            status, error = "failed", error or f"benchmark status: {record.status}"
        elif status == "done":
            error = None
        now = time.time()
        started = record.started_at
        ended = started + record.duration_s if started is not None and record.duration_s is not None else now
        if started is None:
            started = ended - (record.duration_s or 0.0)
        key = record.key
        with self._transaction():
            row = self._db.execute("SELECT * FROM runs WHERE key=?", (key,)).fetchone()
            if (
                row is not None
                and row["status"] == "running"
                and row["lease_token"] != self.token
                and self._lease_alive(row, now)
            ):
                return False
            if (
                status == "interrupted"
                and row is not None
                and row["status"] not in ("running", "queued", "interrupted")
            ):
                return False  # an interruption never overwrites a finished outcome
            self._upsert_run(key, record.config, record.benchmark)
            self._db.execute(
                "UPDATE runs SET status=?, error=?, started_at=?, ended_at=?, duration_s=?, host=?, device=?, signature=?, "
                "owner=COALESCE(owner, ?), lease_token=NULL, heartbeat_at=NULL, attempts=MAX(COALESCE(attempts, 0), 1) "
                "WHERE key=?",
                (
                    status,
                    error,
                    started,
                    ended,
                    record.duration_s,
                    record.host,
                    record.device,
                    record.signature,
                    self.owner,
                    key,
                ),
            )
            self._db.execute("DELETE FROM metrics WHERE run_key=?", (key,))
            self._db.execute("DELETE FROM artifacts WHERE run_key=?", (key,))
            self._db.executemany(
                "INSERT INTO metrics(run_key, dataset, name, value) VALUES (?, ?, ?, ?)",
                [(key, *split_metric(m), v) for m, v in record.metrics.items()],
            )
            self._db.executemany(
                "INSERT INTO artifacts(run_key, name, path) VALUES (?, ?, ?)",
                [(key, n, p) for n, p in record.artifacts.items()],
            )
        return True

    # -- reads -----------------------------------------------------------------------------------

    def status(self, key: str) -> str | None:
        """Status of run ``key`` (None if unknown); a ``running`` run whose owner is dead reads
        ``interrupted`` (as in every read below)."""
        row = self._db.execute("SELECT * FROM runs WHERE key=?", (key,)).fetchone()
        return self._effective(row) if row else None

    def statuses(self) -> dict[str, str]:
        """``{run key: status}`` of every run (dead owners' ``running`` runs read ``interrupted``)."""
        now = time.time()
        return {r["key"]: self._effective(r, now) for r in self._db.execute("SELECT * FROM runs")}

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        """All runs (optionally of one status), oldest first; ``config`` decoded to a dict."""
        if status is not None and status not in STATUSES:
            raise LossnetError(f"unknown run status {status!r}; choose one of {', '.join(STATUSES)}")
        now = time.time()
        rows = [
            self._run_dict(r, self._effective(r, now))
            for r in self._db.execute("SELECT * FROM runs ORDER BY COALESCE(started_at, 0), key")
        ]
        return [r for r in rows if status is None or r["status"] == status]

    def get_run(self, key: str) -> dict[str, Any] | None:
        """One run with its ``metrics`` ({"dataset/name": value}) and ``artifacts``; a unique key
        prefix is accepted."""
        rows = self._db.execute(
            "SELECT * FROM runs WHERE key LIKE ? ORDER BY key", (key.replace("%", "") + "%",)
        ).fetchall()
        if not rows:
            return None
        exact = [r for r in rows if r["key"] == key]
        if len(rows) > 1 and not exact:
            raise LossnetError(f"run key prefix {key!r} is ambiguous ({len(rows)} runs)")
        row = exact[0] if exact else rows[0]
        run = self._run_dict(row, self._effective(row))
        run["metrics"] = {
            (f"{r['dataset']}/{r['name']}" if r["dataset"] else r["name"]): r["value"]
            for r in self._db.execute(
                "SELECT dataset, name, value FROM metrics WHERE run_key=? ORDER BY dataset, name", (run["key"],)
            )
        }
        run["artifacts"] = {
            r["name"]: r["path"]
            for r in self._db.execute("SELECT name, path FROM artifacts WHERE run_key=? ORDER BY name", (run["key"],))
        }
        return run

    def metric_rows(self, status: str | None = "done") -> list[dict[str, Any]]:
        """One row per (run, metric): ``run_key, benchmark, config (dict), dataset, name, value``.

        Args:
            status: only runs of this status (default ``"done"``); None for all.
        """
        sql = (
            "SELECT m.run_key, r.benchmark, r.config, m.dataset, m.name, m.value FROM metrics m "
            "JOIN runs r ON r.key = m.run_key"
            + (" WHERE r.status=?" if status else "")
            + " ORDER BY r.benchmark, m.run_key, m.dataset, m.name"
        )
        out = []
        for r in self._db.execute(sql, (status,) if status else ()):
            row = dict(r)
            row["config"] = _config_of(row["config"], row["run_key"], self.path)
            out.append(row)
        return out

    def iter_metric_rows(self, status: str | None = "done") -> Iterator[dict[str, Any]]:
        yield from self.metric_rows(status)

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` ("ok" for a sound file)."""
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]

    @staticmethod
    def _run_dict(row: sqlite3.Row, status: str | None = None) -> dict[str, Any]:
        d = dict(row)
        d["config"] = _config_of(d.get("config"), d.get("key"), None)
        if status is not None:
            d["status"] = status
        return d


def _config_of(raw: Any, key: Any, path: Any) -> dict[str, Any]:
    """A row's config as a dict; a damaged one is an error naming the run (one bad row used to make
    every read fail with a bare JSONDecodeError)."""
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except (TypeError, ValueError) as exc:
        where = f"results store {path}: " if path else ""
        raise LossnetError(
            f"{where}run {key}: its config is not valid JSON ({exc}); fix or delete that row "
            f"(DELETE FROM runs WHERE key='{key}')"
        ) from None
    if not isinstance(config, dict):
        raise LossnetError(
            f"{'results store ' + str(path) + ': ' if path else ''}run {key}: its config is not a JSON object"
        )
    return config


class _Heartbeat:
    """Daemon thread refreshing ``heartbeat_at`` of every ``running`` run leased under ``token``
    every ``interval`` seconds, on its own SQLite connection (connections are per thread)."""

    def __init__(self, path: Path, token: str, interval: float) -> None:
        self._uri = _uri(path, "rw")
        self._token = token
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lossnet-lease-{token[:8]}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            db = sqlite3.connect(self._uri, uri=True, timeout=30.0, isolation_level=None)
        except sqlite3.Error:
            return
        try:
            while not self._stop.wait(self._interval):
                try:
                    db.execute("BEGIN IMMEDIATE")
                    db.execute(
                        "UPDATE runs SET heartbeat_at=? WHERE lease_token=? AND status='running'",
                        (time.time(), self._token),
                    )
                    db.execute("COMMIT")
                except sqlite3.Error:  # busy beyond the timeout, or the file went away: try again later
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
        finally:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


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
