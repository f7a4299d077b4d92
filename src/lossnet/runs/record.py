"""The one outcome type of a run: :class:`RunRecord` (what ``result.json`` holds and
:meth:`lossnet.runs.store.ResultsStore.record` takes), and the rules that go with it (which
statuses finished, how metric values and artifact paths are stored, the one-line error)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["RunRecord", "FINISHED", "UNFINISHED", "absolute_artifacts", "error_line", "metric_value"]

#: ``RunRecord.status`` values that mean "the run did not produce a benchmark result"; every other
#: status (``"done"``, or a benchmark's own such as ``"diverged"``) came from a returned BenchResult.
UNFINISHED = ("failed", "interrupted")
FINISHED = "done"


def metric_value(v: Any) -> float | None:
    """A metric as a float; NaN/inf (and None) become None -- the one place this happens (SQLite
    and JSON have no NaN)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass
class RunRecord:
    """The outcome of one run, as the worker writes it (``result.json``) and the store records it.

    Attributes:
        key: run key (:func:`lossnet.runs.identity.run_key`).
        benchmark: benchmark name or module path as given to the run.
        config: the resolved config.
        status: ``"done"``; a benchmark's own non-done status (``"diverged"``...); ``"failed"``
            (exception, dead worker); ``"interrupted"`` (Ctrl-C, driver stopped).
        metrics: ``{"dataset/name": float or None}`` (NaN/inf are None).
        artifacts: ``{name: path}``.
        error: traceback or reason when not done (None for ``"done"``).
        started_at: unix time the execution began; duration_s: its wall time in seconds.
        host: machine that executed the run; device: ``str`` of the resolved torch device.
        details: the benchmark's extra summary rows (printed by ``lossnet bench``; not stored in
            the results store).
        signature: the reproducibility signature (:mod:`lossnet.signature`) of the perceptual
            metric or training loss the run used, when it used one.
    """

    key: str
    benchmark: str
    config: dict[str, Any]
    status: str = "done"
    metrics: dict[str, float | None] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    started_at: float | None = None
    duration_s: float | None = None
    host: str | None = None
    device: str | None = None
    details: list[dict[str, Any]] = field(default_factory=list)
    signature: str | None = None

    def __post_init__(self) -> None:
        self.metrics = {str(k): metric_value(v) for k, v in dict(self.metrics or {}).items()}
        self.artifacts = {str(k): str(v) for k, v in dict(self.artifacts or {}).items()}
        self.config = dict(self.config or {})
        self.status = str(self.status or "done")

    @property
    def finished(self) -> bool:
        """The benchmark returned a result (done, diverged, ...), as opposed to failed/interrupted."""
        return self.status not in UNFINISHED

    @property
    def ok(self) -> bool:
        return self.status == FINISHED

    @property
    def reason(self) -> str:
        """One line saying why the run is not done: a traceback's last line, else the first line."""
        if self.ok:
            return ""
        if self.finished:
            return f"benchmark status {self.status}"
        return error_line(self.error or self.status) or self.status

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunRecord":
        """Inverse of :meth:`to_json` (unknown keys are ignored; a result.json of lossnet <= 0.1's
        worker, ``{"ok": ...}``, is converted)."""
        if not isinstance(data, dict) or "key" not in data:
            raise ValueError("not a run record")
        if "ok" in data and "benchmark" not in data:
            data = dict(data)
            if not data.get("ok"):
                data["status"] = "failed"
            data.setdefault("benchmark", (data.get("config") or {}).get("benchmark") or "")
            data.setdefault("config", {})
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def failure(
        cls,
        key: str,
        benchmark: str,
        config: dict[str, Any],
        error: str,
        *,
        status: str = "failed",
        started_at: float | None = None,
        duration_s: float | None = None,
        host: str | None = None,
        device: str | None = None,
    ) -> "RunRecord":
        """A run that produced no result (``status`` failed or interrupted)."""
        return cls(
            key=key,
            benchmark=benchmark,
            config=config,
            status=status,
            error=error,
            started_at=started_at,
            duration_s=duration_s,
            host=host,
            device=device,
        )


def error_line(error: str | None) -> str:
    """One line of a stored error: a traceback's last line (the exception), else the first line
    (e.g. "worker process died (signal SIGKILL) ..." before the log tail); "" for none."""
    lines = [line.strip() for line in str(error or "").strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def absolute_artifacts(artifacts: dict[str, Any]) -> dict[str, str]:
    """``{name: path}`` with every relative path made absolute (against the current directory, the
    one the run's relative paths were written against), so a stored path resolves from anywhere.
    Absolute paths, URLs (``scheme://...``) and empty values are kept as they are."""
    out = {}
    for name, path in dict(artifacts).items():
        p = "" if path is None else str(path)
        if p and "://" not in p and not os.path.isabs(p):
            p = os.path.abspath(os.path.expanduser(p))
        out[str(name)] = p
    return out
