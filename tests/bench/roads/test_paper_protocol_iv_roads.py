"""Issue 31 (paper protocol IV), roads: K = 1 training as the authors' experiments, test-time BatchNorm
with each tile's statistics as their test script (no ``.eval()``), and the validation split's scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import lossnet.bench.roads as roads
from lossnet.bench.roads.train import predict_tile
from lossnet.bench.roads.unet import IterativeUNet, ReferenceUNet

# -- the authors' U-net, written again from their train.py (UNet_block_creator / UNet_Model) -----------


class _RefBlock(nn.Module):
    """Their block: activation chosen with the inverted condition (slope != 0 -> ReLU), 4x4 stride-2
    (transposed) conv without bias, BatchNorm."""

    def __init__(self, cin: int, cout: int, transposed: bool, slope: float):
        super().__init__()
        act = nn.ReLU(inplace=True) if slope != 0 else nn.LeakyReLU(slope, inplace=True)
        conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(cin, cout, 4, 2, 1, bias=False)
        self.layer = nn.Sequential(act, conv, nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.layer(x)


class _RefUNet(nn.Module):
    def __init__(self, c: int = 4, prelud: float = 0.2, preluu: float = 0.0):
        super().__init__()
        self.down1 = _RefBlock(c, c * 2, False, prelud)
        self.down2 = _RefBlock(c * 2, c * 4, False, prelud)
        self.down3 = _RefBlock(c * 4, c * 8, False, prelud)
        self.down4 = _RefBlock(c * 8, c * 8, False, prelud)
        self.up4 = _RefBlock(c * 8, c * 8, True, preluu)
        self.up3 = _RefBlock(c * 16, c * 4, True, preluu)
        self.up2 = _RefBlock(c * 8, c * 2, True, preluu)
        self.up1 = _RefBlock(c * 4, 1, True, preluu)
        self.active = nn.Sigmoid()

    def forward(self, x):
        i1 = self.down1(x)
        i2 = self.down2(i1)
        i3 = self.down3(i2)
        i4 = self.down4(i3)
        y = self.up4(i4)
        y = self.up3(torch.cat([y, i3], 1))
        y = self.up2(torch.cat([y, i2], 1))
        y = self.up1(torch.cat([y, i1], 1))
        return self.active(y)


def _reference_test_forward(unet: nn.Module, image: torch.Tensor, k: int) -> torch.Tensor:
    """Their test.py loop for one tile (batch size 1): K iterations on [image, previous prediction],
    the net as loaded (train mode: they never call .eval()), under no_grad."""
    with torch.no_grad():
        prev = torch.zeros_like(image[:, :1])
        for _ in range(k):
            prev = unet(torch.cat((image, prev), dim=1))
    return prev


def _trained_looking(seed: int = 0) -> IterativeUNet:
    """A reference U-net whose BatchNorm running statistics and affine terms are far from the
    defaults, so running-statistics and per-tile-statistics outputs differ clearly."""
    g = torch.Generator().manual_seed(seed)
    unet = ReferenceUNet(4)
    for m in unet.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.2)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
    return IterativeUNet(unet, iterations=3)


def test_batch_test_bn_equals_the_reference_forward_without_eval_on_one_tile():
    model = _trained_looking()
    ref = _RefUNet(4)
    ours, theirs = model.unet.state_dict(), ref.state_dict()
    assert [v.shape for v in ours.values()] == [v.shape for v in theirs.values()]
    ref.load_state_dict(dict(zip(theirs, ours.values())))  # same weights, in module order
    before = {k: v.clone() for k, v in ours.items()}

    rng = np.random.default_rng(1)
    tile = rng.random((64, 64, 3), dtype=np.float32)  # a reference_view tile: float in [0, 1]
    x = torch.from_numpy(tile.transpose(2, 0, 1).copy())[None]

    ref.train()  # as loaded, never .eval()
    expected = _reference_test_forward(ref, x, 3)[0, 0].numpy()
    got = predict_tile(model, tile, torch.device("cpu"), 3, test_bn="batch")
    assert np.abs(got - expected).max() <= 1e-6

    # running statistics (eval mode) are a different function here, and equal their net in eval mode
    running = predict_tile(model, tile, torch.device("cpu"), 3, test_bn="running")
    assert np.abs(running - expected).max() > 1e-2
    ref.load_state_dict(dict(zip(theirs, before.values())))
    ref.eval()
    assert np.abs(running - _reference_test_forward(ref, x, 3)[0, 0].numpy()).max() <= 1e-6
    # the batch-statistics pass neither used nor changed the running statistics, and left eval mode
    assert all(torch.equal(before[k], v) for k, v in model.unet.state_dict().items())
    assert not model.training and not any(m.training for m in model.modules())


def test_paper_preset_trains_with_k1_and_tests_with_tile_statistics():
    p = roads.resolve_config({"preset": "paper", "data": "x"})
    assert (p["train_iterations"], p["iterations"], p["test_bn"]) == (1, 3, "batch")
    prose = roads.resolve_config({"preset": "paper", "data": "x", "train_iterations": 3, "test_bn": "running"})
    assert (prose["train_iterations"], prose["test_bn"]) == (3, "running")
    q = roads.resolve_config({"preset": "quick", "data": "x"})
    assert q["test_bn"] == "running" and q["train_iterations"] == 3
    # the authors' configuration (checkpoint split = scored split) resolves
    same = roads.resolve_config({"preset": "paper", "data": "x", "val_split": "val", "test_split": "valid"})
    assert (same["val_split"], same["test_split"]) == ("val", "valid")


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _dataset(root: Path, splits: dict[str, int], size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    for split, n in splits.items():
        for i in range(n):
            img = rng.integers(20, 90, (size, size, 3), dtype=np.uint8)
            m = np.zeros((size, size), np.uint8)
            r = int(rng.integers(4, size - 8))
            m[r : r + 3] = 255
            img[r : r + 3] = 160
            _save(root / split / "sat" / f"t{i}.png", img)
            _save(root / split / "map" / f"t{i}.png", m)
    return root


def test_paper_run_reports_validation_split_and_the_other_bn_setting(tmp_path):
    root = _dataset(tmp_path / "data", {"train": 3, "valid": 2, "test": 2})
    base = {
        "preset": "paper",
        "data": str(root),
        "loss": "bce",
        "crop": 32,
        "epochs": 1,
        "batch_size": 2,
        "eval_size": 32,
    }
    result = roads.run(roads.resolve_config(base), tmp_path / "w", progress=False)
    m = result.metrics
    assert m["mrd/test_tiles"] == 2.0 and m["mrd.val/tiles"] == 2.0 and m["mrd.bn_running/tiles"] == 2.0
    for prefix in ("mrd", "mrd.val", "mrd.bn_running", "mrd.val.bn_running"):
        assert {f"{prefix}/{k}" for k in ("completeness", "correctness", "quality")} <= set(m)
    # scoring the validation split as the test split (the authors' configuration) gives mrd.val's numbers
    same = roads.run(roads.resolve_config({**base, "test_split": "valid"}), tmp_path / "w", progress=False).metrics
    for k in ("completeness", "correctness", "quality"):
        assert same[f"mrd/{k}"] == pytest.approx(m[f"mrd.val/{k}"])
        assert same[f"mrd.bn_running/{k}"] == pytest.approx(m[f"mrd.val.bn_running/{k}"])
    # test_bn decides which setting is the main one: swapping it swaps the two sets (resumes the same weights)
    swapped = roads.run(roads.resolve_config({**base, "test_bn": "running"}), tmp_path / "w", progress=False).metrics
    for k in ("completeness", "correctness", "quality"):
        assert swapped[f"mrd/{k}"] == pytest.approx(m[f"mrd.bn_running/{k}"])
        assert swapped[f"mrd.bn_batch/{k}"] == pytest.approx(m[f"mrd/{k}"])
