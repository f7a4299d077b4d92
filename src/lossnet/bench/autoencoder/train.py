"""Autoencoder training (perceptual or pixel loss) on the trainer core, held-out best-epoch
selection, checkpoint/resume, embedding and reconstruction grids.

With ``ae_val_fraction > 0`` (the ``paper`` preset: 0.2, as the reference) a seeded
``floor(fraction * n)`` of the AE images is held out; after every epoch the mean reconstruction
loss on it is the epoch's ``val_loss`` (history row), :meth:`AutoencoderTask.score` returns ``-val_loss`` so the
trainer core keeps the best epoch's weights in ``best.pt``, and :func:`train_autoencoder` returns
the model holding those weights. As in the reference's Lightning validation loop, the validation
loss is computed with everything in eval mode -- the autoencoder (BatchNorm running statistics)
and the loss network, also when ``loss_net_mode`` is ``train``. With ``ae_val_fraction = 0``
every image trains and the last epoch is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from lossnet.bench.base import build_training_loss as build_loss
from lossnet.bench.trainer import FitOutcome, TrainingTask, fit, load_checkpoint, resumable_keys
from lossnet.devices import resolve_device

from .datasets import to_input
from .mlp import split_indices
from .model import build_autoencoder

if TYPE_CHECKING:  # the package imports this module
    from lossnet.bench.autoencoder import AutoencoderConfig

__all__ = [
    "AutoencoderTask",
    "build_model",
    "split_ae_images",
    "train_autoencoder",
    "embed",
    "save_reconstruction_grid",
]

#: buffers of a loss network in train mode that training changes (BatchNorm statistics)
_STAT_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def build_model(config: AutoencoderConfig) -> nn.Module:
    return build_autoencoder(config.model, config.image_size, config.embedding, config.variational)


def split_ae_images(n: int, config: AutoencoderConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded ``(train_idx, val_idx)`` of the AE images: ``floor(ae_val_fraction * n)`` held out."""
    fraction = float(config.ae_val_fraction or 0.0)
    if fraction <= 0:
        return torch.arange(n), torch.empty(0, dtype=torch.long)
    return split_indices(n, fraction, config.seed + 7, floor=True)


@contextmanager
def _all_eval(*modules: nn.Module):
    """Every submodule in eval mode for the block (bypassing a loss network's own ``train``), then restored."""
    flags = [(m, m.training) for top in modules for m in top.modules()]
    for m, _ in flags:
        m.training = False
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


