"""Benchmark 2: single-image super-resolution (x4, x8) trained with a deep perceptual loss.

An image transformation network (Johnson et al. 2016; :class:`~lossnet.bench.superres.model.TransformNet`)
learns to upscale LR images made by Gaussian blur (sigma 1) + bicubic downsampling of HR crops. It is
trained with the perceptual loss of Eq. 3 of Pihlgren et al. -- MSE between the loss network's
features of the output and of the HR image at one extraction layer -- or, as the baseline, with
pixel MSE (``--loss pixel``). The weights with the best validation Y-PSNR are evaluated on Set5,
Set14 and BSD100: PSNR and SSIM on the BT.601 Y channel, ``scale`` border pixels cropped, next to
bicubic upsampling.

Presets:
  paper   10,000 training images (seeded random choice from the --train folders; MS-COCO
          train2014 in the paper), 100 validation images (--val, val2014 in the paper; else held
          out of the pool), 288x288 HR crops, batch 4, Adam lr 1e-3, 4 residual blocks,
          10 epochs x 2,500 iterations (one pass over the 10,000 images per epoch; 25,000
          iterations, the order of Johnson et al.'s 40,000 -- our choice, the text we have gives no
          count), constant learning rate, Johnson's network without skip (--skip none),
          validation on 288x288 centre crops, test on Set5, Set14, BSD100.
  quick   CPU minutes (about 5 min per run on one core): 48x48 HR crops, batch 4, Adam lr 5e-4 with
          cosine decay to 0 (--lr-schedule cosine), 4 residual blocks, 3 epochs x 300 iterations,
          8 held-out validation images (96x96 centre crops), test on Set5 and Set14. The network
          learns a residual over bicubic upsampling (--skip bicubic, see TransformNet): Johnson's
          plain network needs tens of thousands of GPU iterations just to reach bicubic quality,
          so without the skip a CPU-minutes run only measures how far from convergence it is.

Examples:
  lossnet bench superres --scale 4 --net vgg16 --layer relu2_2 --weights-dir ../shared/weights \\
      --train ../shared/data/sr/t91 --train ../shared/data/sr/bsd200 \\
      --test set5=../shared/data/sr/set5 --test set14=../shared/data/sr/set14
  lossnet bench superres --scale 4 --loss pixel
  lossnet bench superres --scale 8 --net vgg16 --layer E,S,M,L --preset paper      (4 runs)

Without --train/--test, the ../shared folder of this project is used when present ($LOSSNET_SHARED,
./../shared); explicit flags always win.

Metrics: ``<set>/psnr``, ``<set>/ssim`` (model), ``<set>/psnr_bicubic``, ``<set>/ssim_bicubic``,
``val/psnr`` (best validation Y-PSNR). Artifacts: ``best_checkpoint``, ``checkpoint``,
``grid_<set>`` (PNG: bicubic | model | HR). Status ``diverged`` when the training loss became
non-finite (metrics then come from the best checkpoint so far, if any).

References:
  Johnson, Alahi, Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution", ECCV 2016.
  Pihlgren et al., "A Systematic Performance Analysis of Deep Perceptual Loss Networks", 2024.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from lossnet.bench.base import BenchResult, apply_preset, check_loss_network, expand_layers, expand_nets
from lossnet.errors import DataError, LossnetError

from .model import SKIPS

__all__ = ["PRESETS", "add_arguments", "config_from_args", "resolve_config", "run", "shared_data_dir"]

LOSSES = ("perceptual", "pixel")
LR_SCHEDULES = ("constant", "cosine")

_BASE: dict[str, Any] = {
    "benchmark": "superres",
    "scale": 4,
    "loss": "perceptual",
    "net": "vgg16",
    "layer": "relu2_2",
    "weights": "imagenet",
    "distance": "mse",
    "seed": 0,
    "num_blocks": 4,
    "channels": 64,
    "skip": "none",
    "lr": 1e-3,
    "lr_schedule": "constant",
    "batch_size": 4,
    "train": None,
    "val": None,
    "test": None,
}

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        **_BASE,
        "crop": 288,
        "epochs": 10,
        "iters_per_epoch": 2500,
        "train_images": 10000,
        "val_images": 100,
        "val_crop": 288,
        "test_sets": ["set5", "set14", "bsd100"],
        "grid_images": 3,
    },
    "quick": {
        **_BASE,
        "skip": "bicubic",
        "lr": 5e-4,
        "lr_schedule": "cosine",
        "crop": 48,
        "epochs": 3,
        "iters_per_epoch": 300,
        "train_images": None,
        "val_images": 8,
        "val_crop": 96,
        "test_sets": ["set5", "set14"],
        "grid_images": 3,
    },
}


def shared_data_dir() -> Path | None:
    """``<shared>/data/sr`` of this project's ../shared folder, or None when absent."""
    candidates = [os.environ.get("LOSSNET_SHARED"), Path.cwd().parent / "shared", Path(__file__).resolve().parents[5] / "shared"]
    for c in candidates:
        if c and (Path(c) / "data" / "sr").is_dir():
            return Path(c) / "data" / "sr"
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("superres options")
    g.add_argument("--scale", type=int, choices=(4, 8), help="upscaling factor (default 4)")
    g.add_argument("--loss", choices=LOSSES, help="perceptual (default) or pixel (MSE baseline; --net/--layer ignored)")
    g.add_argument("--distance", help="feature distance of the perceptual loss (default mse, Eq. 3)")
    g.add_argument("--train", action="append", metavar="DIR", help="training image folder (repeatable)")
    g.add_argument("--val", metavar="DIR", help="validation image folder (default: hold images out of --train)")
    g.add_argument("--test", action="append", metavar="NAME=DIR", help="test set (repeatable), e.g. set5=DIR")
    g.add_argument("--epochs", type=int, help="epochs (validation + checkpoint after each)")
    g.add_argument("--iters-per-epoch", type=int, help="optimiser steps per epoch")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--crop", type=int, help="HR training crop size (multiple of --scale)")
    g.add_argument("--lr", type=float, help="Adam learning rate")
    g.add_argument("--num-blocks", type=int, help="residual blocks of the transformation network")
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="constant (paper) or cosine decay to 0 over the run (quick)")
    g.add_argument("--skip", choices=SKIPS, help="none: Johnson et al.'s network (paper); bicubic: learn a residual over bicubic upsampling (quick)")
    g.add_argument("--train-images", type=int, help="use a seeded random subset of this many training images")
    g.add_argument("--val-images", type=int, help="validation images (chosen/held out with the seed)")
    g.add_argument("--val-crop", type=int, help="centre crop of validation images")




