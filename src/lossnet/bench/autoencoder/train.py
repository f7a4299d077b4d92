"""Autoencoder training (perceptual or pixel loss), checkpoint/resume, embedding and grids."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lossnet.bench.base import build_training_loss as build_loss
from lossnet.bench.base import resolve_device
from lossnet.bench.trainer import FitOutcome, TrainingTask, fit

from .datasets import to_input
from .model import ConvAutoencoder

__all__ = ["AutoencoderTask", "build_model", "train_autoencoder", "embed", "save_reconstruction_grid"]


def build_model(config: dict[str, Any]) -> ConvAutoencoder:
    return ConvAutoencoder(image_size=config["image_size"], embedding=config["embedding"], variational=config["variational"])


class AutoencoderTask(TrainingTask):
    """The autoencoder on shuffled uint8 images, reconstruction loss (+ KL for the VAE)."""

    def __init__(self, config: dict[str, Any], images: torch.Tensor, device: torch.device, progress: bool):
        self.config, self.images, self.device, self.progress = config, images, device, progress
        self.model = build_model(config).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config["lr"])
        self.loss_fn = build_loss(config).to(device)
        self.gen: torch.Generator | None = None

    def state(self) -> dict[str, Any]:
        return {"optimizer": self.opt.state_dict()}

    def load_state(self, state: dict[str, Any], start_epoch: int) -> None:
        self.opt.load_state_dict(state["optimizer"])

    def begin(self, start_epoch: int) -> None:
        self.gen = torch.Generator().manual_seed(self.config["seed"] + 1000 * start_epoch)

    def train_epoch(self, epoch: int, epochs: int) -> dict[str, Any] | None:
        bs, size, images = self.config["batch_size"], self.config["image_size"], self.images
        perm = torch.randperm(len(images), generator=self.gen)
        total, count = 0.0, 0
        bar = self.steps(math.ceil(len(images) / bs), f"AE epoch {epoch + 1}/{epochs}")
        for i in bar:
            x = to_input(images[perm[i * bs : (i + 1) * bs]], size).to(self.device)
            recon, mu, logvar = self.model(x)
            loss = self.loss_fn(recon, x)
            if logvar is not None:
                loss = loss + self.config["kl_weight"] * ConvAutoencoder.kl_divergence(mu, logvar)
            if not torch.isfinite(loss):
                return None
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += float(loss.detach()) * len(x)
            count += len(x)
            bar.set_postfix(loss=f"{total / count:.4g}")
        return {"train_loss": total / max(count, 1)}


def train_autoencoder(config: dict[str, Any], images: torch.Tensor, workdir: Path, *, progress: bool = True,
                      log: Callable[[str], None] | None = None) -> tuple[ConvAutoencoder, FitOutcome]:
    """Train (or resume) the autoencoder on uint8 ``images`` with the trainer core
    (:func:`lossnet.bench.trainer.fit`): checkpoint every epoch, resume, divergence policy."""
    from lossnet.bench.autoencoder import BENCHMARK

    device = resolve_device(config)
    task, outcome = fit(lambda: AutoencoderTask(config, images, device, progress), config, workdir,
                        resumable=BENCHMARK.resumable_keys(config), device=device, log=log, name="autoencoder")
    return task.model, outcome


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
