"""Issue 16: the authors' U-net, Mosinska iteration weighting, checkpoint choice by validation BCE,
the reference evaluation protocol (224 px resize, per-tile ratios averaged) and the authors' sampler."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lossnet.bench.roads as roads
from lossnet.bench.roads.data import TileEpochCrops, find_tiles, load_tile, split_holdout
from lossnet.bench.roads.evaluate import macro_scores, reference_view, resize_short_side, validation_bce
from lossnet.bench.roads.metrics import road_scores
from lossnet.bench.roads.train import (
    RoadsTask,
    evaluate_tiles_reference,
    fit_threshold,
    iteration_loss,
    iteration_weights,
)
from lossnet.bench.roads.unet import IterativeUNet, ReferenceUNet, UNet, build_model, count_parameters
from lossnet.errors import DataError


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _road_dataset(
    root: Path, splits: dict[str, int], size: int = 32, layout: tuple[str, str] = ("sat", "map"), stem: str = "t"
) -> Path:
    """Tiles with a bright horizontal road on a dark textured background."""
    rng = np.random.default_rng(0)
    for split, n in splits.items():
        for i in range(n):
            img = rng.integers(20, 90, (size, size, 3), dtype=np.uint8)
            m = np.zeros((size, size), np.uint8)
            r = int(rng.integers(4, size - 8))
            m[r : r + 3] = 255
            img[r : r + 3] = 160
            _save(root / split / layout[0] / f"{stem}{i}.png", img)
            _save(root / split / layout[1] / f"{stem}{i}.png", m)
    return root


# -- the authors' U-net ---------------------------------------------------------------------------


def test_reference_unet_parameter_count_and_activations():
    # by hand: each block is a 4x4 conv without bias (16 * cin * cout) + BatchNorm (2 * cout);
    # down 4->8->16->32->32, up 32->32, (32+32)->16, (16+16)->8, (8+8)->1
    blocks = [(4, 8), (8, 16), (16, 32), (32, 32), (32, 32), (64, 16), (32, 8), (16, 1)]
    assert sum(16 * ci * co + 2 * co for ci, co in blocks) == 64_546
    assert count_parameters(ReferenceUNet(4)) == 64_546
    assert count_parameters(UNet(4, 1, 64, 4)) == 31_038_209  # today's Ronneberger net: 481x the capacity
    relu, leaky = ReferenceUNet(4, down_activation="relu"), ReferenceUNet(4, down_activation="leaky_relu")
    assert all(type(b[0]) is torch.nn.ReLU for b in relu.down) and all(type(b[0]) is torch.nn.ReLU for b in leaky.up)
    assert all(isinstance(b[0], torch.nn.LeakyReLU) and b[0].negative_slope == 0.2 for b in leaky.down)
    leaky.load_state_dict(relu.state_dict())
    x = torch.rand(2, 4, 32, 32)
    relu.eval(), leaky.eval()
    assert not torch.allclose(relu(x), leaky(x))  # the inverted condition changes the function
    assert build_model(roads.RoadsConfig(model="reference", iterations=3)).unet.multiple == 16


# -- Mosinska iteration weighting ---------------------------------------------------------------


def test_iteration_weights_and_loss_on_a_hand_computed_example():
    assert iteration_weights(1) == [1.0]
    assert iteration_weights(3) == pytest.approx([1 / 6, 2 / 6, 3 / 6])  # k / Z, Z = 3 * 4 / 2 = 6
    mask = torch.ones(1, 1, 2, 2)
    outputs = [torch.full((1, 1, 2, 2), p) for p in (0.5, 0.25, 0.8)]

    def perceptual(pred, target):  # a stand-in loss network term: mean squared difference
        return ((pred - target) ** 2).mean()

    loss, bce, pl = iteration_loss(outputs, mask, perceptual, mask, lam=0.5)
    # BCE against 1 is -ln p: (1/6) ln 2 + (2/6) ln 4 + (3/6) (-ln 0.8) = 0.115525 + 0.462098 + 0.111572
    assert float(bce) == pytest.approx(0.689195, abs=1e-6)
    # (1 - p)^2: (1/6) 0.25 + (2/6) 0.5625 + (3/6) 0.04 = 0.041667 + 0.1875 + 0.02
    assert float(pl) == pytest.approx(0.249167, abs=1e-6)
    assert float(loss) == pytest.approx(0.689195 + 0.5 * 0.249167, abs=1e-6)
    # K = 1 is plain BCE + lambda * perceptual; without a loss network the term is 0
    loss1, _, _ = iteration_loss(outputs[:1], mask, perceptual, mask, lam=0.5)
    assert float(loss1) == pytest.approx(math.log(2) + 0.5 * 0.25, abs=1e-6)
    loss0, bce0, pl0 = iteration_loss(outputs, mask, None, None, lam=0.5)
    assert float(pl0) == 0.0 and float(loss0) == pytest.approx(float(bce))


# -- checkpoint choice ---------------------------------------------------------------------------


class _ConstantModel(torch.nn.Module):
    """Predicts probability 0.25 everywhere; records the mode it was called in."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def predict(self, image, iterations=None):
        self.modes.append((self.training, iterations))
        return torch.full((image.shape[0], 1, *image.shape[2:]), 0.25)


