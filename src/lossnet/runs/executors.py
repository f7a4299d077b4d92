"""Where sweep runs execute: local worker processes or Ray tasks.

Both executors take :class:`Job` objects and hand back :class:`Outcome` objects -- each holding the
run's :class:`~lossnet.runs.record.RunRecord` -- to the driver, which alone writes the results
store. A worker that dies (segfault, OOM kill, ``kill -9``) produces a failed record for its own run
only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossnet.errors import LossnetError
from lossnet.runs.record import RunRecord
from lossnet.runs.worker import LOG_FILE, read_result, write_spec
from lossnet.runs.worker import command as worker_command

__all__ = [
    "Job",
    "Outcome",
    "LocalExecutor",
    "RayExecutor",
    "make_executor",
    "EXECUTORS",
    "ray_runtime_env",
    "check_ray_address",
    "FORWARDED_ENV",
]

EXECUTORS = ("local", "ray")

#: environment variables a Ray task gets from the driver (a pre-started cluster's workers do not
#: inherit the driver's environment); path lists are made absolute.
FORWARDED_ENV = ("LOSSNET_WEIGHTS_DIR", "LOSSNET_SHARED")


@dataclass
class Job:
    key: str
    benchmark: str
    config: dict[str, Any]
    workdir: Path
    submitted_at: float | None = None

    def failure(self, error: str, status: str = "failed") -> RunRecord:
        """The record of this job when its worker produced none (died, lost node, interrupted)."""
        now = time.time()
        started = self.submitted_at or now
        return RunRecord.failure(
            self.key,
            self.benchmark,
            self.config,
            error,
            status=status,
            started_at=started,
            duration_s=max(0.0, now - started),
        )


@dataclass
class Outcome:
    """A finished job and its :class:`RunRecord` (what the worker wrote, or a failure record)."""

    job: Job
    record: RunRecord

    @property
    def ok(self) -> bool:
        return self.record.ok


def _import_paths() -> list[str]:
    """The driver's import path, so workers find dotted benchmark modules outside site-packages."""
    return [p for p in sys.path if p and Path(p).is_dir()]


