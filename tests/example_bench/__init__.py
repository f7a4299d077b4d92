"""A fifth benchmark, to show what adding one takes: this file (config, presets, run) and ``task.py``
(what one training step does). Denoising with a perceptual loss.

A one-layer conv denoiser learns to remove Gaussian noise (sigma 0.1) from smooth random images,
trained with the config's loss (pixel MSE baseline, or a perceptual loss at net/layer) on the shared
trainer, which owns the loop (mixed precision, channels_last, non-finite checks, checkpoints, resume,
progress); metric ``denoise/psnr`` on held-out images. Config, presets, CLI options and the store
come from :mod:`lossnet.bench.base`. A built-in benchmark is the same two files under
``lossnet/bench/<name>/`` plus one line in ``lossnet.bench.base.BENCHMARKS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossnet.bench.base import Benchmark, BenchResult, TrainingConfig, option, resolve_device


@dataclass
class DenoiseConfig(TrainingConfig):
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

    def resumable_keys(self, config: DenoiseConfig) -> frozenset:
        return frozenset({"epochs"})

    def run(self, config: DenoiseConfig | dict[str, Any], workdir: str | Path, *, progress: bool = True) -> BenchResult:
        import torch

        from lossnet.bench.trainer import fit

        from .task import DenoiseTask, images, noisy

        config = self.config_object(config)
        device = resolve_device(config)
        task, outcome = fit(
            lambda: DenoiseTask(config, device, progress),
            config,
            workdir,
            resumable=self.resumable_keys(config),
            device=device,
            name=self.name,
        )
        metrics = {}
        if outcome.has_weights:
            clean = images(8, 999, config.size)
            with torch.no_grad():
                out = task.model(noisy(clean, 999).to(device)).clamp(0, 1).cpu()
            metrics["denoise/psnr"] = float(-10 * math.log10(float(((out - clean) ** 2).mean())))
        return BenchResult(
            config, metrics, {"checkpoint": str(outcome.checkpoint_path)}, outcome.status, outcome.history
        )


BENCHMARK = Denoise()
