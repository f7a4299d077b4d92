"""Benchmark 4 end to end: ``lossnet bench autoencoder`` on tiny synthetic SVHN / STL-10 folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_autoencoder_data import _asymmetric, write_stl10, write_svhn

from lossnet.bench.autoencoder import resolve_config, run
from lossnet.errors import DataError, LossnetError

TINY = [
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--mlp-epochs",
    "3",
    "--mlp-patience",
    "2",
    "--mlp-batch-size",
    "16",
    "--no-progress",
]


@pytest.fixture()
def svhn_dir(tmp_path):
    d = tmp_path / "svhn"
    d.mkdir()
    write_svhn(d / "extra_32x32.mat", _asymmetric(32, 16, seed=1), np.full(16, 3))
    write_svhn(d / "train_32x32.mat", _asymmetric(32, 30, seed=2), np.arange(30) % 10 + 1)
    write_svhn(d / "test_32x32.mat", _asymmetric(32, 10, seed=3), np.arange(10) + 1)
    return d


def _main(argv):
    from lossnet.cli.main import main

    return main(argv)


def test_cli_end_to_end_pixel_then_resume(svhn_dir, tmp_path, capsys):
    out, js = tmp_path / "run", tmp_path / "r.json"
    argv = [
        "bench",
        "autoencoder",
        "--dataset",
        "svhn",
        "--data",
        str(svhn_dir),
        "--loss",
        "pixel",
        "--out",
        str(out),
        "--json",
        str(js),
        *TINY,
    ]
    assert _main(argv) == 0
    printed = capsys.readouterr().out
    assert "val_accuracy" in printed and "svhn/accuracy" in printed
    res = json.loads(js.read_text())
    assert (
        res["config"]["benchmark"] == "autoencoder"
        and res["config"]["net"] is None
        and res["config"]["loss"] == "pixel"
    )
    acc = res["metrics"]["svhn/accuracy"]
    assert 0.0 <= acc <= 1.0 and acc * 10 == pytest.approx(round(acc * 10))  # 10 test images
    assert (out / "checkpoint.pt").is_file() and (out / "reconstructions.png").is_file()
    from PIL import Image

    w, h = Image.open(out / "reconstructions.png").size
    assert h == 2 + 2 * (64 + 2)  # inputs row over reconstructions row (make_grid padding 2)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    # Same config, same workdir: the finished checkpoint is reused, not retrained.
    assert _main(argv) == 0
    hist = json.loads((out / "history.json").read_text())
    assert hist["start_epoch"] == 1 and len(hist["history"]) == 1
    assert json.loads(js.read_text())["metrics"]["svhn/accuracy"] == acc
    # More epochs in the same workdir is another config: refused rather than mixed.
    capsys.readouterr()
    assert _main([*argv, "--epochs", "2"]) == 2
    assert "different config" in capsys.readouterr().err


def test_cli_end_to_end_perceptual_random_alexnet(svhn_dir, tmp_path):
    js = tmp_path / "p.json"
    argv = [
        "bench",
        "autoencoder",
        "--dataset",
        "svhn",
        "--data",
        str(svhn_dir),
        "--net",
        "alexnet",
        "--layer",
        "relu1",
        "--weights",
        "none",
        "--out",
        str(tmp_path / "p"),
        "--json",
        str(js),
        *TINY,
    ]
    assert _main(argv) == 0
    res = json.loads(js.read_text())
    assert (
        res["config"]["net"] == "alexnet" and res["config"]["layer"] == "relu1" and res["config"]["weights"] == "none"
    )
    assert 0.0 <= res["metrics"]["svhn/accuracy"] <= 1.0 and res["metrics"]["svhn/ae_loss"] > 0
    # the run names the loss network it trained with (the same signature PerceptualLoss reports)
    from lossnet.signature import parse_signature

    sig = parse_signature(res["signature"])
    assert (sig["arch"], sig["layers"], sig["distance"], sig["w"].split(":")[0]) == (
        "alexnet",
        "E",
        res["config"]["distance"],
        "none",
    )  # relu1 is E


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert _main(["bench", "autoencoder", "--dataset", "svhn", "--loss", "pixel", "--no-progress"]) == 2
    assert "--data" in capsys.readouterr().err
    assert (
        _main(
            [
                "bench",
                "autoencoder",
                "--dataset",
                "svhn",
                "--data",
                str(tmp_path),
                "--loss",
                "pixel",
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "extra_32x32.mat" in capsys.readouterr().err


def test_stl10_run_resized_to_64(tmp_path):
    d = tmp_path / "stl"
    d.mkdir()
    write_stl10(d / "unlabeled_X.bin", _asymmetric(96, 8, seed=4))
    write_stl10(d / "train_X.bin", _asymmetric(96, 20, seed=5), d / "train_y.bin", np.arange(20) % 10 + 1)
    write_stl10(d / "test_X.bin", _asymmetric(96, 10, seed=6), d / "test_y.bin", np.arange(10) + 1)
    cfg = resolve_config(
        {
            "dataset": "stl10",
            "data": str(d),
            "loss": "pixel",
            "image_size": 64,
            "epochs": 1,
            "batch_size": 4,
            "mlp_epochs": 2,
            "mlp_patience": 1,
        }
    )
    res = run(cfg, tmp_path / "w", progress=False)
    assert res.status == "done" and 0 <= res.metrics["stl10/accuracy"] <= 1
    assert len(res.details) == 7 and sum(r["selected"] == "*" for r in res.details) == 1
    assert resolve_config({"dataset": "stl10", "data": str(d), "loss": "pixel"})["image_size"] == 96


def test_resolve_config_validation(tmp_path):
    with pytest.raises(LossnetError, match="unknown dataset"):
        resolve_config({"dataset": "cifar"})
    with pytest.raises(DataError, match="nowhere"):
        resolve_config({"dataset": "svhn", "data": str(tmp_path / "nowhere")})
    with pytest.raises(LossnetError, match="epochs"):
        resolve_config({"loss": "pixel", "epochs": 0})
    with pytest.raises(LossnetError, match="relu99"):
        resolve_config({"net": "alexnet", "layer": "relu99"})
    with pytest.raises(LossnetError, match="image_size"):
        resolve_config({"loss": "pixel", "image_size": 96})  # digits 32x32 cannot be reflect-padded to 96
    c = resolve_config({"loss": "pixel", "preset": "paper", "allow_stand_in": True})
    assert c["epochs"] == 10 and c["embedding"] == 64 and c["mlp_epochs"] == 100 and c["net"] is None
    assert c["ae_images"] is None and c["kl_weight"] is None


@pytest.mark.slow
def test_digits_pixel_autoencoder_far_above_chance(tmp_path):
    """A short pixel-loss AE on the real digits data gives embeddings an MLP classifies far above 10 %."""
    cfg = resolve_config({"loss": "pixel", "epochs": 2, "mlp_epochs": 30, "mlp_patience": 5})
    res = run(cfg, tmp_path, progress=False)
    assert res.metrics["digits/accuracy"] > 0.6