def test_validation_bce_hand_computed():
    model = _ConstantModel().train()
    views = [
        (torch.zeros(1, 3, 2, 2), torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])),
        (torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2)),
    ]
    # tile 1: y=1 -> -ln .25 = 1.386294; y=0 -> -ln .75 = 0.287682 (twice); y=.5 -> 0.836988 (soft target)
    tile1 = (1.386294 + 2 * 0.287682 + 0.836988) / 4
    tile2 = 0.287682
    assert validation_bce(model, views, 2, "cpu") == pytest.approx((tile1 + tile2) / 2, abs=1e-6)
    assert model.modes == [(False, 2), (False, 2)] and model.training  # eval during validation, restored after


def _train_config(root: Path, **over) -> dict:
    return roads.resolve_config(
        {
            "preset": "quick",
            "data": str(root),
            "loss": "bce",
            "crop": 16,
            "batch_size": 2,
            "epochs": 4,
            "steps_per_epoch": 1,
            "width": 2,
            "depth": 2,
            "baselines": False,
            "overlays": 0,
            "val_split": "holdout:1",
            "protocol": "full",
            "threshold": 0.5,
            **over,
        }
    )


def _record_epoch_weights(monkeypatch) -> list[dict]:
    seen: list[dict] = []
    real = RoadsTask.after_epoch

    def after_epoch(self, history):
        seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        real(self, history)

    monkeypatch.setattr(RoadsTask, "after_epoch", after_epoch)
    return seen


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_selection_picks_the_lowest_validation_bce_epoch(tmp_path, monkeypatch):
    import lossnet.bench.roads.train as T

    root = _road_dataset(tmp_path / "data", {"train": 3, "test": 1})
    scripted = iter([0.5, 0.2, 0.4, 0.3])  # epoch 2 is the best
    calls = []

    def fake_val(model, views, iterations, device):
        calls.append((len(views), iterations))
        return next(scripted)

    monkeypatch.setattr(T, "validation_bce", fake_val)
    weights = _record_epoch_weights(monkeypatch)
    config = _train_config(root)
    result = roads.run(config, tmp_path / "w", progress=False)
    assert calls == [(1, 3)] * 4  # one held-out tile, the training K
    assert result.metrics["mrd/selected_epoch"] == 2.0 and result.metrics["mrd/val_bce"] == pytest.approx(0.2)
    evaluated = torch.load(tmp_path / "w" / "model.pt", weights_only=True)
    assert len(weights) == 4 and _same(evaluated, weights[1]) and not _same(evaluated, weights[3])
    rows = list(csv.DictReader(open(tmp_path / "w" / "train_log.csv")))
    assert [float(r["val_bce"]) for r in rows] == pytest.approx([0.5, 0.2, 0.4, 0.3])

    # selection = last: no validation, the last epoch is evaluated
    calls.clear()
    weights.clear()
    result = roads.run(_train_config(root, selection="last"), tmp_path / "w_last", progress=False)
    assert calls == [] and result.metrics["mrd/selected_epoch"] == 4.0 and "mrd/val_bce" not in result.metrics
    assert _same(torch.load(tmp_path / "w_last" / "model.pt", weights_only=True), weights[3])


def test_holdout_split_is_evenly_spaced_and_leaves_training_tiles():
    train, held = split_holdout(list(range(41)), 4)
    assert held == [5, 15, 25, 35] and len(train) == 37 and not set(train) & set(held)
    assert split_holdout([0, 1, 2], 1) == ([0, 2], [1])
    with pytest.raises(DataError, match="hold out 3 of 3"):
        split_holdout([0, 1, 2], 3)


# -- the reference evaluation protocol ------------------------------------------------------------


def _two_tile_dataset(root: Path) -> Path:
    """Two 224 px tiles (no resize needed); the image's red channel is the prediction to score.

    Tile a: 4 road pixels, 4 predicted, 2 of them on the road: TP 2, FP 2, FN 2.
    Tile b: 10 road pixels, predicted exactly: TP 10.
    """
    for name, ref_cols, pred_cols in (("a", range(0, 4), [2, 3, 100, 101]), ("b", range(50, 60), range(50, 60))):
        img = np.zeros((224, 224, 3), np.uint8)
        m = np.zeros((224, 224), np.uint8)
        m[7, list(ref_cols)] = 255
        img[7, list(pred_cols), 0] = 255
        _save(root / "test" / "sat" / f"{name}.png", img)
        _save(root / "test" / "map" / f"{name}.png", m)
    return root