class AutoencoderTask(TrainingTask):
    """The autoencoder on shuffled uint8 images, reconstruction loss (+ KL for the VAE); scored by
    the held-out images' loss when there are any."""

    #: history rows hold ``val_loss`` (from :meth:`end_epoch`) and this score, its negative
    score_name = "neg_val_loss"

    def __init__(
        self,
        config: AutoencoderConfig,
        images: torch.Tensor,
        val_images: torch.Tensor | None,
        device: torch.device,
        progress: bool,
    ):
        self.config, self.images, self.device, self.progress = config, images, device, progress
        self.val_images = val_images if val_images is not None and len(val_images) else None
        self.model = build_model(config).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.loss_fn = build_loss(config).to(device)
        self.gen: torch.Generator | None = None
        self._val_loss: float | None = None

    def loss_signature(self) -> str | None:
        return getattr(self.loss_fn, "signature", None)  # None: a pixel loss

    def _loss_net_stats(self) -> dict[str, torch.Tensor]:
        return {
            k: v.detach().cpu().clone()
            for k, v in self.loss_fn.named_buffers()
            if k.rsplit(".", 1)[-1] in _STAT_BUFFERS
        }

    def state(self) -> dict[str, Any]:
        # a loss network in train mode updates its BatchNorm statistics: they belong to the run's state
        return {"optimizer": self.optimizer.state_dict(), "loss_net_stats": self._loss_net_stats()}

    def load_state(self, state: dict[str, Any], start_epoch: int) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        stats = state.get("loss_net_stats") or {}
        if stats:
            buffers = dict(self.loss_fn.named_buffers())
            for k, v in stats.items():
                if k in buffers:
                    buffers[k].copy_(v.to(buffers[k].device))

    def begin(self, start_epoch: int) -> None:
        self.gen = torch.Generator().manual_seed(self.config.seed + 1000 * start_epoch)

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        recon, mu, logvar = self.model(x)
        loss = self.loss_fn(recon, x)
        if logvar is not None:
            loss = loss + self.config.kl_weight * self.model.kl_divergence(mu, logvar)
        return loss

    def batches(self, epoch: int, epochs: int):
        """uint8 image batches of a seeded shuffle (the task's own generator, checkpoint-independent)."""
        bs, images = self.config.batch_size, self.images
        perm = torch.randperm(len(images), generator=self.gen)
        for i in range(math.ceil(len(images) / bs)):
            yield images[perm[i * bs : (i + 1) * bs]]

    def batch_count(self, epoch: int) -> int:
        return math.ceil(len(self.images) / self.config.batch_size)

    def epoch_label(self, epoch: int, epochs: int) -> str:
        return f"AE epoch {epoch + 1}/{epochs}"

    def to_device(self, batch: torch.Tensor) -> torch.Tensor:
        return to_input(batch, self.config.image_size).to(self.device, non_blocking=True)

    def step(self, x: torch.Tensor) -> dict[str, Any]:
        with self.timer.phase("model"):
            recon, mu, logvar = self.model(x)
        with self.timer.phase("loss_net"):
            loss = self.loss_fn(recon, x)
            if logvar is not None:
                loss = loss + self.config.kl_weight * self.model.kl_divergence(mu, logvar)
        return {"loss": loss, "count": len(x)}

    def epoch_row(self, epoch: int, records: list[dict[str, float]]) -> dict[str, Any]:
        # per-batch means weighted by batch size, summed in step order (as the loop always did)
        total, count = 0.0, 0
        for r in records:
            total += r["loss"] * r["count"]
            count += int(r["count"])
        return {"train_loss": total / max(count, 1)}

    def end_epoch(self, epoch: int, row: dict[str, Any]) -> dict[str, Any]:
        self._val_loss = None
        if self.val_images is not None:
            self._val_loss = row["val_loss"] = self.validation_loss()
        return row

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean loss over the held-out images (per-batch means weighted by batch size), all in eval mode."""
        bs, size, images = self.config.batch_size, self.config.image_size, self.val_images
        total = 0.0
        with _all_eval(self.model, self.loss_fn):
            for i in range(0, len(images), bs):
                x = to_input(images[i : i + bs], size).to(self.device)
                total += float(self._loss(x)) * len(x)
        return total / len(images)

    def score(self, epoch: int) -> float | None:
        """``-val_loss`` of the epoch just trained (higher is better), None without held-out images."""
        if self._val_loss is None:
            return None
        return -self._val_loss if math.isfinite(self._val_loss) else -math.inf


def train_autoencoder(
    config: AutoencoderConfig,
    images: torch.Tensor,
    workdir: Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    resumable: Iterable[str] | None = None,
) -> tuple[nn.Module, FitOutcome]:
    """Train (or resume) the autoencoder on uint8 ``images`` with the trainer core
    (:func:`lossnet.bench.trainer.fit`): checkpoint every epoch, resume, divergence policy, and --
    with held-out images -- the best validation epoch's weights (``best.pt``) in the returned model.
    ``resumable``: config keys a checkpoint may differ in (default: the registered benchmark's ``resumable_keys``)."""
    device = resolve_device(config)
    tr, val = split_ae_images(len(images), config)
    train_images, val_images = (images, None) if not len(val) else (images[tr], images[val])
    task, outcome = fit(
        lambda: AutoencoderTask(config, train_images, val_images, device, progress),
        config,
        workdir,
        resumable=resumable_keys("autoencoder", config, resumable),
        device=device,
        log=log,
        name="autoencoder",
    )
    if outcome.status == "done" and outcome.best_path is not None:
        # fit leaves the last epoch's weights in a finished run; the held-out loss chose another
        task.model.load_state_dict(load_checkpoint(outcome.best_path, device)["model"])
        task.model.eval()
    return task.model, outcome


@torch.no_grad()
def embed(
    model: nn.Module,
    images: torch.Tensor,
    image_size: int,
    *,
    batch_size: int = 256,
    device: torch.device | None = None,
    progress: bool = True,
    desc: str = "embed",
) -> torch.Tensor:
    """Deterministic codes (mu) of uint8 ``images`` as float ``(N, embedding)`` on the CPU (eval mode)."""
    model.eval()
    device = device or next(model.parameters()).device
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, leave=False):
        out.append(model.encode(to_input(images[i : i + batch_size], image_size).to(device))[0].cpu())
    return torch.cat(out) if out else torch.empty(0, model.embedding)


@torch.no_grad()
def save_reconstruction_grid(model: nn.Module, images: torch.Tensor, image_size: int, path: Path, n: int = 8) -> None:
    """PNG grid: top row inputs, bottom row reconstructions (written atomically)."""
    from torchvision.utils import make_grid

    from lossnet.imageio import save_image

    model.eval()
    x = to_input(images[:n], image_size).to(next(model.parameters()).device)
    recon = model(x)[0]
    save_image(path, make_grid(torch.cat([x, recon]).cpu(), nrow=len(x), padding=2, pad_value=1.0))
