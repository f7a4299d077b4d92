"""Iterative U-net, plug-in config, baselines, and an end-to-end tiny run (each test tile counted once)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lossnet.bench.roads as roads
from lossnet.bench.roads import baselines as B
from lossnet.bench.roads.data import find_tiles, load_tile
from lossnet.bench.roads.metrics import RoadCounts, road_counts
from lossnet.bench.roads.train import evaluate_tiles
from lossnet.bench.roads.unet import IterativeUNet, ReferenceUNet, UNet, build_model
from lossnet.errors import CheckpointError, InputError, LossnetError


def _dataset(root: Path, n_train: int = 2, n_test: int = 3, size: int = 40) -> Path:
    """Tiles with a bright horizontal road on a dark textured background (``tile<i>.png``)."""
    from test_roads_protocol import _road_dataset

    return _road_dataset(root, {"train": n_train, "test": n_test}, size, stem="tile")


@pytest.mark.parametrize("unet", [lambda: UNet(4, 1, 4, 2), lambda: ReferenceUNet(4)], ids=["ronneberger", "reference"])
def test_unet_iterates_with_zero_initial_prediction(unet):
    torch.manual_seed(0)
    model = IterativeUNet(unet(), iterations=3).eval()
    seen = []
    model.unet.register_forward_pre_hook(lambda mod, args: seen.append(args[0][:, 3:].clone()))
    x = torch.rand(2, 3, 16, 16)
    outs = model(x)
    assert len(outs) == 3 and len(seen) == 3
    assert (seen[0] == 0).all()
    # iteration k+1 sees iteration k's output as its 4th channel
    torch.testing.assert_close(seen[1], outs[0])
    torch.testing.assert_close(seen[2], outs[1])
    assert all(((o >= 0) & (o <= 1)).all() for o in outs)


def test_prior_initialisation_gives_the_prior():
    model = IterativeUNet(UNet(4, 1, 4, 2, prior=0.05), iterations=2).eval()
    torch.nn.init.zeros_(model.unet.head.weight)  # leaves only the bias: output = sigmoid(bias)
    out = model(torch.rand(1, 3, 8, 8))[-1]
    torch.testing.assert_close(out, torch.full_like(out, 0.05))
    # the reference net: its output BatchNorm (eval: running mean 0, var 1) carries the prior
    ref = IterativeUNet(ReferenceUNet(4, prior=0.05), iterations=2).eval()
    torch.nn.init.zeros_(ref.unet.up[-1][1].weight)
    out = ref(torch.rand(1, 3, 16, 16))[-1]
    torch.testing.assert_close(out, torch.full_like(out, 0.05), atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="prior"):
        UNet(4, 1, 4, 2, prior=1.0)


def test_unet_padding_and_size_errors():
    model = IterativeUNet(UNet(4, 1, 4, 3), iterations=2).eval()
    assert model.predict(torch.rand(1, 3, 21, 30)).shape == (1, 1, 21, 30)
    assert IterativeUNet(ReferenceUNet(4)).eval().predict(torch.rand(1, 3, 21, 30)).shape == (1, 1, 21, 30)
    with pytest.raises(InputError, match="divisible by 8"):
        UNet(4, 1, 4, 3)(torch.rand(1, 4, 12, 16))
    with pytest.raises(InputError, match="divisible by 16"):
        ReferenceUNet(4)(torch.rand(1, 4, 24, 32))
    with pytest.raises(InputError, match="RGB"):
        model(torch.rand(1, 4, 16, 16))
    # K of a call overrides the model's default
    assert len(model(torch.rand(1, 3, 16, 16), 1)) == 1 and len(model(torch.rand(1, 3, 16, 16))) == 2


def test_resolve_config():
    with pytest.raises(LossnetError, match="--data"):
        roads.resolve_config({"preset": "quick"})
    c = roads.resolve_config({"preset": "quick", "data": "x", "loss": "bce", "net": "vgg16"})
    assert c["net"] is None and c["layer"] is None and c["loss"] == "bce"
    p = roads.resolve_config({"preset": "paper", "data": "x"})
    assert (p["lr"], p["batch_size"], p["epochs"], p["crop"], p["iterations"], p["threshold"]) == (
        1e-3,
        8,
        100,
        224,
        3,
        0.3,
    )
    assert p["loss"] == "perceptual" and p["lam"] == 0.01 and p["distance"] == "mse"
    # the authors' code: their U-net, sampler, checkpoint rule, evaluation and loss-network settings
    assert (p["model"], p["down_activation"], p["width"], p["depth"]) == ("reference", "relu", None, None)
    assert (p["sampler"], p["steps_per_epoch"], p["max_nodata"]) == ("reference", None, None)
    assert (p["selection"], p["val_split"], p["test_split"], p["protocol"]) == ("val_bce", "valid", "test", "reference")
    assert (p["train_iterations"], p["eval_size"], p["eval_antialias"]) == (1, 224, False)
    assert (p["normalize"], p["loss_net_mode"], p["transform_input"]) == ("imagenet", "train", False)
    assert roads.resolve_config({"preset": "paper", "data": "x", "train_iterations": 3})["train_iterations"] == 3
    r = roads.resolve_config({"preset": "paper", "data": "x", "model": "ronneberger"})
    assert (r["width"], r["depth"], r["down_activation"]) == (64, 4, None)
    with pytest.raises(LossnetError, match="divisible by 16"):
        roads.resolve_config({"preset": "paper", "data": "x", "crop": 40})
    with pytest.raises(LossnetError, match="holdout"):
        roads.resolve_config({"preset": "paper", "data": "x", "val_split": "holdout:0"})
    last = roads.resolve_config({"preset": "paper", "data": "x", "selection": "last"})
    assert last["val_split"] is None
    with pytest.raises(LossnetError, match="threshold"):
        roads.resolve_config({"data": "x", "threshold": 1.5})
    with pytest.raises(LossnetError):
        roads.resolve_config({"data": "x", "net": "vgg16", "layer": "no_such_layer"})


def test_baselines_closed_form():
    img = np.zeros((10, 10, 3), np.uint8)
    img[4:6] = 150  # grey road
    img[0] = 255  # white no-data row
    assert not B.all_background(img).any()
    road = B.intensity_baseline(img, low=0.5, high=0.9, max_sat=0.1)
    expected = np.zeros((10, 10), bool)
    expected[4:6] = True
    np.testing.assert_array_equal(road, expected)
    edges = B.edge_baseline(img, sigma=1.0)
    assert edges[3:7].any() and not edges[8:].any()


def test_each_test_tile_counted_exactly_once(tmp_path):
    root = _dataset(tmp_path)
    tiles = find_tiles(root, "test")
    calls = []

    def predict(image):
        calls.append(image.copy())
        return image[..., 0] > 120

    totals = evaluate_tiles(tiles, predict, rhos=(0, 3))
    assert len(calls) == len(tiles) == 3
    for rho in (0, 3):
        expected = RoadCounts()
        for t in tiles:
            image, mask = load_tile(t)
            expected = expected + road_counts(image[..., 0] > 120, mask, rho)
        assert totals[rho] == expected and totals[rho].tiles == 3


def test_end_to_end_tiny_run_resume_and_artifacts(tmp_path):
    root = _dataset(tmp_path / "data", n_train=3)
    config = roads.resolve_config(
        {
            "preset": "quick",
            "data": str(root),
            "loss": "bce",
            "crop": 16,
            "batch_size": 2,
            "epochs": 2,
            "steps_per_epoch": 2,
            "width": 2,
            "depth": 2,
            "baselines": False,
            "val_split": "holdout:1",
            "eval_size": 32,
        }
    )
    work = tmp_path / "work"
    result = roads.run(config, work, progress=False)
    assert result.status == "done" and result.signature is None  # BCE only: no loss network
    assert result.metrics["mrd/test_tiles"] == 3.0 and result.metrics["mrd.full/test_tiles"] == 3.0
    for k in ("correctness", "completeness", "quality"):
        assert 0 <= result.metrics[f"mrd/{k}"] <= 100
        assert 0 <= result.metrics[f"mrd.full/{k}"] <= 100 and 0 <= result.metrics[f"mrd.full/{k}_rho3"] <= 100
    assert result.metrics["mrd/selected_epoch"] in (1.0, 2.0) and result.metrics["mrd/val_bce"] > 0
    assert len([k for k in result.artifacts if k.startswith("overlay_")]) == 3
    overlay = Image.open(result.artifacts["overlay_tile0"])
    assert overlay.size == (3 * 40 + 16, 40)
    rows = list(csv.DictReader(open(work / "train_log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and float(rows[0]["perceptual"]) == 0.0
    assert all(float(r["val_bce"]) > 0 for r in rows)
    # resuming with more epochs continues from the checkpoint (epoch 3 only): the logged rows of
    # epochs 1-2, including their wall-clock seconds, are the ones restored from the checkpoint
    state = torch.load(work / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2
    first_model = {k: v.clone() for k, v in state["model"].items()}
    result2 = roads.run(dict(config, epochs=3), work, progress=False)
    rows2 = list(csv.DictReader(open(work / "train_log.csv")))
    assert [int(r["epoch"]) for r in rows2] == [1, 2, 3] and rows2[:2] == rows
    assert result2.metrics["mrd/test_tiles"] == 3.0
    # evaluation-only keys (protocol, test K) reuse the finished checkpoint
    result3 = roads.run(dict(config, epochs=3, protocol="full", iterations=1), work, progress=False)
    assert "mrd/quality" not in result3.metrics and "mrd.full/quality" in result3.metrics
    # a training-relevant change (learning rate) is refused, naming the key, and the checkpoint is kept
    with pytest.raises(CheckpointError, match=r"differs in: lr 0.001 -> 0.0005"):
        roads.run(dict(config, lr=5e-4), work, progress=False)
    state3 = torch.load(work / "checkpoint.pt", weights_only=True)
    assert state3["epoch"] == 3 and state3["fingerprint"]["lr"] == 1e-3
    assert any(not torch.equal(first_model[k], state3["model"][k]) for k in first_model)


def test_perceptual_term_is_logged(tmp_path):
    root = _dataset(tmp_path / "data", n_test=1)
    config = roads.resolve_config(
        {
            "preset": "quick",
            "data": str(root),
            "net": "alexnet",
            "layer": "relu1",
            "weights": "none",
            "lam": 0.5,
            "crop": 32,
            "batch_size": 2,
            "epochs": 1,
            "steps_per_epoch": 1,
            "width": 2,
            "depth": 2,
            "baselines": False,
            "selection": "last",
            "protocol": "full",
        }
    )
    result = roads.run(config, tmp_path / "w", progress=False)
    row = next(csv.DictReader(open(tmp_path / "w" / "train_log.csv")))
    assert float(row["perceptual"]) > 0
    assert float(row["weighted_perceptual"]) == pytest.approx(0.5 * float(row["perceptual"]))
    assert float(row["total"]) == pytest.approx(float(row["bce"]) + 0.5 * float(row["perceptual"]))
    assert result.status == "done"
    from lossnet.signature import parse_signature

    sig = parse_signature(result.signature)  # the loss network the run trained with
    assert (sig["arch"], sig["layers"], sig["distance"], sig["w"].split(":")[0]) == (
        "alexnet",
        "E",
        config["distance"],
        "none",
    )  # relu1 is E


def _proba_tile(root: Path) -> Path:
    """One 40x40 tile whose red channel / 255 is the 'probability' a test predictor returns.

    Road: rows 10-12 (120 px); 90 of them at 170/255 = 0.667, the last 30 (cols 30-39) weak at
    45/255 = 0.176. A false blob far from the road: rows 30-32, cols 0-19 (60 px) at 100/255 = 0.392.
    """
    img = np.zeros((40, 40, 3), np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:13] = 255
    img[10:13, :30, 0] = 170
    img[10:13, 30:, 0] = 45
    img[30:33, :20, 0] = 100
    for sub, arr in (("sat", img), ("map", mask)):
        (root / "train" / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / "train" / sub / "p.png")
    return root


def test_fit_threshold_hand_made_curve(tmp_path):
    from lossnet.bench.roads.train import THRESHOLD_GRID, fit_threshold

    tiles = find_tiles(_proba_tile(tmp_path), "train")
    calls = []

    def proba(image):
        calls.append(1)
        return image[..., 0] / 255.0

    best, curve = fit_threshold(tiles, proba, rho=0)
    assert len(calls) == 1 and tuple(curve) == THRESHOLD_GRID
    # pixel-exact quality TP / (TP + FP + FN) by hand for each range of thresholds:
    #   t < 0.176: all 120 road + 60 blob -> 120 / 180;  0.176 <= t < 0.392: 90 road + 60 blob -> 90 / (90 + 60 + 30)
    #   0.392 <= t < 0.667: 90 road only -> 90 / 120;    t >= 0.667: nothing -> 0
    for t, q in curve.items():
        expected = 100 * (120 / 180 if t < 0.176 else 90 / 180 if t < 0.392 else 90 / 120 if t < 0.667 else 0.0)
        assert q == pytest.approx(expected), t
    assert best == 0.4  # the lowest of the tied best thresholds 0.40 ... 0.65


def test_threshold_fit_tiles_are_evenly_spaced_training_tiles():
    tiles = list(range(41))
    chosen = roads.threshold_fit_tiles(tiles)
    assert chosen == [0, 6, 11, 17, 23, 29, 34, 40]
    assert roads.threshold_fit_tiles(tiles[:5]) == tiles[:5]


def test_threshold_option_parsing():
    import argparse

    parser = argparse.ArgumentParser()
    roads.BENCHMARK.add_arguments(parser)
    assert parser.parse_args(["--threshold", "train"]).threshold == "train"
    assert parser.parse_args(["--threshold", "0.4"]).threshold == 0.4
    with pytest.raises(SystemExit):
        parser.parse_args(["--threshold", "best"])
    assert roads.resolve_config({"preset": "quick", "data": "x"})["threshold"] == "train"
    assert roads.resolve_config({"preset": "quick", "data": "x", "threshold": "TRAIN"})["threshold"] == "train"
    assert roads.resolve_config({"preset": "paper", "data": "x"})["threshold"] == 0.3
    for bad in ("best", 0.0, 1.0):
        with pytest.raises(LossnetError, match="threshold"):
            roads.resolve_config({"preset": "quick", "data": "x", "threshold": bad})


def test_run_fits_threshold_on_train_split_and_counts_each_test_tile_once(tmp_path, monkeypatch):
    import lossnet.bench.roads.train as T

    root = _dataset(tmp_path / "data", n_train=3, n_test=3)
    fitted = {}
    real_fit = T.fit_threshold

    def spy(tiles, predict_proba, *args, **kwargs):
        tiles = list(tiles)
        fitted["tiles"] = [t.image for t in tiles]
        fitted["result"] = real_fit(tiles, predict_proba, *args, **kwargs)
        return fitted["result"]

    monkeypatch.setattr(T, "fit_threshold", spy)
    config = roads.resolve_config(
        {
            "preset": "quick",
            "data": str(root),
            "loss": "bce",
            "crop": 16,
            "batch_size": 2,
            "epochs": 2,
            "steps_per_epoch": 3,
            "width": 2,
            "depth": 2,
            "baselines": False,
            "threshold": "train",
            "selection": "last",
            "protocol": "full",
        }
    )
    work = tmp_path / "work"
    result = roads.run(config, work, progress=False)
    # the threshold was chosen on the training tiles only
    assert sorted(fitted["tiles"]) == sorted(t.image for t in find_tiles(root, "train"))
    assert all(p.parent.parent.name == "train" for p in fitted["tiles"])
    best, curve = fitted["result"]
    assert result.metrics["mrd.full/threshold"] == best
    rows = list(csv.DictReader(open(work / "threshold_fit_full.csv")))
    assert [float(r["threshold"]) for r in rows] == list(curve)
    # independent recount: the saved model's predictions on each test tile, summed once per tile
    model = build_model(roads.BENCHMARK.config_object(config))
    model.load_state_dict(torch.load(work / "model.pt", weights_only=True))
    model.eval()
    test_tiles = find_tiles(root, "test")
    for rho, suffix in ((0, ""), (3, "_rho3")):
        total = RoadCounts()
        for t in test_tiles:
            image, mask = load_tile(t)
            x = torch.from_numpy(image.transpose(2, 0, 1).copy()).float()[None] / 255
            total = total + road_counts(model.predict(x)[0, 0].numpy() > best, mask, rho)
        assert total.tiles == 3
        for k in ("correctness", "completeness", "quality"):
            assert result.metrics[f"mrd.full/{k}{suffix}"] == pytest.approx(total.scores()[k])


@pytest.mark.slow
def test_quick_bce_beats_trivial_baselines_on_shared(shared_dir, tmp_path):
    """Real data: the quick-preset BCE model beats the baselines at rho = 3 under the full protocol."""
    config = roads.resolve_config({"preset": "quick", "data": str(shared_dir / "data" / "roads"), "loss": "bce"})
    result = roads.run(config, tmp_path, progress=False)
    m = result.metrics
    assert m["mrd.full/test_tiles"] == 10.0 and 0.05 <= m["mrd.full/threshold"] <= 0.95
    best_baseline = max(m[f"mrd.full.{b}/quality_rho3"] for b in ("background", "intensity", "edges"))
    assert m["mrd.full.background/quality_rho3"] == 0.0
    assert m["mrd.full/quality_rho3"] > best_baseline