def test_reference_evaluation_macro_average_on_two_tiles(tmp_path):
    tiles = find_tiles(_two_tile_dataset(tmp_path), "test")
    calls = []

    def predict(image):
        calls.append(image.shape)
        return image[..., 0] > 0.5

    s = evaluate_tiles_reference(tiles, predict, 224)
    # per tile: a = (completeness 50, correctness 50, quality 2/6), b = (100, 100, 100); averaged:
    assert s == pytest.approx(
        {"completeness": 75.0, "correctness": 75.0, "quality": (100 * 2 / 6 + 100) / 2, "tiles": 2.0}
    )
    assert calls == [(224, 224, 3)] * 2  # each tile scored once, at 224
    # the full protocol's micro average of the same pixels differs: TP 12, FP 2, FN 2
    pairs = [(image[..., 0] > 127, mask) for image, mask in map(load_tile, tiles)]
    micro = road_scores(pairs, (0,))[0].scores()
    assert micro == pytest.approx(
        {"completeness": 100 * 12 / 14, "correctness": 100 * 12 / 14, "quality": 100 * 12 / 16}
    )
    assert macro_scores(pairs)["quality"] == pytest.approx(s["quality"])


def test_reference_resize_to_224_bilinear(tmp_path):
    import torchvision.transforms.functional as TF

    # 448 -> 224 is exactly 2x: bilinear (align_corners=False) averages each 2x2 block
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (448, 448, 3), dtype=np.uint8)
    mask = np.zeros((448, 448), bool)
    mask[0:2, 0:2] = [[1, 1], [1, 0]]  # 3 of 4 road -> 0.75 -> road
    mask[0:2, 2:4] = [[1, 1], [0, 0]]  # 2 of 4 -> 0.5 -> not road (> 0.5)
    img, soft = reference_view(image, mask, 224)
    blocks = image.astype(np.float64).reshape(224, 2, 224, 2, 3).mean(axis=(1, 3)) / 255
    np.testing.assert_allclose(img, blocks, atol=1e-6)
    assert soft.shape == (224, 224) and soft[0, 0] == pytest.approx(0.75) and soft[0, 1] == pytest.approx(0.5)
    assert (soft > 0.5).sum() == 1
    # any scale and aspect: the same as torchvision's tensor resize with an int size
    for shape in ((750, 750), (300, 450), (500, 260)):
        x = torch.rand(1, 3, *shape)
        for aa in (False, True):
            ours = resize_short_side(x, 224, aa)
            theirs = TF.resize(x, 224, interpolation=TF.InterpolationMode.BILINEAR, antialias=aa)
            assert ours.shape == theirs.shape and min(ours.shape[-2:]) == 224
            torch.testing.assert_close(ours, theirs)
    # the protocol predicts on the 224 view of a larger tile
    _save(tmp_path / "test" / "sat" / "t.png", image)
    _save(tmp_path / "test" / "map" / "t.png", (mask * 255).astype(np.uint8))
    seen = []
    evaluate_tiles_reference(
        find_tiles(tmp_path, "test"), lambda im: seen.append(im) or np.zeros(im.shape[:2], bool), 224
    )
    assert seen[0].shape == (224, 224, 3) and seen[0].dtype == np.float32
    np.testing.assert_allclose(seen[0], blocks, atol=1e-6)


def test_reference_threshold_fit_scores_the_224_view_per_tile(tmp_path):
    tiles = find_tiles(_two_tile_dataset(tmp_path), "test")
    best, curve = fit_threshold(tiles, lambda im: im[..., 0] * 0.6, grid=(0.3, 0.7), protocol="reference", size=224)
    # red 1.0 -> probability 0.6: above 0.3 gives the two-tile example, above 0.7 predicts nothing (quality 0)
    assert curve == pytest.approx({0.3: (100 * 2 / 6 + 100) / 2, 0.7: 0.0}) and best == 0.3


# -- the authors' training sampler and data layout --------------------------------------------------


