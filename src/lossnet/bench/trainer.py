"""The trainer core shared by the training benchmarks (superres, roads, autoencoder).

One policy for all of them:

- **seeding**: ``torch.manual_seed(config["seed"])`` right before the benchmark builds its task
  (model, loss, optimiser), so a run is reproducible from its config alone;
- **checkpoints**: ``checkpoint.pt`` is written atomically after every epoch with the model, the
  task's own state (optimiser, generators, RNG), finished epochs, history and a *fingerprint* -- the
  config without runtime keys, ``preset`` and the benchmark's evaluation-only keys. It is read with
  ``torch.load(weights_only=True)``: a file that needs code execution to load (a planted pickle) is
  refused with :class:`~lossnet.errors.CheckpointError`, never executed;
- **resume**: a checkpoint with the same fingerprint continues where it stopped (also with a larger
  ``epochs`` where the benchmark allows it); one from a different config is an error naming the keys
  that differ;
- **validation**: when the task scores epochs (higher is better), the best weights are kept in
  ``best.pt``; otherwise the last epoch's weights are the best so far;
- **divergence**: a non-finite training loss stops training before the optimiser step, status
  ``"diverged"``; the model is restored to the best weights so far (if an epoch finished), so the
  benchmark reports their metrics;
- **history**: ``history.json`` (status, epochs, per-epoch rows, log lines), written atomically;
- **progress**: one tqdm bar per epoch over its steps (:meth:`TrainingTask.steps`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from lossnet.atomic import atomic_save, atomic_write_json
from lossnet.bench.profile import PhaseTimer
from lossnet.errors import CheckpointError
from lossnet.runs.identity import RUNTIME_KEYS

__all__ = [
    "TrainingTask",
    "FitOutcome",
    "fit",
    "configure_precision",
    "configure_determinism",
    "load_checkpoint",
    "fingerprint",
    "resumable_keys",
    "CHECKPOINT",
    "BEST",
    "HISTORY",
]

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
HISTORY = "history.json"
FORMAT = "lossnet-checkpoint/1"


class TrainingTask:
    """What a training benchmark supplies to :func:`fit`.

    Attributes:
        model: the network being trained (its ``state_dict`` is checkpointed by the core).
        progress: show per-epoch step bars.
    """

    model: torch.nn.Module
    progress: bool = True
    #: name of :meth:`score` in the history rows
    score_name: str = "score"
    #: mixed precision of the training forward passes: "off", "bf16" or "fp16" (set by :func:`fit`)
    amp: str = "off"
    #: the fp16 gradient scaler (set by :func:`fit` for ``amp="fp16"``)
    scaler: Any = None
    device: Any = None
    #: phase timer of ``train_epoch`` (:mod:`lossnet.bench.profile`); disabled (free) unless a
    #: profile or an estimate times the task
    timer: PhaseTimer = PhaseTimer()

    def autocast(self):
        """Context for a training forward pass: autocast to bf16/fp16 when ``amp`` asks for it.
        Validation and test metrics are computed outside it, in fp32."""
        if self.amp == "off":
            return contextlib.nullcontext()
        device_type = torch.device(self.device or "cpu").type
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16 if self.amp == "bf16" else torch.float16)

    def optimize(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``zero_grad``, backward, step -- through the gradient scaler with ``amp="fp16"``."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()

    def state(self) -> dict[str, Any]:
        """Everything besides the model needed to resume exactly (optimiser, generators, RNG)."""
        return {}

    def load_state(self, state: dict[str, Any], start_epoch: int) -> None:
        """Restore :meth:`state` of a checkpoint that finished ``start_epoch`` epochs."""

    def begin(self, start_epoch: int) -> None:
        """Called once before the first epoch of this call to :func:`fit` (after any resume)."""

    # -- the step: what a task supplies; the loop below owns everything around it --------------------

    #: the optimiser :meth:`train_epoch` steps (through :meth:`optimize`: the fp16 scaler lives there)
    optimizer: Any = None

    def batches(self, epoch: int, epochs: int) -> Iterable:
        """The batches of epoch ``epoch`` (0-based), as the task's data pipeline yields them (on the CPU)."""
        raise NotImplementedError

    def batch_count(self, epoch: int) -> int | None:
        """Batches in epoch ``epoch`` when :meth:`batches` has no ``len`` (the progress bar's total)."""
        return None

    def before_step(self, epoch: int, step: int) -> None:
        """Called before each step (e.g. a per-step learning-rate schedule)."""

    def to_device(self, batch: Any) -> Any:
        """``batch`` on :attr:`device` (the ``data`` phase): tensors of a tuple/list/dict moved, non-blocking."""
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, (tuple, list)):
            return type(batch)(self.to_device(b) for b in batch)
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        return batch

    def step(self, batch: Any) -> dict[str, Any] | None:
        """Forward pass and loss of one batch (run under :meth:`autocast`): ``{"loss": tensor, **logs}``
        (logs: tensors or numbers, recorded as floats), or None when the forward pass itself diverged."""
        raise NotImplementedError

    def after_optimize(self) -> None:
        """Called after each optimiser step (e.g. projecting weights onto a constraint set)."""

    def epoch_row(self, epoch: int, records: list[dict[str, float]]) -> dict[str, Any]:
        """The history row of an epoch from its steps' records (``loss`` and the logs, as floats)."""
        return {"train_loss": sum(r["loss"] for r in records) / max(len(records), 1)}

    def end_epoch(self, epoch: int, row: dict[str, Any]) -> dict[str, Any]:
        """The row after a whole epoch (e.g. with a validation value); not called when a step timer
        stopped the epoch early."""
        return row

    def postfix(self, record: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows after a step."""
        return {"loss": f"{record['loss']:.4g}"}

    def train_epoch(self, epoch: int, epochs: int) -> dict[str, Any] | None:
        """Train epoch ``epoch`` (0-based) -- the loop the trainer owns: per batch ``before_step``,
        ``to_device`` (phase ``data``), ``step`` under :meth:`autocast`, the non-finite check before
        the optimiser step (so the weights stay finite), :meth:`optimize` (phase ``backward``, the
        fp16 scaler), ``after_optimize``, the step's record, progress and the phase timer. Returns
        the history row, or None when the training loss became non-finite."""
        timer = self.timer
        it = self.batches(epoch, epochs)
        total = len(it) if hasattr(it, "__len__") else self.batch_count(epoch)
        bar = self.steps(it, self.epoch_label(epoch, epochs), total=total)
        records: list[dict[str, float]] = []
        for i, batch in enumerate(timer.iterate(bar)):
            self.before_step(epoch, i)
            with timer.phase("data"):
                batch = self.to_device(batch)
            with self.autocast():
                out = self.step(batch)
            if out is None:
                return None
            loss = out["loss"]
            if not torch.isfinite(loss):
                return None
            with timer.phase("backward"):
                self.optimize(loss, self.optimizer)
                self.after_optimize()
            record = {k: (float(v.detach()) if isinstance(v, torch.Tensor) else float(v)) for k, v in out.items()}
            records.append(record)
            bar.set_postfix(**self.postfix(record))
            if timer.end_step():
                return self.epoch_row(epoch, records) if records else None
        return self.end_epoch(epoch, self.epoch_row(epoch, records))

    def epoch_label(self, epoch: int, epochs: int) -> str:
        """The progress bar's description of an epoch."""
        return f"epoch {epoch + 1}/{epochs}"

    def score(self, epoch: int) -> float | None:
        """Validation score after ``epoch`` (higher is better), or None when the task has none."""
        return None

    def after_epoch(self, history: list[dict[str, Any]]) -> None:
        """Called after each epoch's checkpoint is written (e.g. to write a CSV log)."""

    def loss_signature(self) -> str | None:
        """Signature (:mod:`lossnet.signature`) of the perceptual loss this task trains with; None
        for a pixel loss. :func:`fit` puts it into :attr:`FitOutcome.signature`."""
        return None

    def steps(self, n: Iterable | int, desc: str, total: int | None = None):
        """A progress bar over one epoch's steps (``n`` steps, or an iterable of ``total`` items)."""
        from tqdm.auto import tqdm

        return tqdm(
            range(n) if isinstance(n, int) else n, desc=desc, total=total, disable=not self.progress, leave=False
        )


@dataclass
class FitOutcome:
    """What :func:`fit` did. ``start_epoch``: epochs already done when it started; ``has_weights``:
    the model holds trained weights worth evaluating (false only when it diverged in its first epoch)."""

    status: str
    start_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float = -math.inf
    best_path: Path | None = None
    checkpoint_path: Path | None = None
    log: list[str] = field(default_factory=list)
    has_weights: bool = True
    #: :meth:`TrainingTask.loss_signature` of the task
    signature: str | None = None

    @property
    def epochs_done(self) -> int:
        return self.history[-1]["epoch"] if self.history else self.start_epoch


def resumable_keys(benchmark: str, config: Any, resumable: Iterable[str] | None = None) -> frozenset:
    """``resumable``, or the keys the registered ``benchmark`` lets a checkpoint differ in (its
    ``resumable_keys``), looked up by name in the registry: a benchmark's training module does not
    import its own package (the package imports it)."""
    if resumable is not None:
        return frozenset(resumable)
    from lossnet.bench.base import get_benchmark

    return frozenset(get_benchmark(benchmark).resumable_keys(config))


def config_values(config: Any) -> dict[str, Any]:
    """A run's config as a dict (a benchmark's ``Config`` object, or heads fitting's dict): the
    checkpoint fingerprint is JSON, the boundary where configs are dicts."""
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def fingerprint(config: Any, resumable: Iterable[str] = ()) -> dict[str, Any]:
    """Config values a checkpoint must share with the run that resumes it."""
    skip = set(RUNTIME_KEYS) | {"preset"} | set(resumable)
    return {k: v for k, v in sorted(config_values(config).items()) if k not in skip}


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A lossnet checkpoint, read without executing code.

    Raises:
        CheckpointError: the file needs code execution to load (pickle), is corrupt or truncated,
            or is not a lossnet checkpoint.
    """
    import re
    import warnings

    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it references {found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path} is not a safe lossnet checkpoint: loading it would execute code{what}, which lossnet never does; "
            f"delete it to start over"
        ) from None
    except Exception as exc:  # noqa: BLE001 - zip/EOF/format errors all mean "unusable file"
        raise CheckpointError(
            f"cannot read checkpoint {path}: corrupt or truncated ({type(exc).__name__}); delete it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a lossnet checkpoint of this version (format {FORMAT}); delete it to start over"
        )
    return state


def _differences(stored: dict[str, Any], current: dict[str, Any]) -> str:
    keys = sorted(set(stored) | set(current), key=str)
    diffs = [
        f"{k} {stored.get(k)!r} -> {current.get(k)!r}"
        for k in keys
        if stored.get(k, "<absent>") != current.get(k, "<absent>")
    ]
    return ", ".join(diffs[:8]) + (f" and {len(diffs) - 8} more" if len(diffs) > 8 else "")


def fit(
    make_task: Callable[[], TrainingTask],
    config: Any,
    workdir: str | Path,
    *,
    resumable: Iterable[str] = (),
    device: Any = "cpu",
    log: Callable[[str], None] | None = None,
    name: str = "",
) -> tuple[TrainingTask, FitOutcome]:
    """Train (or resume) the task of ``config`` for ``config["epochs"]`` epochs in ``workdir``.

    Args:
        make_task: builds the task (model, loss, optimiser); called right after seeding.
        config: the run's ``Config`` object (or a dict: heads fitting), with ``seed`` and ``epochs``.
        workdir: folder of ``checkpoint.pt``, ``best.pt`` and ``history.json``.
        resumable: keys a checkpoint may differ in (see module docstring).
        device: ``map_location`` for checkpoints.
        log: receives one line per epoch / event.
        name: prefix of the error messages (benchmark name).

    Returns:
        ``(task, outcome)``; the task's model holds the final weights, or the best so far when
        training diverged.

    Raises:
        CheckpointError: an unsafe, unreadable or foreign checkpoint in ``workdir``.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if log:
            log(line)

    values = config_values(config)
    torch.manual_seed(values["seed"])
    task = make_task()
    configure_precision(task, values, device)
    fp = fingerprint(values, resumable)
    ckpt_path, best_path = workdir / CHECKPOINT, workdir / BEST
    start, history, best_score, best_epoch = _resume(task, ckpt_path, fp, device, name)
    if start:
        say(f"resuming after epoch {start} from {ckpt_path}")
    outcome = FitOutcome(
        "done", start, history, best_epoch, best_score, None, None, lines, signature=task.loss_signature()
    )
    epochs = int(values["epochs"])
    if start < epochs:
        task.begin(start)
    for epoch in range(start, epochs):
        task.model.train()
        row = task.train_epoch(epoch, epochs)
        if row is None:
            outcome.status = "diverged"
            say(f"epoch {epoch + 1}: non-finite training loss; stopping (diverged)")
            break
        row = {"epoch": epoch + 1, **row}
        score = task.score(epoch)
        if score is not None:
            row[task.score_name] = score
            if score > best_score:
                best_score, best_epoch = score, epoch + 1
                weights = {k: v.detach().cpu() for k, v in task.model.state_dict().items()}
                atomic_save(
                    best_path,
                    lambda p: torch.save({"format": FORMAT, "model": weights, "epoch": best_epoch, "score": score}, p),
                )
        else:
            best_epoch = epoch + 1  # without validation, the last finished epoch is the best so far
        history.append(row)
        ckpt = {
            "format": FORMAT,
            "fingerprint": fp,
            "epoch": epoch + 1,
            "history": history,
            "best_score": best_score,
            "best_epoch": best_epoch,
            "model": task.model.state_dict(),
            "task": task.state(),
            "scaler": task.scaler.state_dict() if task.scaler is not None else None,
        }
        atomic_save(ckpt_path, lambda p: torch.save(ckpt, p))
        task.after_epoch(history)
        say(
            f"epoch {epoch + 1}/{epochs}: "
            + ", ".join(f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "epoch")
        )
    outcome.history, outcome.best_epoch, outcome.best_score = history, best_epoch, best_score
    outcome.best_path = best_path if best_path.exists() else None
    outcome.checkpoint_path = ckpt_path if ckpt_path.exists() else None
    if outcome.status == "diverged":
        # the best weights so far: best.pt when the task validates, else the last finished epoch
        source = outcome.best_path or outcome.checkpoint_path
        outcome.has_weights = source is not None
        if source is not None:
            task.model.load_state_dict(load_checkpoint(source, device)["model"])
    task.model.eval()
    write_history(workdir, outcome)
    return task, outcome


def _resume(
    task: TrainingTask, ckpt_path: Path, fp: dict[str, Any], device: Any, name: str
) -> tuple[int, list, float, int | None]:
    """Load ``ckpt_path`` into ``task`` when it exists: ``(epochs done, history, best score, best epoch)``."""
    if not ckpt_path.exists():
        return 0, [], -math.inf, None
    state = load_checkpoint(ckpt_path, device)
    if state.get("fingerprint") != fp:
        raise CheckpointError(
            f"{name + ': ' if name else ''}{ckpt_path} belongs to a different configuration (differs in: "
            f"{_differences(state.get('fingerprint') or {}, fp)}); use another --out or delete it"
        )
    task.model.load_state_dict(state["model"])
    start = int(state["epoch"])
    task.load_state(state["task"], start)
    if task.scaler is not None and state.get("scaler"):
        task.scaler.load_state_dict(state["scaler"])
    return start, list(state["history"]), float(state["best_score"]), state["best_epoch"]


def configure_precision(task: TrainingTask, config: Any, device: Any) -> None:
    """``amp`` (off | bf16 | fp16 with a GradScaler), ``channels_last`` and cuDNN autotuning on CUDA."""
    config = config_values(config)
    device = torch.device(device)
    task.device = getattr(task, "device", None) or device
    task.amp = config.get("amp") or "off"
    if task.amp not in ("off", "bf16", "fp16"):
        raise ValueError(f"amp must be off, bf16 or fp16, got {task.amp!r}")
    task.scaler = torch.amp.GradScaler(device.type) if task.amp == "fp16" else None
    if config.get("channels_last"):
        task.model.to(memory_format=torch.channels_last)
    configure_determinism(config, device)


def configure_determinism(config: Any, device: Any) -> None:
    """``deterministic`` (the paper presets): cuDNN deterministic without autotuning and torch's
    deterministic algorithms (warning where an op has none), as the reference's super-resolution code
    sets cuDNN; otherwise cuDNN autotuning on CUDA. Set per run: a sweep's runs do not inherit it."""
    deterministic = bool(config_values(config).get("deterministic"))
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic and torch.device(device).type == "cuda"
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def write_history(workdir: Path, outcome: FitOutcome, **extra: Any) -> Path:
    """``history.json``: status, epochs, best epoch, per-epoch rows, log lines (and ``extra``)."""
    path = Path(workdir) / HISTORY
    atomic_write_json(
        path,
        {
            "status": outcome.status,
            "start_epoch": outcome.start_epoch,
            "epochs_done": outcome.epochs_done,
            "best_epoch": outcome.best_epoch,
            "history": outcome.history,
            "log": outcome.log,
            **extra,
        },
    )
    return path
