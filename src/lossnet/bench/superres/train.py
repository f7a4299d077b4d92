"""Training loop: random HR crops -> degrade -> TransformNet -> loss, with validation and resume.

Every epoch (``iters_per_epoch`` optimiser steps) ends with a validation pass (mean Y-PSNR on the
held-out images); the weights with the best validation PSNR are kept in ``best.pt`` -- several of
the paper's runs collapsed to black images late in training, so the last weights are not reported.
``checkpoint.pt`` (model, optimiser, completed epochs, RNG states, best PSNR, history) is written
atomically after every epoch; calling :func:`train` again with the same workdir continues from it
(also with a larger ``epochs``). Checkpointing, resume, divergence and history follow the trainer
core (:mod:`lossnet.bench.trainer`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
from torch import nn

from lossnet.bench.base import build_training_loss as build_loss
from lossnet.bench.trainer import FitOutcome, TrainingTask, fit, resumable_keys
from lossnet.devices import resolve_device
from lossnet.errors import LossnetError

from .data import RandomCrops, center_crop, load_folder, select
from .degrade import crop_to_multiple, degrade
from .metrics import quantize, y_psnr
from .model import TransformNet

if TYPE_CHECKING:  # the package imports this module
    from lossnet.bench.superres import SuperresConfig


__all__ = [
    "SuperresTask",
    "build_model",
    "prepare_data",
    "training_setup",
    "train",
    "evaluate",
    "learning_rate",
    "validate",
    "validate_reference",
]


def build_model(config: SuperresConfig) -> TransformNet:
    return TransformNet(
        scale=config.scale,
        num_blocks=config.num_blocks,
        channels=config.channels,
        skip=config.skip,
        output_bn=config.output_bn,
    )


def _val_images(config: SuperresConfig, train_items: list) -> tuple[list, list]:
    """(train arrays, val HR tensors). Without ``val`` folder, ``val_images`` are held out of the pool."""
    scale, crop = config.scale, config.val_crop
    if config.val:
        val_items = select(load_folder(config.val, min_size=scale * 4), config.val_images, config.seed + 1)
    else:
        if len(train_items) < 2:
            raise LossnetError("need at least 2 training images to hold out a validation set (or pass --val)")
        n_val = min(config.val_images or 1, len(train_items) - 1)
        held = {str(p) for p, _ in select(train_items, n_val, config.seed + 1)}
        val_items = [it for it in train_items if str(it[0]) in held]
        train_items = [it for it in train_items if str(it[0]) not in held]
    from lossnet.imageio import to_tensor

    val = [crop_to_multiple(to_tensor(center_crop(a, crop)), scale) for _, a in val_items]
    return train_items, [(degrade(hr, scale), hr) for hr in val]


def _reference_data(config: SuperresConfig) -> tuple[list[Path], list[tuple[torch.Tensor, torch.Tensor]]]:
    """The reference pipeline's training files and validation pairs, chosen from file *names* (nothing
    is decoded but the validation images): the same seeded rule as :func:`_val_images`, so a folder
    whose images all decode gives the same subsets as the eager crops pipeline."""
    from lossnet.imageio import list_images

    from .reference import ReferencePairs

    paths = select([p for folder in config.train for p in list_images(folder)], config.train_images, config.seed)
    if config.val:
        val_paths = select(list_images(config.val), config.val_images, config.seed + 1)
    else:
        if len(paths) < 2:
            raise LossnetError("need at least 2 training images to hold out a validation set (or pass --val)")
        held = {str(p) for p in select(paths, min(config.val_images, len(paths) - 1), config.seed + 1)}
        val_paths = [p for p in paths if str(p) in held]
        paths = [p for p in paths if str(p) not in held]
    val_set = ReferencePairs(val_paths, config.scale)
    return paths, [val_set[i] for i in range(len(val_set))]


def learning_rate(config: SuperresConfig, step: int) -> float:
    """Adam's learning rate at optimiser step ``step`` (0-based).

    ``lr_schedule == "constant"``: ``lr`` throughout (the paper). ``"cosine"``: ``lr * (1 + cos(pi t / T)) / 2``
    with ``T = epochs * iters_per_epoch`` -- a short run needs the decay to settle on a small residual
    instead of ending on Adam's step noise. A function of the step alone, so a resumed run continues
    on the same curve.
    """
    if config.lr_schedule == "constant":
        return config.lr
    total = config.epochs * config.iters_per_epoch
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


@torch.no_grad()
def validate(model: nn.Module, val: list[tuple[torch.Tensor, torch.Tensor]], scale: int, device: torch.device) -> float:
    """Mean Y-PSNR (border = scale) of ``model`` on the validation ``(lr, hr)`` pairs."""
    was_training = model.training
    model.eval()
    scores = []
    for lr, hr in val:
        sr = model(lr[None].to(device))[0].cpu()
        scores.append(y_psnr(quantize(sr), hr, border=scale))
    model.train(was_training)
    return float(sum(scores) / len(scores))


@torch.no_grad()
def validate_reference(
    model: nn.Module, val: list[tuple[torch.Tensor, torch.Tensor]], batch_size: int, device: torch.device
) -> float:
    """The reference's validation PSNR (``R:src/super_res/train.py:87-127``): torchmetrics' PSNR of
    each batch of ``batch_size`` consecutive pairs (:func:`~lossnet.bench.superres.reference.torchmetrics_psnr`:
    Y with +16 of the raw output, unshaved, unquantised, range inferred from the batch's HR Y), averaged
    over the batches weighted by their sizes (its ``AverageMeter``). Pairs of different sizes are not
    batched together."""
    from .reference import torchmetrics_psnr

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    i = 0
    while i < len(val):
        j = i + 1
        while (
            j < len(val)
            and j - i < batch_size
            and val[j][0].shape == val[i][0].shape
            and val[j][1].shape == val[i][1].shape
        ):
            j += 1
        lr = torch.stack([p[0] for p in val[i:j]]).to(device)
        hr = torch.stack([p[1] for p in val[i:j]])
        total += torchmetrics_psnr(model(lr).cpu(), hr) * (j - i)
        count += j - i
        i = j
    model.train(was_training)
    return total / max(count, 1)


class SuperresTask(TrainingTask):
    """TransformNet on random HR crops -> degrade -> loss; validation Y-PSNR scores each epoch."""

    score_name = "val_psnr"

    def __init__(
        self,
        config: SuperresConfig,
        train_items: list,
        val: list[tuple[torch.Tensor, torch.Tensor]],
        device: torch.device,
        progress: bool,
    ):
        self.config, self.val, self.device, self.progress = config, val, device, progress
        self.model = build_model(config).to(device)
        self.loss_fn = build_loss(config).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.train_items = train_items  # crops: [(path, array)]; reference: [path]
        self.crops: RandomCrops | None = None

    def loss_signature(self) -> str | None:
        return getattr(self.loss_fn, "signature", None)  # None: a pixel loss

    def state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state(self, state: dict[str, Any], start_epoch: int) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])

    def begin(self, start_epoch: int) -> None:
        if self.config.pipeline == "crops":
            self.crops = RandomCrops(
                [a for _, a in self.train_items], self.config.crop, self.config.batch_size, self.gen
            )

    def batches(self, epoch: int, epochs: int):
        """``(lr, hr)`` batches of one epoch: random crops degraded in torch, or the reference pairs
        through a DataLoader (lazy decoding, workers, pinned memory; order drawn from the checkpointed
        generator, so a resumed run sees the same batches)."""
        config = self.config
        if config.pipeline == "crops":
            for _ in range(config.iters_per_epoch):
                hr = self.crops.next_batch()
                yield degrade(hr, config.scale), hr
            return
        from .reference import ReferencePairs

        data = ReferencePairs(self.train_items, config.scale)
        sampler = torch.utils.data.RandomSampler(
            data, num_samples=config.iters_per_epoch * config.batch_size, generator=self.gen
        )
        workers = int(config.num_workers or 0)
        yield from torch.utils.data.DataLoader(
            data,
            batch_size=config.batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    def batch_count(self, epoch: int) -> int:
        return int(self.config.iters_per_epoch)

    def before_step(self, epoch: int, step: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, epoch * self.config.iters_per_epoch + step)

    def step(self, batch) -> dict[str, Any]:
        lr_img, hr = batch
        with self.timer.phase("model"):
            sr = self.model(lr_img)
        with self.timer.phase("loss_net"):
            loss = self.loss_fn(sr, hr)
        return {"loss": loss}

    def epoch_row(self, epoch: int, records: list[dict[str, float]]) -> dict[str, Any]:
        total = 0.0
        for r in records:
            total += r["loss"]
        return {"train_loss": total / self.config.iters_per_epoch}

    def score(self, epoch: int) -> float:
        if self.config.val_metric == "reference":
            return validate_reference(self.model, self.val, int(self.config.batch_size), self.device)
        return validate(self.model, self.val, self.config.scale, self.device)


def prepare_data(config: SuperresConfig) -> tuple[list, list[tuple[torch.Tensor, torch.Tensor]]]:
    """``(training items, validation (lr, hr) pairs)`` of the config's pipeline."""
    if config.pipeline == "reference":
        return _reference_data(config)
    pool = load_folder(config.train, min_size=config.crop)
    pool = select(pool, config.train_images, config.seed)
    return _val_images(config, pool)


def training_setup(config: SuperresConfig):
    """The :class:`lossnet.bench.profile.TrainingSetup` of ``config`` (for step timing)."""
    from lossnet.bench.profile import TrainingSetup
    from lossnet.bench.trainer import configure_precision

    device = resolve_device(config)
    train_items, val = prepare_data(config)
    torch.manual_seed(config.seed)
    task = SuperresTask(config, train_items, val, device, progress=False)
    configure_precision(task, config, device)
    return TrainingSetup(task, int(config.iters_per_epoch), int(config.epochs))


def train(
    config: SuperresConfig,
    workdir: Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    resumable: Iterable[str] | None = None,
) -> tuple[SuperresTask, FitOutcome]:
    """Train (or resume training) the super-resolution network of ``config`` in ``workdir``.

    Returns:
        ``(task, outcome)`` of :func:`lossnet.bench.trainer.fit`; ``outcome.status`` is ``"done"``
        or ``"diverged"``; ``best.pt`` holds the weights with the best validation Y-PSNR.
        ``resumable``: config keys a checkpoint may differ in (default: the registered benchmark's ``resumable_keys``).
    """
    device = resolve_device(config)
    train_items, val = prepare_data(config)
    return fit(
        lambda: SuperresTask(config, train_items, val, device, progress),
        config,
        workdir,
        resumable=resumable_keys("superres", config, resumable),
        device=device,
        log=log,
        name="superres",
    )


def evaluate(
    config: SuperresConfig,
    workdir: Path,
    task: SuperresTask | None,
    outcome: FitOutcome | None,
    *,
    progress: bool = True,
):
    """Metrics of the best weights (``val/psnr``, per test set PSNR/SSIM next to bicubic) and PNG grids
    under the config's test protocol; with ``task`` None (``baseline = "bicubic"``) bicubic alone."""
    from lossnet.bench.base import BenchResult
    from lossnet.bench.trainer import load_checkpoint, write_history

    from .evaluate import evaluate_set

    metrics: dict[str, float] = {}
    artifacts: dict[str, str] = {}
    model = None
    device = task.device if task is not None else resolve_device(config)
    if outcome is not None and outcome.best_path is not None:
        model = build_model(config).to(device)
        model.load_state_dict(load_checkpoint(outcome.best_path, device)["model"])
        metrics["val/psnr"] = float(outcome.best_score)
        artifacts["best_checkpoint"] = str(outcome.best_path)
    if outcome is not None and outcome.checkpoint_path is not None:
        artifacts["checkpoint"] = str(outcome.checkpoint_path)
    for name, folder in config.test.items():
        grid = workdir / f"grid_{name}.png"
        metrics.update(
            evaluate_set(
                model,
                folder,
                config.scale,
                name=name,
                device=device,
                grid_path=grid if model is not None else None,
                grid_images=config.grid_images,
                progress=progress,
                protocol=config.protocol,
            )
        )
        if model is not None:
            artifacts[f"grid_{name}"] = str(grid)
    if outcome is None:  # bicubic baseline: nothing was trained
        return BenchResult(config=config, metrics=metrics, artifacts=artifacts, status="done")
    details = [
        {
            "epoch": h["epoch"],
            "train_loss": h["train_loss"],
            "val_psnr": h["val_psnr"],
            "best": "*" if h["epoch"] == outcome.best_epoch else "",
        }
        for h in outcome.history
    ]
    artifacts["history"] = str(write_history(workdir, outcome))
    return BenchResult(
        config=config,
        metrics=metrics,
        artifacts=artifacts,
        status=outcome.status,
        details=details,
        signature=outcome.signature,
    )