def _log_tail(workdir: Path, lines: int = 15) -> str:
    try:
        text = (workdir / LOG_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # A worker must not outlive a killed driver: it would finish a run the next driver re-runs.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LocalExecutor:
    """Runs each job in its own ``python -m lossnet.runs.worker`` process.

    Args:
        workers: concurrent runs.
        threads: torch threads per run (default: CPU count // workers, at least 1).
        progress: let benchmarks draw their own progress bars into ``run.log``.

    Each worker gets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = ``threads`` and, when GPUs exist,
    ``CUDA_VISIBLE_DEVICES`` = one GPU, round-robin over worker slots. Output and tracebacks are
    appended to ``runs/<key>/run.log``.
    """

    name = "local"

    def __init__(self, workers: int = 1, threads: int | None = None, progress: bool = False) -> None:
        if workers < 1:
            raise LossnetError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self.progress = progress
        self.gpus = _gpu_count()
        self._procs: dict[int, tuple[Job, subprocess.Popen, Any]] = {}  # slot -> job, process, log
        self._sys_path = _import_paths()

    @property
    def free_slots(self) -> int:
        return self.workers - len(self._procs)

    @property
    def active(self) -> int:
        return len(self._procs)

    def describe(self) -> str:
        return f"local executor: {self.workers} worker(s) x {self.threads} thread(s), {self.gpus} GPU(s)"

    def submit(self, job: Job) -> None:
        slot = next(i for i in range(self.workers) if i not in self._procs)
        job.submitted_at = job.submitted_at or time.time()
        job.workdir.mkdir(parents=True, exist_ok=True)
        spec = write_spec(
            job.workdir,
            key=job.key,
            benchmark=job.benchmark,
            config=job.config,
            threads=self.threads,
            progress=self.progress,
            sys_path=self._sys_path,
        )
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        env["PYTHONUNBUFFERED"] = "1"
        if self.gpus:
            # index into the GPUs this driver may use (an inherited CUDA_VISIBLE_DEVICES list)
            visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
            ids = visible if len(visible) == self.gpus else [str(i) for i in range(self.gpus)]
            env["CUDA_VISIBLE_DEVICES"] = ids[slot % self.gpus]
        log = open(job.workdir / LOG_FILE, "ab")
        proc = subprocess.Popen(
            worker_command(spec),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self._procs[slot] = (job, proc, log)

    def wait(self, timeout: float = 0.5) -> list[Outcome]:
        """Outcomes of jobs that ended within ``timeout`` seconds (possibly none)."""
        deadline = time.monotonic() + timeout
        while True:
            done = []
            for slot, (job, proc, log) in list(self._procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                log.close()
                del self._procs[slot]
                record = read_result(job.workdir, job.key)
                if record is None:
                    reason = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                    record = job.failure(
                        f"worker process died ({reason}) without a result; last log lines:\n{_log_tail(job.workdir)}"
                    )
                done.append(Outcome(job, record))
            if done or not self._procs or time.monotonic() >= deadline:
                return done
            time.sleep(0.05)

    def shutdown(self) -> None:
        for _job, proc, log in self._procs.values():
            proc.kill()
            proc.wait()
            log.close()
        self._procs.clear()


def _ray_execute(benchmark, config, workdir, key, threads, progress, sys_path):  # runs in a Ray worker
    import contextlib

    from lossnet.runs.worker import execute

    Path(workdir).mkdir(parents=True, exist_ok=True)
    with (
        open(Path(workdir) / LOG_FILE, "a", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        return execute(benchmark, config, workdir, key, threads=threads, progress=progress, sys_path=sys_path).to_json()


def ray_runtime_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``runtime_env`` of the sweep's Ray tasks: ``env_vars`` with :data:`FORWARDED_ENV` that
    are set in ``environ`` (default ``os.environ``), each path of an ``os.pathsep`` list made
    absolute (a worker's working directory is not the driver's). Empty dict when none is set."""
    environ = os.environ if environ is None else environ
    env_vars = {}
    for name in FORWARDED_ENV:
        value = environ.get(name)
        if value:
            env_vars[name] = os.pathsep.join(os.path.abspath(p) for p in value.split(os.pathsep) if p)
    return {"env_vars": env_vars} if env_vars else {}


def check_ray_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast when ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) does not accept TCP
    connections within ``timeout`` seconds; ``None``/``"auto"``/``"local"`` are not checked here.

    Raises:
        LossnetError: malformed address, or nothing listening there.
    """
    if not address or address in ("auto", "local"):
        return
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise LossnetError(f"--address {address!r}: expected auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        hint = "start it with 'ray start --head', or check the address and port"
        if host in ("127.0.0.1", "localhost", "::1"):
            # 'ray start --head --port P' listens on the node's IP, not on the loopback address
            ip = _node_ip()
            hint = (
                f"'ray start --head' listens on this node's IP address, not on {host}: use the address 'ray start' "
                f"printed{f' (probably {ip}:{port})' if ip else ''}, or --address auto for a cluster started on this machine"
            )
        raise LossnetError(f"cannot reach the Ray cluster at --address {address}: {reason} ({hint})") from exc


def _node_ip() -> str | None:
    """This machine's outward IP address (what Ray's head binds to), without sending anything."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def check_fits(nodes: list[dict[str, Any]], cpus_per_run: float, gpus_per_run: float) -> None:
    """Refuse a run size no node of the cluster can ever schedule (Ray would queue it forever).

    Args:
        nodes: ``ray.nodes()`` entries (``Alive``, ``Resources``).

    Raises:
        LossnetError: naming the option, what one run asks and what the largest node has.
    """
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    for option, kind, amount in (("--gpus-per-run", "GPU", gpus_per_run), ("--cpus-per-run", "CPU", cpus_per_run)):
        if not amount:
            continue
        most = max((float(r.get(kind, 0)) for r in alive), default=0.0)
        if most < amount:
            total = sum(float(r.get(kind, 0)) for r in alive)
            raise LossnetError(
                f"{option} {amount:g}: no node of the Ray cluster has {amount:g} {kind}(s) (largest node: {most:g}, "
                f"cluster: {total:g}); the runs would wait forever: lower {option} or add such nodes"
            )


class RayExecutor:
    """One Ray task per run, with declared ``num_cpus``/``num_gpus``; results return to the driver.

    Args:
        address: ``"auto"`` or ``HOST:PORT`` of a running cluster; None starts an in-process local
            instance (``num_cpus`` CPUs, no dashboard).
        cpus_per_run, gpus_per_run: resources each task declares (Ray schedules on them).
        num_cpus: CPUs of the local instance (default: all).
        max_in_flight: tasks submitted at once (default: cluster CPUs // cpus_per_run).

    Tasks are not retried by Ray (``max_retries=0``): a worker that dies is reported as a failed run.
    Tasks get :func:`ray_runtime_env` (``$LOSSNET_WEIGHTS_DIR``, ``$LOSSNET_SHARED``): the workers of
    a pre-started cluster do not inherit the driver's environment. A ``HOST:PORT`` address is
    checked with a 5 s TCP connect before ``ray.init``, so a wrong address fails at once instead of
    after Ray's own minutes-long retries.

    Raises:
        LossnetError: ray is not installed (``pip install lossnet[ray]``) or the cluster is unreachable.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        cpus_per_run: float = 1,
        gpus_per_run: float = 0,
        num_cpus: int | None = None,
        max_in_flight: int | None = None,
        progress: bool = False,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise LossnetError("the ray executor needs Ray: pip install 'lossnet[ray]'") from exc
        self._ray = ray
        self._started = False
        self.runtime_env = ray_runtime_env()
        if not ray.is_initialized():
            check_ray_address(address)
            try:
                if address:
                    ray.init(address=address, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            except Exception as exc:  # noqa: BLE001  (ConnectionError, RuntimeError, ValueError, ray's own)
                hint = (
                    "; for a cluster started on this machine with 'ray start --head', try --address auto"
                    if address and address not in ("auto", "local")
                    else ""
                )
                raise LossnetError(
                    f"cannot start/connect Ray (address {address or 'local'}): {type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:300]}{hint}"
                ) from exc
            self._started = True
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        try:
            check_fits(ray.nodes(), cpus_per_run, gpus_per_run)
        except LossnetError:
            if self._started:
                ray.shutdown()
            raise
        total = ray.cluster_resources().get("CPU", 1)
        self.max_in_flight = max_in_flight or max(1, int(total // max(cpus_per_run, 1e-9)))
        self.progress = progress
        options: dict[str, Any] = {"num_cpus": cpus_per_run, "num_gpus": gpus_per_run, "max_retries": 0}
        if self.runtime_env:
            options["runtime_env"] = self.runtime_env
        self._remote = ray.remote(**options)(_ray_execute)
        self._pending: dict[Any, Job] = {}
        self._sys_path = _import_paths()
        self._threads = max(1, int(cpus_per_run))

    @property
    def free_slots(self) -> int:
        return self.max_in_flight - len(self._pending)

    @property
    def active(self) -> int:
        return len(self._pending)

    def describe(self) -> str:
        res = self._ray.cluster_resources()
        return (
            f"ray executor: cluster {int(res.get('CPU', 0))} CPU(s), {int(res.get('GPU', 0))} GPU(s); "
            f"{self.cpus_per_run} CPU / {self.gpus_per_run} GPU per run, up to {self.max_in_flight} in flight"
        )

    def submit(self, job: Job) -> None:
        job.submitted_at = job.submitted_at or time.time()
        ref = self._remote.remote(
            job.benchmark, job.config, str(job.workdir), job.key, self._threads, self.progress, self._sys_path
        )
        self._pending[ref] = job

    def wait(self, timeout: float = 0.5) -> list[Outcome]:
        if not self._pending:
            return []
        ready, _ = self._ray.wait(list(self._pending), num_returns=len(self._pending), timeout=timeout)
        out = []
        for ref in ready:
            job = self._pending.pop(ref)
            try:
                record = RunRecord.from_json(self._ray.get(ref))
            except Exception as exc:  # noqa: BLE001  (worker crash, node loss: this run only)
                record = job.failure(f"ray task failed: {type(exc).__name__}: {exc}")
            out.append(Outcome(job, record))
        return out

    def shutdown(self) -> None:
        for ref in list(self._pending):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001
                pass
        self._pending.clear()
        if self._started:
            self._ray.shutdown()


def make_executor(name: str, **kwargs: Any):
    """``"local"`` or ``"ray"`` executor; unknown keyword arguments for the other kind are ignored."""
    if name == "local":
        return LocalExecutor(
            workers=kwargs.get("workers", 1), threads=kwargs.get("threads"), progress=kwargs.get("progress", False)
        )
    if name == "ray":
        return RayExecutor(
            address=kwargs.get("address"),
            cpus_per_run=kwargs.get("cpus_per_run", 1),
            gpus_per_run=kwargs.get("gpus_per_run", 0),
            num_cpus=kwargs.get("num_cpus"),
            max_in_flight=kwargs.get("max_in_flight"),
            progress=kwargs.get("progress", False),
        )
    raise LossnetError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
