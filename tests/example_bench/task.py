"""The example benchmark's training task: its batches and one step. The trainer does the rest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from lossnet.bench.base import build_training_loss
from lossnet.bench.trainer import TrainingTask

if TYPE_CHECKING:  # the package imports this module
    from . import DenoiseConfig


def images(n: int, seed: int, size: int) -> torch.Tensor:
    """``n`` smooth random images (bilinear upsampling of 4x4 noise)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)


def noisy(x: torch.Tensor, seed: int) -> torch.Tensor:
    return (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)


class DenoiseTask(TrainingTask):
    def __init__(self, config: DenoiseConfig, device: torch.device, progress: bool):
        self.config, self.device, self.progress = config, device, progress
        self.model = torch.nn.Conv2d(3, 3, 3, padding=1).to(device)
        self.loss_fn = build_training_loss(config).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)

    def state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict[str, Any], start_epoch: int) -> None:
        self.optimizer.load_state_dict(state["optimizer"])

    def batches(self, epoch: int, epochs: int):
        c = self.config
        for step in range(c.steps):
            seed = c.seed * 1_000_003 + epoch * c.steps + step
            clean = images(4, seed, c.size)
            yield noisy(clean, seed), clean

    def batch_count(self, epoch: int) -> int:
        return int(self.config.steps)

    def step(self, batch) -> dict[str, Any]:
        noisy_images, clean = batch
        return {"loss": self.loss_fn(self.model(noisy_images).clamp(0, 1), clean)}