def test_tile_epoch_crops_visit_every_tile_once_with_horizontal_flips_only(tmp_path):
    n, size, crop = 5, 12, 8
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        img = np.stack([xx * 20, np.full_like(xx, 40 * i), yy * 20], -1).astype(
            np.uint8
        )  # R: x ramp, G: tile id, B: y ramp
        _save(tmp_path / "train" / "sat" / f"t{i}.png", img)
        _save(tmp_path / "train" / "map" / f"t{i}.png", np.zeros((size, size), np.uint8))
    tiles = find_tiles(tmp_path, "train")
    crops = TileEpochCrops(tiles, crop, seed=7)
    orders, flips = [], set()
    for epoch in range(4):
        crops.epoch = epoch
        assert len(crops) == n
        ids = []
        for j in range(n):
            x, y = crops[j]
            x8 = (x.numpy() * 255).round().astype(int)
            ids.append(int(x8[1, 0, 0]) // 40)
            dx, dy = np.diff(x8[0], axis=1), np.diff(x8[2], axis=0)
            assert (dy == 20).all()  # never flipped vertically
            assert (dx == 20).all() or (dx == -20).all()  # a horizontal flip or none
            flips.add(bool((dx == -20).all()))
        assert sorted(ids) == list(range(n))  # every tile exactly once per epoch
        orders.append(ids)
    assert len({tuple(o) for o in orders}) > 1 and flips == {True, False}  # shuffled per epoch, both flip states
    again = TileEpochCrops(tiles, crop, seed=7)
    again.epoch = 3
    assert all(torch.equal(again[j][0], crops[j][0]) for j in range(n))  # reproducible (resume)
    longer = TileEpochCrops(tiles, crop, length=12, seed=7)
    ids = [int(round(float(longer[j][0][1, 0, 0]) * 255)) // 40 for j in range(12)]
    assert sorted(ids[:5]) == sorted(ids[5:10]) == list(range(n))  # further passes continue with new permutations


def test_reference_layout_loads_and_trains_with_its_val_split(tmp_path):
    root = _road_dataset(tmp_path / "MRD", {"train": 2, "val": 1, "test": 1}, layout=("input", "output"))
    for split in ("valid", "val"):
        (tile,) = find_tiles(root, split)
        assert tile.image == root / "val" / "input" / "t0.png" and tile.mask == root / "val" / "output" / "t0.png"
    image, mask = load_tile(find_tiles(root, "train")[1])
    assert image.shape == (32, 32, 3) and mask.dtype == bool and mask.sum() == 3 * 32
    config = _train_config(root, val_split="valid", epochs=1, protocol="reference", eval_size=32)
    result = roads.run(config, tmp_path / "w", progress=False)
    assert result.status == "done" and result.metrics["mrd/test_tiles"] == 1.0 and "mrd/val_bce" in result.metrics
    assert not any(k.startswith("mrd.full") for k in result.metrics)


def test_quick_preset_trains_with_the_paper_loss_network_settings(tmp_path):
    q = roads.resolve_config({"preset": "quick", "data": str(tmp_path)})
    # val_split auto: no valid split in the folder -> 4 training tiles held out; with one -> valid
    assert (q["sampler"], q["selection"], q["val_split"], q["protocol"]) == (
        "reference",
        "val_bce",
        "holdout:4",
        "both",
    )
    (tmp_path / "val" / "input").mkdir(parents=True)
    assert roads.resolve_config({"preset": "quick", "data": str(tmp_path)})["val_split"] == "valid"
    assert (
        roads.resolve_config({"preset": "quick", "data": str(tmp_path), "val_split": "holdout:2"})["val_split"]
        == "holdout:2"
    )
    assert (q["normalize"], q["loss_net_mode"], q["transform_input"]) == ("imagenet", "train", False)
    assert q["model"] == roads.QUICK_MODEL and q["train_iterations"] == q["iterations"] == 3


def test_iterative_unet_takes_any_k(tmp_path):
    model = IterativeUNet(ReferenceUNet(4), iterations=3).eval()
    x = torch.rand(1, 3, 32, 32)
    assert len(model(x)) == 3 and len(model(x, 1)) == 1
    torch.testing.assert_close(model.predict(x, 1), model(x, 1)[-1])


def test_paper_preset_path_runs_end_to_end(tmp_path):
    """The paper preset's path at toy size: reference U-net, the authors' sampler (one pass, last batch
    smaller), perceptual loss with the loss network in train mode, checkpoint on valid, reference protocol."""
    root = _road_dataset(tmp_path / "data", {"train": 3, "valid": 1, "test": 2})
    config = roads.resolve_config(
        {
            "preset": "paper",
            "data": str(root),
            "net": "alexnet",
            "layer": "relu1",
            "weights": "none",
            "crop": 32,
            "epochs": 2,
            "batch_size": 2,
            "eval_size": 32,
        }
    )
    result = roads.run(config, tmp_path / "w", progress=False)
    assert (
        result.status == "done" and result.metrics["mrd/test_tiles"] == 2.0 and result.metrics["mrd/threshold"] == 0.3
    )
    rows = list(csv.DictReader(open(tmp_path / "w" / "train_log.csv")))
    assert [int(r["steps"]) for r in rows] == [2, 2]  # 3 tiles in batches of 2: one full batch and one of 1
    assert all(float(r["perceptual"]) > 0 and float(r["val_bce"]) > 0 for r in rows)
    assert not any(k.startswith("mrd.full") for k in result.metrics)
