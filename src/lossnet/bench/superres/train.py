"""Training loop: random HR crops -> degrade -> TransformNet -> loss, with validation and resume.

Every epoch (``iters_per_epoch`` optimiser steps) ends with a validation pass (mean Y-PSNR on the
held-out images); the weights with the best validation PSNR are kept in ``best.pt`` -- several of
the paper's runs collapsed to black images late in training, so the last weights are not reported.
``checkpoint.pt`` (model, optimiser, completed epochs, RNG states, best PSNR, history) is written
atomically after every epoch; calling :func:`train` again with the same workdir continues from it
(also with a larger ``epochs``). A non-finite training loss stops the run with status
``"diverged"``; the last good checkpoint is left untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from lossnet.atomic import atomic_save
from lossnet.bench.base import RUNTIME_KEYS, resolve_device
from lossnet.bench.base import build_training_loss as build_loss
from lossnet.errors import LossnetError

from .data import RandomCrops, center_crop, load_folder, select
from .degrade import crop_to_multiple, degrade
from .metrics import quantize, y_psnr
from .model import TransformNet

__all__ = ["TrainOutcome", "build_model", "build_loss", "train", "resolve_device", "CHECKPOINT", "BEST"]

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"

#: Keys that may change between a run and its resumption (evaluation-only or runtime settings).
_RESUMABLE_KEYS = frozenset({"epochs", "test", "grid_images", "preset"}) | RUNTIME_KEYS


@dataclass
class TrainOutcome:
    """What :func:`train` did. ``start_epoch`` is the number of epochs already done when it started."""

    status: str
    start_epoch: int
    epochs_done: int
    best_epoch: int | None
    best_psnr: float
    history: list[dict[str, float]] = field(default_factory=list)
    best_path: Path | None = None


def build_model(config: dict[str, Any]) -> TransformNet:
    return TransformNet(scale=config["scale"], num_blocks=config["num_blocks"], channels=config["channels"], skip=config["skip"])


def _fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """Config values a checkpoint must share with the run that resumes it.

    ``epochs`` may grow on resume with a constant learning rate, but not with the cosine schedule,
    whose curve depends on the total number of steps.
    """
    resumable = _RESUMABLE_KEYS if config["lr_schedule"] == "constant" else _RESUMABLE_KEYS - {"epochs"}
    return {k: v for k, v in sorted(config.items()) if k not in resumable}


def _val_images(config: dict[str, Any], train_items: list) -> tuple[list, list]:
    """(train arrays, val HR tensors). Without ``val`` folder, ``val_images`` are held out of the pool."""
    scale, crop = config["scale"], config["val_crop"]
    if config.get("val"):
        val_items = select(load_folder(config["val"], min_size=scale * 4), config["val_images"], config["seed"] + 1)
    else:
        if len(train_items) < 2:
            raise LossnetError("need at least 2 training images to hold out a validation set (or pass --val)")
        n_val = min(config["val_images"] or 1, len(train_items) - 1)
        held = {str(p) for p, _ in select(train_items, n_val, config["seed"] + 1)}
        val_items = [it for it in train_items if str(it[0]) in held]
        train_items = [it for it in train_items if str(it[0]) not in held]
    from lossnet.imageio import to_tensor

    val = [crop_to_multiple(to_tensor(center_crop(a, crop)), scale) for _, a in val_items]
    return train_items, val


def learning_rate(config: dict[str, Any], step: int) -> float:
    """Adam's learning rate at optimiser step ``step`` (0-based).

    ``lr_schedule == "constant"``: ``lr`` throughout (the paper). ``"cosine"``: ``lr * (1 + cos(pi t / T)) / 2``
    with ``T = epochs * iters_per_epoch`` -- a short run needs the decay to settle on a small residual
    instead of ending on Adam's step noise. A function of the step alone, so a resumed run continues
    on the same curve.
    """
    if config["lr_schedule"] == "constant":
        return config["lr"]
    total = config["epochs"] * config["iters_per_epoch"]
    return config["lr"] * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


@torch.no_grad()
def validate(model: nn.Module, val: list[torch.Tensor], scale: int, device: torch.device) -> float:
    """Mean Y-PSNR (border = scale) of ``model`` on the validation HR images."""
    was_training = model.training
    model.eval()
    scores = []
    for hr in val:
        sr = model(degrade(hr, scale)[None].to(device))[0].cpu()
        scores.append(y_psnr(quantize(sr), hr, border=scale))
    model.train(was_training)
    return float(sum(scores) / len(scores))


def train(config: dict[str, Any], workdir: Path, *, progress: bool = True, log: Callable[[str], None] | None = None) -> TrainOutcome:
    """Train (or resume training) the super-resolution network of ``config`` in ``workdir``.

    Args:
        config: resolved superres config (see :data:`lossnet.bench.superres.PRESETS`).
        workdir: folder for ``checkpoint.pt`` and ``best.pt``.
        progress: show a tqdm bar per epoch.
        log: called with one line per epoch (default: nothing).

    Returns:
        :class:`TrainOutcome`; ``status`` is ``"done"`` or ``"diverged"``.
    """
    from tqdm.auto import tqdm

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config)
    scale, crop = config["scale"], config["crop"]
    if crop % scale:
        raise LossnetError(f"crop {crop} must be a multiple of scale {scale}")

    pool = load_folder(config["train"], min_size=crop)
    pool = select(pool, config.get("train_images"), config["seed"])
    train_items, val = _val_images(config, pool)

    torch.manual_seed(config["seed"])
    model = build_model(config).to(device)
    loss_fn = build_loss(config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    gen = torch.Generator().manual_seed(config["seed"])
    start_epoch, best_psnr, best_epoch, history = 0, -math.inf, None, []

    ckpt_path, best_path = workdir / CHECKPOINT, workdir / BEST
    if ckpt_path.exists():
        try:
            ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is unusable
            raise LossnetError(f"cannot read checkpoint {ckpt_path}: {exc}; delete it to start over") from exc
        if ckpt.get("fingerprint") != _fingerprint(config):
            raise LossnetError(f"{ckpt_path} belongs to a different configuration; use another --out or delete it")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        start_epoch, best_psnr, best_epoch, history = ckpt["epoch"], ckpt["best_psnr"], ckpt["best_epoch"], ckpt["history"]

    crops = RandomCrops([a for _, a in train_items], crop, config["batch_size"], gen)
    status = "done"
    epoch = start_epoch
    for epoch in range(start_epoch, config["epochs"]):
        model.train()
        total = 0.0
        bar = tqdm(range(config["iters_per_epoch"]), desc=f"epoch {epoch + 1}/{config['epochs']}", disable=not progress, leave=False)
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = learning_rate(config, epoch * config["iters_per_epoch"] + step)
            hr = crops.next_batch()
            lr_img = degrade(hr, scale).to(device)
            hr = hr.to(device)
            loss = loss_fn(model(lr_img), hr)
            if not torch.isfinite(loss):
                status = "diverged"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            bar.set_postfix(loss=f"{loss.item():.4g}")
        if status == "diverged":
            if log:
                log(f"epoch {epoch + 1}: non-finite training loss; stopping (diverged)")
            break
        val_psnr = validate(model, val, scale, device)
        history.append({"epoch": epoch + 1, "train_loss": total / config["iters_per_epoch"], "val_psnr": val_psnr})
        if val_psnr > best_psnr:
            best_psnr, best_epoch = val_psnr, epoch + 1
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            atomic_save(best_path, lambda p: torch.save({"model": state, "epoch": best_epoch, "val_psnr": val_psnr}, p))
        ckpt = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": epoch + 1,
            "best_psnr": best_psnr,
            "best_epoch": best_epoch,
            "history": history,
            "fingerprint": _fingerprint(config),
        }
        atomic_save(ckpt_path, lambda p: torch.save(ckpt, p))
        if log:
            log(f"epoch {epoch + 1}: train loss {history[-1]['train_loss']:.5g}, val Y-PSNR {val_psnr:.3f} dB (best {best_psnr:.3f} @ {best_epoch})")
    epochs_done = history[-1]["epoch"] if history else start_epoch
    return TrainOutcome(status, start_epoch, epochs_done, best_epoch, best_psnr, history, best_path if best_path.exists() else None)
