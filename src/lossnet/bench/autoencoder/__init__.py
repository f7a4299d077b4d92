"""Benchmark 4: autoencoder embeddings trained with a deep perceptual loss, judged by downstream MLPs.

A four-layer convolutional autoencoder (:class:`~lossnet.bench.autoencoder.model.ConvAutoencoder`,
after the World Models VAE used by Pihlgren et al. 2020) with a 64-d embedding is trained on
unlabelled images with the perceptual loss of Eq. 6 of Pihlgren et al. -- MSE between the loss
network's features of the input and of the reconstruction at one extraction layer -- or, as the
baseline, with pixel MSE (``--loss pixel``). The encoder is then frozen; the labelled train set's
embeddings are split 80/20 (seeded) and seven MLPs (hidden [], [32], [64], [32,32], [64,32],
[64,64], [128,128]) are trained with early stopping on validation accuracy. The MLP with the best
validation accuracy is evaluated on the test set: ``<dataset>/accuracy`` in [0, 1].

Datasets (--dataset, files in --data DIR in their distributed formats):
  svhn    train_32x32.mat, test_32x32.mat, extra_32x32.mat; AE trained on extra; 32x32
          reflect-padded to 64x64 as in the paper; label 10 = digit 0.
  stl10   unlabeled_X.bin, train_X.bin/train_y.bin, test_X.bin/test_y.bin; AE trained on
          unlabeled; 96x96 used natively (--image-size 96, the default for stl10); --image-size 64
          resizes instead.
  digits  scikit-learn's load_digits (8x8 -> bilinear 32x32 -> reflect-padded 64x64, grey -> RGB),
          seeded stratified 75/25 train/test split; AE trained on the train part. A real labelled
          stand-in reachable without downloads (no --data needed).

Deterministic AE by default (--variational for the VAE's reparameterisation + KL): the perceptual
loss's magnitude differs by orders of magnitude across the 14 networks x 4 layers, so one KL weight
would give every loss network a different effective beta and the comparison would no longer be only
about the loss network; the downstream embedding is the code (mu) either way.

Presets:
  paper   AE: 10 epochs, embedding 64, Adam lr 1e-3, batch 64; MLPs: up to 100 epochs, patience 10,
          batch 128, Adam lr 1e-3; all images. (The paper's repository was not reachable here; the
          batch sizes and learning rates are ours, in the range of the World Models VAE setup.)
  quick   CPU minutes on digits: AE 5 epochs, batch 32; MLPs up to 60 epochs, patience 8, batch 64;
          at most 3000 AE / 2000 labelled / 1000 test images.

Examples:
  lossnet bench autoencoder --dataset digits --net alexnet --layer relu2 --weights-dir ../shared/weights
  lossnet bench autoencoder --dataset digits --loss pixel
  lossnet bench autoencoder --dataset svhn --data ~/svhn --net vgg16 --layer E,S,M,L --preset paper   (4 runs)

Metrics: ``<dataset>/accuracy`` (test accuracy of the selected MLP, in [0, 1]),
``<dataset>/val_accuracy`` (its validation accuracy), ``<dataset>/ae_loss`` (last AE epoch's
training loss). Details: the per-MLP table (hidden, val_accuracy, epochs, selected). Artifacts:
``checkpoint`` (resumable AE checkpoint), ``reconstructions`` (PNG: inputs over reconstructions),
``history``.

References:
  Pihlgren, Sandin, Liwicki, "Pretraining Image Encoders without Reconstruction via Feature
  Prediction Loss", ICPR 2020.
  Pihlgren et al., "A Systematic Performance Analysis of Deep Perceptual Loss Networks", 2024.
  Ha, Schmidhuber, "World Models", 2018.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lossnet.bench.base import BenchResult, apply_preset, check_loss_network, expand_layers, expand_nets
from lossnet.errors import DataError, LossnetError

from .datasets import DATASETS

__all__ = ["PRESETS", "add_arguments", "config_from_args", "resolve_config", "run"]

LOSSES = ("perceptual", "pixel")

_BASE: dict[str, Any] = {
    "benchmark": "autoencoder",
    "dataset": "digits",
    "data": None,
    "loss": "perceptual",
    "net": "vgg16",
    "layer": "relu2_2",
    "weights": "imagenet",
    "distance": "mse",
    "seed": 0,
    "embedding": 64,
    "image_size": None,  # 64 (96 for stl10)
    "variational": False,
    "kl_weight": 1.0,
    "lr": 1e-3,
    "mlp_lr": 1e-3,
    "val_fraction": 0.2,
}

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {**_BASE, "epochs": 10, "batch_size": 64, "mlp_epochs": 100, "mlp_patience": 10, "mlp_batch_size": 128,
              "ae_images": None, "train_images": None, "test_images": None},
    "quick": {**_BASE, "epochs": 5, "batch_size": 32, "mlp_epochs": 60, "mlp_patience": 8, "mlp_batch_size": 64,
              "ae_images": 3000, "train_images": 2000, "test_images": 1000},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("autoencoder options")
    g.add_argument("--dataset", choices=DATASETS, help="svhn, stl10 or digits (default digits)")
    g.add_argument("--data", metavar="DIR", help="folder with the dataset files (svhn, stl10)")
    g.add_argument("--loss", choices=LOSSES, help="perceptual (default) or pixel (MSE baseline; --net/--layer ignored)")
    g.add_argument("--distance", help="feature distance of the perceptual loss (default mse, Eq. 6)")
    g.add_argument("--epochs", type=int, help="autoencoder epochs")
    g.add_argument("--batch-size", type=int, help="autoencoder batch size")
    g.add_argument("--lr", type=float, help="autoencoder Adam learning rate")
    g.add_argument("--embedding", type=int, help="embedding size (default 64)")
    g.add_argument("--image-size", type=int, help="autoencoder input size (64; stl10 default 96)")
    g.add_argument("--variational", action="store_true", default=None, help="VAE (reparameterisation + KL) instead of a deterministic AE")
    g.add_argument("--kl-weight", type=float, help="KL factor with --variational (default 1)")
    g.add_argument("--mlp-epochs", type=int, help="maximum MLP epochs")
    g.add_argument("--mlp-patience", type=int, help="early-stopping patience (epochs without better validation accuracy)")
    g.add_argument("--mlp-batch-size", type=int)
    g.add_argument("--ae-images", type=int, help="seeded subset of the AE training images")
    g.add_argument("--train-images", type=int, help="seeded subset of the labelled train set")
    g.add_argument("--test-images", type=int, help="seeded subset of the test set")




def config_from_args(args: argparse.Namespace) -> dict[str, Any] | list[dict[str, Any]]:
    """Partial config(s); ``--net a,b`` / ``--net all`` and ``--layer E,S,M,L`` expand into several runs."""
    keys = ("dataset", "data", "loss", "distance", "epochs", "batch_size", "lr", "embedding", "image_size", "variational",
            "kl_weight", "mlp_epochs", "mlp_patience", "mlp_batch_size", "ae_images", "train_images", "test_images")
    common = {k: getattr(args, k, None) for k in keys}
    if args.loss == "pixel":
        return common
    configs = [dict(common, net=n, layer=l) for n in expand_nets(args.net) for l in expand_layers(args.layer)]
    return configs[0] if len(configs) == 1 else configs


def _positive(config: dict[str, Any], *keys: str, allow_none: bool = False) -> None:
    for k in keys:
        v = config[k]
        if allow_none and v is None:
            continue
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise LossnetError(f"autoencoder: {k} must be a positive number, got {v!r}")


def resolve_config(partial: dict[str, Any]) -> dict[str, Any]:
    """Full, validated config (preset expanded).

    Raises:
        LossnetError: unknown dataset/loss/distance/network/layer, bad sizes, missing data folder.
    """
    config = apply_preset(PRESETS, partial)
    config["benchmark"] = "autoencoder"
    if config["dataset"] not in DATASETS:
        raise LossnetError(f"autoencoder: unknown dataset {config['dataset']!r}; choose one of {', '.join(DATASETS)}")
    if config["loss"] not in LOSSES:
        raise LossnetError(f"autoencoder: unknown loss {config['loss']!r}; choose one of {', '.join(LOSSES)}")
    if config["image_size"] is None:
        config["image_size"] = 96 if config["dataset"] == "stl10" else 64
    _positive(config, "epochs", "batch_size", "lr", "embedding", "image_size", "mlp_epochs", "mlp_patience",
              "mlp_batch_size", "mlp_lr", "kl_weight")
    _positive(config, "ae_images", "train_images", "test_images", allow_none=True)
    if config["image_size"] % 16:
        raise LossnetError(f"autoencoder: image_size must be divisible by 16, got {config['image_size']}")
    if config["dataset"] in ("svhn", "digits") and not 32 <= config["image_size"] < 96:
        # Reflect padding needs pad < 32 per side; smaller sizes would crop the digits.
        raise LossnetError(f"autoencoder: {config['dataset']} images are 32x32, reflect-padded; image_size must be 32..95 (paper: 64), got {config['image_size']}")
    if not 0 < config["val_fraction"] < 1:
        raise LossnetError(f"autoencoder: val_fraction must be in (0, 1), got {config['val_fraction']!r}")
    config["variational"] = bool(config["variational"])
    if not config["variational"]:
        config["kl_weight"] = None  # irrelevant; must not split identical runs
    if config["dataset"] == "digits":
        config["data"] = None
    else:
        if not config.get("data"):
            raise LossnetError(f"autoencoder: --data DIR is required for dataset {config['dataset']}")
        if not Path(config["data"]).is_dir():
            raise DataError(f"autoencoder: data folder not found: {config['data']}")
        config["data"] = str(config["data"])
    check_loss_network(config, "autoencoder")
    return config


def run(config: dict[str, Any], workdir: str | Path, *, progress: bool = True) -> BenchResult:
    """Load data, train (resuming from ``workdir``) the autoencoder, embed, select and test the MLPs."""
    from lossnet.atomic import atomic_write_json

    from .datasets import load_dataset
    from .mlp import evaluate_mlps
    from .train import CHECKPOINT, embed, save_reconstruction_grid, train_autoencoder

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    logs: list[str] = []

    def log(s: str) -> None:
        logs.append(s)
        if progress:
            print(s)

    data = load_dataset(config["dataset"], config.get("data"), seed=config["seed"], ae_images=config["ae_images"],
                        train_images=config["train_images"], test_images=config["test_images"])
    model, outcome = train_autoencoder(config, data.unlabeled, workdir, progress=progress, log=log)
    name, size = data.name, config["image_size"]
    artifacts = {"checkpoint": str(workdir / CHECKPOINT)} if (workdir / CHECKPOINT).exists() else {}
    metrics: dict[str, float] = {}
    details: list[dict[str, Any]] = []
    if outcome.history:
        metrics[f"{name}/ae_loss"] = float(outcome.history[-1]["train_loss"])
    if outcome.status == "done":
        grid = workdir / "reconstructions.png"
        save_reconstruction_grid(model, data.test_x, size, grid)
        artifacts["reconstructions"] = str(grid)
        tr = embed(model, data.train_x, size, progress=progress, desc="embed train")
        te = embed(model, data.test_x, size, progress=progress, desc="embed test")
        sel = evaluate_mlps(tr, data.train_y, te, data.test_y, val_fraction=config["val_fraction"],
                            epochs=config["mlp_epochs"], patience=config["mlp_patience"],
                            batch_size=config["mlp_batch_size"], lr=config["mlp_lr"], seed=config["seed"], progress=progress)
        details = sel.rows
        metrics[f"{name}/accuracy"] = float(sel.test_accuracy)
        metrics[f"{name}/val_accuracy"] = float(max(r["val_accuracy"] for r in sel.rows))
    atomic_write_json(workdir / "history.json", {"status": outcome.status, "start_epoch": outcome.start_epoch,
                                                 "history": outcome.history, "mlps": details, "log": logs})
    artifacts["history"] = str(workdir / "history.json")
    return BenchResult(config=config, metrics=metrics, artifacts=artifacts, status=outcome.status, details=details)
