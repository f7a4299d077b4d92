"""Issue 31 (paper protocol IV), item 8: behaviour no test pinned before -- each of these survived the
fast suite when deliberately broken."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import lossnet.bench.superres as superres
from lossnet.bench.roads.train import reference_view_fn
from lossnet.bench.superres.evaluate import evaluate_set
from lossnet.bench.superres.metrics import quantize


def test_quantize_rounds_to_the_nearest_8_bit_level():
    x = torch.tensor([0.49, 0.51, 1.49, 1.51, 254.6, -3.0, 300.0]) / 255.0
    assert (quantize(x) * 255).round().tolist() == [
        0.0,
        1.0,
        1.0,
        2.0,
        255.0,
        0.0,
        255.0,
    ]  # floor would give 0, 0, 1, 1, 254


class _Fixed(nn.Module):
    """A "model" that ignores its input and returns one fixed image."""

    def __init__(self, image: torch.Tensor):
        super().__init__()
        self.image = image

    def forward(self, x):
        return self.image[None].to(x.device)


def test_full_protocol_crops_a_border_of_scale_pixels(tmp_path):
    scale, h, w = 4, 32, 40
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    (tmp_path / "set").mkdir()
    Image.fromarray(hr).save(tmp_path / "set" / "a.png")
    out = hr.astype(np.int32).copy()
    out[:scale] = 255 - out[:scale]  # garbage in the cropped border rows ...
    out[:, :scale] = 255 - out[:, :scale]
    out[scale, scale:-scale, 0] = np.clip(
        out[scale, scale:-scale, 0] + 20, 0, 255
    )  # ... and a difference in the first kept row
    model = _Fixed(torch.from_numpy(out.transpose(2, 0, 1).astype(np.float32) / 255.0))
    got = evaluate_set(model, tmp_path / "set", scale, name="s", progress=False, protocol="full")["s/psnr"]
    # by hand: BT.601 Y on [0, 255] differs only through R (65.481 / 255 per level), inside the crop
    dy = (out[..., 0] - hr[..., 0].astype(np.int32)) * 65.481 / 255.0
    mse = float(np.mean(dy[scale:-scale, scale:-scale] ** 2))
    assert got == pytest.approx(
        10 * math.log10(255.0**2 / mse), abs=1e-4
    )  # float32 images; a border of 3 or 5 moves it by dB


def _photos(folder: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for i in range(n):
        base = rng.integers(0, 255, (size // 4, size // 4, 3), dtype=np.uint8)
        Image.fromarray(base).resize((size, size), Image.BICUBIC).save(folder / f"{i}.png")
    return folder


def test_superres_scores_the_best_validation_epoch_not_the_last(tmp_path, monkeypatch):
    from lossnet.bench.superres import train as sr_train
    from lossnet.bench.trainer import load_checkpoint

    train = _photos(tmp_path / "train", 4, 64)
    test = _photos(tmp_path / "test", 1, 64)
    scores = iter([30.0, 10.0])  # epoch 1 validates best, epoch 2 worse
    monkeypatch.setattr(sr_train.SuperresTask, "score", lambda self, epoch: next(scores))
    config = superres.resolve_config(
        {
            "loss": "pixel",
            "train": [str(train)],
            "test": {"t": str(test)},
            "epochs": 2,
            "iters_per_epoch": 3,
            "crop": 32,
            "val_images": 1,
            "val_crop": 32,
            "device": "cpu",
        }
    )
    result = superres.run(config, tmp_path / "w", progress=False)
    assert result.metrics["val/psnr"] == 30.0

    def score_of(path):
        model = sr_train.build_model(superres.BENCHMARK.config_object(config))
        model.load_state_dict(load_checkpoint(path)["model"])
        return evaluate_set(model, test, 4, name="t", progress=False, grid_path=None)["t/psnr"]

    best, last = score_of(tmp_path / "w" / "best.pt"), score_of(tmp_path / "w" / "checkpoint.pt")
    assert best != pytest.approx(last, abs=1e-6)  # the two epochs' weights score differently
    assert result.metrics["t/psnr"] == pytest.approx(best, abs=1e-9)


def test_roads_reference_mask_rule_is_strictly_above_one_half():
    # alternating road / background columns, bilinearly halved: every resized mask value is exactly 0.5
    mask = np.tile(np.array([True, False]), (4, 2))
    image = np.zeros((4, 4, 3), np.uint8)
    from lossnet.bench.roads.evaluate import reference_view

    _, soft = reference_view(image, mask, 2)
    assert np.all(soft == 0.5)
    _, binary = reference_view_fn(2)(image, mask)
    assert binary.dtype == bool and not binary.any()  # > 0.5, not >= 0.5 (R:topology_aware_delineation/test.py:114)
