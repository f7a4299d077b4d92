"""Benchmark 3: road delineation on Massachusetts Roads with an iterative U-net and perceptual loss.

A U-net on [RGB, previous prediction] is applied K = 3 times (Mosinska et al.), trained on random
crops with BCE + lambda * perceptual loss (the loss network's MSE between the features of the
predicted and true masks, Eq. 5 of Pihlgren et al.), summed over the iterations. Test tiles are
predicted whole (reflect-padded to a multiple of 2**depth) and scored with Wiedemann et al.'s
completeness / correctness / quality, pixel-exact (rho = 0, the paper's numbers) and with a 3 px
tolerance (rho = 3). Counts are summed over all test tiles, each tile counted once.

Presets:
  paper   the paper's repository: Adam 1e-3, batch 8, 100 epochs of one 224 px crop per training
          tile, U-net width 64 / depth 4, K = 3, lambda 0.01, threshold 0.3
  quick   CPU minutes: 64 px crops, batch 8, 20 epochs x 24 steps, U-net width 8 / depth 3,
          K = 3, lambda 0.01, output bias initialised to a 5 % road prior, threshold chosen on
          the training split (``train``, below; this short training leaves the model
          under-confident: the fitted value is typically 0.05-0.15), plus the trivial baselines (all
          background, intensity thresholds fitted on 4 training tiles, Canny edges). On one CPU
          core about 2 min with --loss bce and 7 min with BCE + VGG16 relu2_2.

  --threshold T overrides the preset's (0.5 for a custom preset); --threshold train chooses it
  after training, on the training split only: the value of 0.05, 0.10, ..., 0.95 with the best
  quality at rho = 3 on up to 8 evenly spaced training tiles (reported as ``mrd/threshold``, with the
  whole curve in ``threshold_fit.csv``). The test split is never used for any choice.

Examples:
  lossnet bench roads --data ../shared/data/roads --net vgg16 --layer relu2_2 --weights-dir ../shared/weights
  lossnet bench roads --data mass_roads --loss bce --preset paper
  lossnet bench roads --data mass_roads --net all --layer E,S,M,L --preset paper   (56 runs)

Data layouts: ``DIR/{train,valid,test}/{sat,map}`` (original, and ../shared) or
``DIR/tiff/{train,train_labels,test,test_labels}``; pairs by file stem; masks > 127 are road.

Metrics (percent): ``mrd/correctness``, ``mrd/completeness``, ``mrd/quality`` (rho 0),
``mrd/correctness_rho3``, ``mrd/completeness_rho3``, ``mrd/quality_rho3``; ``mrd/threshold`` (the
road-probability threshold used) and ``mrd/test_tiles``; with baselines also
``mrd.<baseline>/<metric>`` for baseline in background, intensity, edges.

Workdir: ``checkpoint.pt`` (atomic, every epoch; a rerun with the same config resumes),
``train_log.csv`` (per-epoch BCE, perceptual and lambda * perceptual terms, each summed over the
K iterations and averaged over the epoch's batches), ``threshold_fit.csv`` (with ``--threshold
train``: training-tile quality at rho = 3 per candidate threshold), ``overlay_<tile>.png`` (image | truth |
prediction), ``model.pt``.

References:
  Mnih, "Machine Learning for Aerial Image Labeling", 2013 (the dataset).
  Ronneberger et al., "U-Net", MICCAI 2015. Mosinska et al., "Beyond the Pixel-Wise Loss for
  Topology-Aware Delineation", CVPR 2018. Wiedemann et al., "Empirical evaluation of automatically
  extracted road axes", 1998. Pihlgren et al., "A Systematic Performance Analysis of Deep
  Perceptual Loss Networks", 2024.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from lossnet.bench.base import BenchResult, apply_preset, resolve_device
from lossnet.errors import LossnetError

__all__ = ["PRESETS", "LOSSES", "add_arguments", "config_from_args", "resolve_config", "run"]

#: ``--loss`` choices -> config value ("perceptual" means BCE + lambda * perceptual).
LOSSES = {"bce": "bce", "bce+perceptual": "perceptual", "perceptual": "perceptual"}
RHOS = (0, 3)
#: ``threshold`` value meaning "choose it on the training split after training".
FIT_THRESHOLD = "train"
#: Training tiles (evenly spaced) the threshold is chosen on, to bound the time it takes.
THRESHOLD_FIT_TILES = 8
#: Tolerance (pixels) whose quality the fitted threshold maximises (the must-show tolerance).
THRESHOLD_FIT_RHO = 3

_BASE: dict[str, Any] = {
    "benchmark": "roads",
    "net": "vgg16",
    "layer": "relu2_2",
    "weights": "imagenet",
    "seed": 0,
    "loss": "perceptual",
    "distance": "mse",
    "lambda": 0.01,
    "data": None,
    "train_split": "train",
    "test_split": "test",
    "crop": 224,
    "batch_size": 8,
    "epochs": 100,
    "steps_per_epoch": None,  # None: one crop per training tile per epoch
    "lr": 1e-3,
    "width": 64,
    "depth": 4,
    "iterations": 3,
    "threshold": 0.5,
    "max_nodata": 0.5,
    "init_prior": None,  # output-bias initialisation to a road prior (None: PyTorch default)
    "baselines": False,
    "overlays": 3,
}

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {**_BASE, "threshold": 0.3},
    "quick": {
        **_BASE, "crop": 64, "batch_size": 8, "epochs": 20, "steps_per_epoch": 24, "width": 8, "depth": 3,
        "threshold": FIT_THRESHOLD, "init_prior": 0.05, "baselines": True,
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's own options (the common ones come from ``add_common_arguments``)."""
    g = parser.add_argument_group("roads options")
    g.add_argument("--data", help="Massachusetts Roads folder ({train,test}/{sat,map} or tiff/...); required")
    g.add_argument("--loss", choices=sorted(LOSSES), help="bce (pixel baseline) or bce+perceptual (default)")
    g.add_argument("--lambda", dest="lam", type=float, help="weight of the perceptual term (default 0.01)")
    g.add_argument("--threshold", type=_threshold_arg, help="road probability threshold in (0, 1), or 'train' to choose it on the "
                   "training split (paper preset: 0.3, as the paper's repository; quick preset: train)")
    g.add_argument("--epochs", type=int, help="training epochs")
    g.add_argument("--steps-per-epoch", type=int, help="batches per epoch (paper: one crop per training tile)")
    g.add_argument("--batch-size", type=int, help="crops per batch")
    g.add_argument("--crop", type=int, help="training crop size in pixels")
    g.add_argument("--lr", type=float, help="Adam learning rate")
    g.add_argument("--width", type=int, help="U-net channels of the first level")
    g.add_argument("--depth", type=int, help="U-net poolings")
    g.add_argument("--iterations", type=int, help="refinement iterations K (default 3)")
    g.add_argument("--test-split", help="split to evaluate (default test; valid for model selection)")
    g.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=None, help="also score trivial baselines")
    g.add_argument("--num-workers", type=int, help="DataLoader workers (default 0)")


