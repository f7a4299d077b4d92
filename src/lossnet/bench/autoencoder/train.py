"""Autoencoder training (perceptual or pixel loss), checkpoint/resume, embedding and grids."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lossnet.bench.base import build_training_loss as build_loss
from lossnet.bench.base import resolve_device

from .datasets import to_input
from .model import ConvAutoencoder

__all__ = ["CHECKPOINT", "TrainOutcome", "build_model", "build_loss", "resolve_device", "train_autoencoder", "embed",
           "save_reconstruction_grid"]

CHECKPOINT = "ae_checkpoint.pt"


def build_model(config: dict[str, Any]) -> ConvAutoencoder:
    return ConvAutoencoder(image_size=config["image_size"], embedding=config["embedding"], variational=config["variational"])


@dataclass
class TrainOutcome:
    status: str
    start_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from lossnet.atomic import atomic_save

    atomic_save(path, lambda tmp: torch.save(state, tmp))


def train_autoencoder(config: dict[str, Any], images: torch.Tensor, workdir: Path, *, progress: bool = True,
                      log: Callable[[str], None] = print) -> tuple[ConvAutoencoder, TrainOutcome]:
    """Train (or resume) the autoencoder on uint8 ``images``; a checkpoint is written after every epoch.

    A checkpoint in ``workdir`` from the same config (compared without runtime keys) is resumed from;
    a checkpoint of another config is an error rather than silently mixed in.
    """
    from lossnet.bench.base import RUNTIME_KEYS
    from lossnet.errors import LossnetError

    device = resolve_device(config)
    torch.manual_seed(config["seed"])
    model = build_model(config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    history: list[dict[str, Any]] = []
    start = 0
    ckpt = workdir / CHECKPOINT
    ident = {k: v for k, v in config.items() if k not in RUNTIME_KEYS}
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state.get("config") != ident:
            raise LossnetError(f"autoencoder: {ckpt} belongs to a different config; use another --out or delete it")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, history = state["epoch"], state["history"]
        if start:
            log(f"resuming autoencoder training after epoch {start}")
    if start >= config["epochs"]:
        return model, TrainOutcome("done", start, history)
    loss_fn = build_loss(config).to(device)
    g = torch.Generator().manual_seed(config["seed"] + 1000 * start)
    bs, size = config["batch_size"], config["image_size"]
    steps = math.ceil(len(images) / bs)
    status = "done"
    for epoch in range(start, config["epochs"]):
        model.train()
        perm = torch.randperm(len(images), generator=g)
        total, count = 0.0, 0
        bar = tqdm(range(steps), desc=f"AE epoch {epoch + 1}/{config['epochs']}", disable=not progress, leave=False)
        for i in bar:
            x = to_input(images[perm[i * bs : (i + 1) * bs]], size).to(device)
            recon, mu, logvar = model(x)
            loss = loss_fn(recon, x)
            if logvar is not None:
                loss = loss + config["kl_weight"] * ConvAutoencoder.kl_divergence(mu, logvar)
            if not torch.isfinite(loss):
                status = "diverged"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(x)
            count += len(x)
            bar.set_postfix(loss=f"{total / count:.4g}")
        if status != "done":
            log(f"autoencoder training diverged in epoch {epoch + 1}")
            break
        history.append({"epoch": epoch + 1, "train_loss": total / max(count, 1)})
        log(f"AE epoch {epoch + 1}: train loss {total / max(count, 1):.5g}")
        _save_checkpoint(ckpt, {"config": ident, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                "epoch": epoch + 1, "history": history})
    return model, TrainOutcome(status, start, history)


@torch.no_grad()
def embed(model: ConvAutoencoder, images: torch.Tensor, image_size: int, *, batch_size: int = 256,
          device: torch.device | None = None, progress: bool = True, desc: str = "embed") -> torch.Tensor:
    """Deterministic codes (mu) of uint8 ``images`` as float ``(N, embedding)`` on the CPU."""
    model.eval()
    device = device or next(model.parameters()).device
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, leave=False):
        out.append(model.encode(to_input(images[i : i + batch_size], image_size).to(device))[0].cpu())
    return torch.cat(out) if out else torch.empty(0, model.embedding)


@torch.no_grad()
def save_reconstruction_grid(model: ConvAutoencoder, images: torch.Tensor, image_size: int, path: Path, n: int = 8) -> None:
    """PNG grid: top row inputs, bottom row reconstructions (written atomically)."""
    from torchvision.utils import make_grid

    from lossnet.imageio import save_image

    model.eval()
    x = to_input(images[:n], image_size).to(next(model.parameters()).device)
    recon = model(x)[0]
    save_image(path, make_grid(torch.cat([x, recon]).cpu(), nrow=len(x), padding=2, pad_value=1.0))
