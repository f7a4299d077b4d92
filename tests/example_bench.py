"""A fifth benchmark in one file, to show what adding one takes: denoising with a perceptual loss.

A one-layer conv denoiser learns to remove Gaussian noise (sigma 0.1) from smooth random images,
trained with the config's loss (pixel MSE baseline, or a perceptual loss at net/layer) on the shared
trainer core; metric ``denoise/psnr`` on held-out images. Config, presets, CLI options, checkpoints,
resume, divergence and the store come from :mod:`lossnet.bench.base` and :mod:`lossnet.bench.trainer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossnet.bench.base import Benchmark, BenchResult, CommonConfig, build_training_loss, option, resolve_device


@dataclass
class DenoiseConfig(CommonConfig):
    loss: str = option("perceptual", "perceptual, or pixel (MSE baseline)", kind="str", choices=("perceptual", "pixel"))
    epochs: int = option(4, "epochs", kind="int", minimum=1)
    steps: int = option(10, "optimiser steps per epoch", kind="int", minimum=1)
    size: int = option(32, "image size", kind="int", minimum=8)
    lr: float = option(1e-2, "Adam learning rate", kind="float", positive=True)


class Denoise(Benchmark):
    name = "example_bench"
    Config = DenoiseConfig
    PRESETS = {"paper": {"epochs": 20, "steps": 100}, "quick": {}}
    BASELINE_LOSS = "pixel"

    def resumable_keys(self, config: dict[str, Any]) -> frozenset:
        return frozenset({"epochs"})

    def run(self, config: dict[str, Any], workdir: str | Path, *, progress: bool = True) -> BenchResult:
        import torch

        from lossnet.bench.trainer import TrainingTask, fit

        device = resolve_device(config)

        def images(n: int, seed: int) -> torch.Tensor:
            g = torch.Generator().manual_seed(seed)
            low = torch.rand(n, 3, 4, 4, generator=g)
            return torch.nn.functional.interpolate(low, size=config["size"], mode="bilinear", align_corners=False)

        def noisy(x: torch.Tensor, seed: int) -> torch.Tensor:
            return (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)

        class Task(TrainingTask):
            def __init__(self):
                self.progress = progress
                self.model = torch.nn.Conv2d(3, 3, 3, padding=1).to(device)
                self.loss_fn = build_training_loss(config).to(device)
                self.opt = torch.optim.Adam(self.model.parameters(), lr=config["lr"])

            def state(self):
                return {"optimizer": self.opt.state_dict()}

            def load_state(self, state, start_epoch):
                self.opt.load_state_dict(state["optimizer"])

            def train_epoch(self, epoch, epochs):
                total = 0.0
                for step in self.steps(config["steps"], f"denoise {epoch + 1}/{epochs}"):
                    seed = config["seed"] * 1_000_003 + epoch * config["steps"] + step
                    clean = images(4, seed).to(device)
                    loss = self.loss_fn(self.model(noisy(clean, seed).to(device)).clamp(0, 1), clean)
                    if not torch.isfinite(loss):
                        return None
                    self.opt.zero_grad()
                    loss.backward()
                    self.opt.step()
                    total += float(loss.detach())
                return {"train_loss": total / config["steps"]}

        task, outcome = fit(Task, config, workdir, resumable=self.resumable_keys(config), device=device, name=self.name)
        metrics = {}
        if outcome.has_weights:
            clean = images(8, 999)
            with torch.no_grad():
                out = task.model(noisy(clean, 999).to(device)).clamp(0, 1).cpu()
            metrics["denoise/psnr"] = float(-10 * math.log10(float(((out - clean) ** 2).mean())))
        return BenchResult(config, metrics, {"checkpoint": str(outcome.checkpoint_path)}, outcome.status, outcome.history)


BENCHMARK = Denoise()