def _parse_threshold(value: Any) -> float | str:
    """A road-probability threshold: :data:`FIT_THRESHOLD` (any case) or a number (range checked by the caller).

    Raises:
        ValueError: neither.
    """
    if isinstance(value, str) and value.strip().lower() == FIT_THRESHOLD:
        return FIT_THRESHOLD
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number in (0, 1) or {FIT_THRESHOLD!r}, got {value!r}") from None


def _threshold_arg(value: str) -> float | str:
    """``--threshold``: a number, or ``train`` (chosen on the training split)."""
    try:
        return _parse_threshold(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _split(value: str | None) -> list[str | None]:
    if value is None:
        return [None]
    return [v.strip() for v in value.split(",") if v.strip()] or [None]


def config_from_args(args: argparse.Namespace) -> dict[str, Any] | list[dict[str, Any]]:
    """Partial config(s); ``--net all`` / comma lists and E,S,M,L layer lists expand into runs."""
    from lossnet.registry import PAPER_ARCHS

    loss = getattr(args, "loss", None)
    common = {
        "data": getattr(args, "data", None),
        "loss": LOSSES[loss] if loss else None,
        "lambda": getattr(args, "lam", None),
        "threshold": getattr(args, "threshold", None),
        "epochs": getattr(args, "epochs", None),
        "steps_per_epoch": getattr(args, "steps_per_epoch", None),
        "batch_size": getattr(args, "batch_size", None),
        "crop": getattr(args, "crop", None),
        "lr": getattr(args, "lr", None),
        "width": getattr(args, "width", None),
        "depth": getattr(args, "depth", None),
        "iterations": getattr(args, "iterations", None),
        "test_split": getattr(args, "test_split", None),
        "baselines": getattr(args, "baselines", None),
        "num_workers": getattr(args, "num_workers", None),
    }
    net = getattr(args, "net", None)
    nets = list(PAPER_ARCHS) if net and net.strip().lower() == "all" else _split(net)
    layers = _split(getattr(args, "layer", None))
    if not all(l is None or (len(l) == 1 and l.upper() in "ESML") for l in layers):
        layers = [",".join(l for l in layers if l)]  # readable aliases / nodes form one layer set
    configs = [dict(common, net=n, layer=l) for n in nets for l in layers]
    return configs[0] if len(configs) == 1 else configs


def _positive_int(config: dict[str, Any], key: str) -> None:
    v = config[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise LossnetError(f"{key} must be a positive integer, got {v!r}")


def resolve_config(partial: dict[str, Any]) -> dict[str, Any]:
    """Full, validated config (preset expanded).

    Raises:
        LossnetError: missing ``data``, unknown loss/network/layer, bad sizes or ranges.
    """
    runtime = {k: partial.get(k) for k in ("device", "weights_dir", "num_workers")}
    config = apply_preset(PRESETS, {k: v for k, v in partial.items() if k not in runtime})
    config["benchmark"] = "roads"
    if not config.get("data"):
        raise LossnetError("the roads benchmark needs --data DIR (Massachusetts Roads: {train,test}/{sat,map} or tiff/...)")
    config["data"] = str(Path(config["data"]).expanduser().resolve())
    loss = LOSSES.get(str(config["loss"]))
    if loss is None:
        raise LossnetError(f"unknown loss {config['loss']!r}; choose bce or bce+perceptual")
    config["loss"] = loss
    for key in ("crop", "batch_size", "epochs", "width", "depth", "iterations"):
        _positive_int(config, key)
    if config["steps_per_epoch"] is not None:
        _positive_int(config, "steps_per_epoch")
    if config["crop"] % 2 ** config["depth"]:
        raise LossnetError(f"crop {config['crop']} must be divisible by 2**depth = {2 ** config['depth']}")
    try:
        config["threshold"] = _parse_threshold(config["threshold"])
    except ValueError as exc:
        raise LossnetError(f"threshold: {exc}") from None
    if config["threshold"] != FIT_THRESHOLD and not (0.0 < config["threshold"] < 1.0):
        raise LossnetError(f"threshold must be in (0, 1), got {config['threshold']}")
    if not (float(config["lr"]) > 0 and math.isfinite(float(config["lr"]))):
        raise LossnetError(f"lr must be positive, got {config['lr']}")
    if config["init_prior"] is not None and not (0.0 < float(config["init_prior"]) < 1.0):
        raise LossnetError(f"init_prior must be in (0, 1) or null, got {config['init_prior']}")
    if not (0.0 <= float(config["max_nodata"]) <= 1.0):
        raise LossnetError(f"max_nodata must be in [0, 1], got {config['max_nodata']}")
    if loss == "bce":
        # a non-perceptual baseline: no loss network is involved
        config.update(net=None, layer=None, weights=None, distance=None, **{"lambda": 0.0})
    else:
        from lossnet.registry import get_spec, resolve_layers

        if not config.get("net"):
            raise LossnetError("--loss bce+perceptual needs --net")
        if not config.get("layer"):
            raise LossnetError("--loss bce+perceptual needs --layer")
        get_spec(config["net"])
        resolve_layers(config["net"], str(config["layer"]))
        lam = float(config["lambda"])
        if not (lam >= 0 and math.isfinite(lam)):
            raise LossnetError(f"lambda must be a finite number >= 0, got {config['lambda']}")
        config["lambda"] = lam
        w = config.get("weights")
        config["weights"] = "none" if w is None or str(w).lower() == "none" else ("imagenet" if str(w).lower() == "imagenet" else str(w))
    config["baselines"] = bool(config["baselines"])
    config.update({k: v for k, v in runtime.items() if v is not None})
    return config


def _prefixed(counts: dict, prefix: str) -> dict[str, float]:
    out = {}
    for rho, c in counts.items():
        suffix = "" if rho == 0 else f"_rho{rho:g}"
        for name in ("correctness", "completeness", "quality"):
            out[f"{prefix}/{name}{suffix}"] = c.scores()[name]
    return out


def threshold_fit_tiles(train_tiles: list) -> list:
    """The <= :data:`THRESHOLD_FIT_TILES` evenly spaced training tiles ``--threshold train`` uses."""
    n = len(train_tiles)
    if n <= THRESHOLD_FIT_TILES:
        return list(train_tiles)
    return [train_tiles[round(i * (n - 1) / (THRESHOLD_FIT_TILES - 1))] for i in range(THRESHOLD_FIT_TILES)]


def run_baselines(config: dict[str, Any], train_tiles, test_tiles, progress: bool = False) -> dict[str, float]:
    """Scores of the trivial baselines on the test tiles (intensity thresholds fitted on <= 4 train tiles)."""
    from lossnet.bench.roads import baselines as B
    from lossnet.bench.roads.data import load_tile
    from lossnet.bench.roads.train import evaluate_tiles

    fit_tiles = [load_tile(t) for t in train_tiles[:: max(1, len(train_tiles) // 4)][:4]]
    params = B.fit_intensity_baseline(fit_tiles, rho=3)
    metrics: dict[str, float] = {}
    for name, fn in (("background", B.all_background), ("intensity", lambda im: B.intensity_baseline(im, **params)), ("edges", B.edge_baseline)):
        metrics.update(_prefixed(evaluate_tiles(test_tiles, fn, RHOS, progress=progress), f"mrd.{name}"))
    return metrics


def run(config: dict[str, Any], workdir: str | Path, *, progress: bool = True) -> BenchResult:
    """Train the iterative U-net, evaluate on the whole test tiles, write overlays."""
    import torch

    from lossnet.atomic import atomic_path, atomic_write_text
    from lossnet.bench.roads.data import find_tiles
    from lossnet.bench.roads.train import evaluate_tiles, fit_threshold, predict_tile, save_overlay, train

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config)
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    train_tiles = find_tiles(config["data"], config["train_split"])
    test_tiles = find_tiles(config["data"], config["test_split"])
    cfg = dict(config)
    if cfg["steps_per_epoch"] is None:
        cfg["steps_per_epoch"] = max(1, len(train_tiles) // cfg["batch_size"])
    try:
        model, log = train(cfg, train_tiles, workdir, device=device, progress=progress)
    except FloatingPointError as exc:
        return BenchResult(config, {}, {"train_log": str(workdir / "train_log.csv")}, status="diverged", details=[{"error": str(exc)}])
    with atomic_path(workdir / "model.pt") as tmp:
        torch.save(model.state_dict(), tmp)

    artifacts = {"checkpoint": str(workdir / "checkpoint.pt"), "model": str(workdir / "model.pt"), "train_log": str(workdir / "train_log.csv")}
    overlay_names = {t.name for t in test_tiles[: int(config.get("overlays", 3))]}

    def on_tile(tile, image, mask, pred):
        if tile.name in overlay_names:
            path = workdir / f"overlay_{tile.name}.png"
            save_overlay(path, image, mask, pred)
            artifacts[f"overlay_{tile.name}"] = str(path)

    threshold = config["threshold"]
    if threshold == FIT_THRESHOLD:
        # chosen on training tiles only, never on the split being evaluated
        threshold, curve = fit_threshold(
            threshold_fit_tiles(train_tiles), lambda im: predict_tile(model, im, device), rho=THRESHOLD_FIT_RHO, progress=progress
        )
        lines = [f"threshold,quality_rho{THRESHOLD_FIT_RHO}_train"] + [f"{t:g},{q:.4f}" for t, q in curve.items()]
        atomic_write_text(workdir / "threshold_fit.csv", "\n".join(lines) + "\n")
        artifacts["threshold_fit"] = str(workdir / "threshold_fit.csv")
    counts = evaluate_tiles(test_tiles, lambda im: predict_tile(model, im, device) > threshold, RHOS, on_tile=on_tile, progress=progress)
    metrics = _prefixed(counts, "mrd")
    metrics["mrd/threshold"] = float(threshold)
    metrics["mrd/test_tiles"] = float(counts[0].tiles)
    details = [{"epoch": r["epoch"], "bce": round(r["bce"], 4), "perceptual": round(r["perceptual"], 4), "lambda*perceptual": round(r["weighted_perceptual"], 4), "s": r["seconds"]} for r in log]
    if config["baselines"]:
        metrics.update(run_baselines(config, train_tiles, test_tiles, progress=progress))
    return BenchResult(config, metrics, artifacts, "done", details)