def _parse_tests(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    tests = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise LossnetError(f"--test expects NAME=DIR, got {item!r}")
        tests[name.strip().lower()] = folder.strip()
    return tests


def config_from_args(args: argparse.Namespace) -> dict[str, Any] | list[dict[str, Any]]:
    """Partial config(s); ``--net a,b`` / ``--net all`` and ``--layer E,S,M,L`` expand into several runs."""
    common = {
        "scale": args.scale,
        "loss": args.loss,
        "distance": args.distance,
        "train": args.train,
        "val": args.val,
        "test": _parse_tests(args.test),
        "epochs": args.epochs,
        "iters_per_epoch": args.iters_per_epoch,
        "batch_size": args.batch_size,
        "crop": args.crop,
        "lr": args.lr,
        "num_blocks": args.num_blocks,
        "skip": args.skip,
        "lr_schedule": args.lr_schedule,
        "train_images": args.train_images,
        "val_images": args.val_images,
        "val_crop": args.val_crop,
    }
    if args.loss == "pixel":
        return common
    configs = [dict(common, net=n, layer=l) for n in expand_nets(args.net) for l in expand_layers(args.layer)]
    return configs[0] if len(configs) == 1 else configs


def _positive(config: dict[str, Any], *keys: str) -> None:
    for k in keys:
        v = config[k]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise LossnetError(f"superres: {k} must be a positive number, got {v!r}")


def resolve_config(partial: dict[str, Any]) -> dict[str, Any]:
    """Full, validated config: preset expanded, data folders defaulted from ../shared when present.

    Raises:
        LossnetError: unknown loss/distance/network/layer, bad sizes, missing data folders.
    """
    config = apply_preset(PRESETS, partial)
    config["benchmark"] = "superres"
    if config["scale"] not in (4, 8):
        raise LossnetError(f"superres: scale must be 4 or 8, got {config['scale']!r}")
    if config["loss"] not in LOSSES:
        raise LossnetError(f"superres: unknown loss {config['loss']!r}; choose one of {', '.join(LOSSES)}")
    if config["lr_schedule"] not in LR_SCHEDULES:
        raise LossnetError(f"superres: unknown lr schedule {config['lr_schedule']!r}; choose one of {', '.join(LR_SCHEDULES)}")
    if config["skip"] not in SKIPS:
        raise LossnetError(f"superres: unknown skip {config['skip']!r}; choose one of {', '.join(SKIPS)}")
    _positive(config, "epochs", "iters_per_epoch", "batch_size", "crop", "lr", "num_blocks", "channels", "val_crop")
    if config["crop"] % config["scale"]:
        raise LossnetError(f"superres: crop {config['crop']} must be a multiple of scale {config['scale']}")
    check_loss_network(config, "superres")

    shared = shared_data_dir()
    if not config.get("train"):
        if shared is None:
            raise LossnetError("superres: no --train folder given (and no ../shared/data/sr to default to)")
        config["train"] = [str(shared / "t91"), str(shared / "bsd200")]
    elif isinstance(config["train"], str):
        config["train"] = [config["train"]]
    config["train"] = [str(t) for t in config["train"]]
    if not config.get("test"):
        if shared is None:
            raise LossnetError("superres: no --test NAME=DIR given (and no ../shared/data/sr to default to)")
        config["test"] = {name: str(shared / name) for name in config["test_sets"]}
    for folder in [*config["train"], *config["test"].values(), *([config["val"]] if config.get("val") else [])]:
        if not Path(folder).is_dir():
            raise DataError(f"superres: folder not found: {folder}")
    config.pop("test_sets", None)
    return config


def run(config: dict[str, Any], workdir: str | Path, *, progress: bool = True) -> BenchResult:
    """Train (resuming from ``workdir`` when it holds a checkpoint), then evaluate the best weights."""
    import torch

    from lossnet.atomic import atomic_write_json

    from .evaluate import evaluate_set
    from .train import BEST, CHECKPOINT, build_model, resolve_device, train

    workdir = Path(workdir)
    logs: list[str] = []
    outcome = train(config, workdir, progress=progress, log=lambda s: (logs.append(s), print(s) if progress else None))
    metrics: dict[str, float] = {}
    artifacts: dict[str, str] = {}
    device = resolve_device(config)
    model = None
    if outcome.best_path is not None:
        model = build_model(config).to(device)
        model.load_state_dict(torch.load(outcome.best_path, map_location=device, weights_only=True)["model"])
        metrics["val/psnr"] = float(outcome.best_psnr)
        artifacts["best_checkpoint"] = str(outcome.best_path)
    if (workdir / CHECKPOINT).exists():
        artifacts["checkpoint"] = str(workdir / CHECKPOINT)
    for name, folder in config["test"].items():
        grid = workdir / f"grid_{name}.png"
        metrics.update(
            evaluate_set(model, folder, config["scale"], name=name, device=device, grid_path=grid if model is not None else None,
                         grid_images=config["grid_images"], progress=progress)
        )
        if model is not None:
            artifacts[f"grid_{name}"] = str(grid)
    details = [{"epoch": h["epoch"], "train_loss": h["train_loss"], "val_psnr": h["val_psnr"],
                "best": "*" if h["epoch"] == outcome.best_epoch else ""} for h in outcome.history]
    atomic_write_json(workdir / "history.json", {"status": outcome.status, "start_epoch": outcome.start_epoch,
                                                 "best_epoch": outcome.best_epoch, "history": outcome.history, "log": logs})
    artifacts["history"] = str(workdir / "history.json")
    return BenchResult(config=config, metrics=metrics, artifacts=artifacts, status=outcome.status, details=details)
