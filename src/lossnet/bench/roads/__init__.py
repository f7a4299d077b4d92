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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossnet.bench.base import Benchmark, BenchResult, CommonConfig, option

__all__ = ["BENCHMARK", "RoadsConfig", "PRESETS", "LOSSES", "resolve_config", "run"]

#: ``--loss`` choices -> config value ("perceptual" means BCE + lambda * perceptual).
LOSSES = {"bce": "bce", "bce+perceptual": "perceptual", "perceptual": "perceptual"}
RHOS = (0, 3)
#: ``threshold`` value meaning "choose it on the training split after training".
FIT_THRESHOLD = "train"
#: Training tiles (evenly spaced) the threshold is chosen on, to bound the time it takes.
THRESHOLD_FIT_TILES = 8
#: Tolerance (pixels) whose quality the fitted threshold maximises (the must-show tolerance).
THRESHOLD_FIT_RHO = 3


def _parse_threshold(value: Any) -> float | str:
    """A road-probability threshold in (0, 1), or :data:`FIT_THRESHOLD` (any case).

    Raises:
        ValueError: neither.
    """
    if isinstance(value, str) and value.strip().lower() == FIT_THRESHOLD:
        return FIT_THRESHOLD
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number in (0, 1) or {FIT_THRESHOLD!r}, got {value!r}") from None
    if not 0.0 < t < 1.0:
        raise ValueError(f"must be in (0, 1) or {FIT_THRESHOLD!r}, got {value!r}")
    return t


def _threshold_arg(value: str) -> float | str:
    try:
        return _parse_threshold(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _loss(value: Any) -> str:
    if str(value) not in LOSSES:
        raise ValueError(f"unknown loss {value!r}; choose bce or bce+perceptual")
    return LOSSES[str(value)]


@dataclass
class RoadsConfig(CommonConfig):
    net: str | None = option("vgg16", CommonConfig.__dataclass_fields__["net"].metadata["help"], kind="str", nullable=True)
    layer: str | None = option("relu2_2", CommonConfig.__dataclass_fields__["layer"].metadata["help"], kind="str", nullable=True)
    distance: str | None = option("mse", "feature distance of the perceptual term (Eq. 5: mse)", kind="str", nullable=True)
    data: str | None = option(None, "Massachusetts Roads folder ({train,test}/{sat,map} or tiff/...); required", kind="str", nullable=True)
    loss: str = option("perceptual", "bce (pixel baseline) or bce+perceptual", kind="str", choices=("bce", "perceptual"),
                       normalize=_loss, parse=str)
    lam: float = option(0.01, "weight lambda of the perceptual term", kind="float", minimum=0.0, flag="--lambda")
    train_split: str = option("train", "split to train on", kind="str", cli=False)
    test_split: str = option("test", "split to evaluate (valid for model selection)", kind="str")
    crop: int = option(224, "training crop size in pixels", kind="int", minimum=1)
    batch_size: int = option(8, "crops per batch", kind="int", minimum=1)
    epochs: int = option(100, "training epochs", kind="int", minimum=1)
    steps_per_epoch: int | None = option(None, "batches per epoch (none: one crop per training tile)", kind="int", nullable=True, minimum=1)
    lr: float = option(1e-3, "Adam learning rate", kind="float", positive=True)
    width: int = option(64, "U-net channels of the first level", kind="int", minimum=1)
    depth: int = option(4, "U-net poolings", kind="int", minimum=1)
    iterations: int = option(3, "refinement iterations K", kind="int", minimum=1)
    threshold: Any = option(0.5, "road probability threshold in (0, 1), or 'train' to choose it on the training split",
                            normalize=_parse_threshold, parse=_threshold_arg)
    max_nodata: float = option(0.5, "largest no-data fraction of a training crop", kind="float", minimum=0.0, cli=False)
    init_prior: float | None = option(None, "output-bias initialisation to a road prior (none: PyTorch default)", kind="float",
                                      nullable=True, positive=True, cli=False)
    baselines: bool = option(False, "also score trivial baselines (all background, intensity, edges)", kind="bool")
    overlays: int = option(3, "test tiles drawn as overlay PNGs", kind="int", minimum=0, cli=False)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"threshold": 0.3},
    "quick": {"crop": 64, "batch_size": 8, "epochs": 20, "steps_per_epoch": 24, "width": 8, "depth": 3,
              "threshold": FIT_THRESHOLD, "init_prior": 0.05, "baselines": True},
}


class Roads(Benchmark):
    name = "roads"
    Config = RoadsConfig
    PRESETS = PRESETS
    BASELINE_LOSS = "bce"
    #: evaluation-only keys, and ``epochs`` (the learning rate is constant: more epochs continue)
    RESUMABLE_KEYS = frozenset({"threshold", "baselines", "overlays", "test_split", "epochs"})

    def validate(self, config: dict[str, Any]) -> None:
        from lossnet.errors import LossnetError

        if not config.get("data"):
            raise LossnetError("roads: needs --data DIR (Massachusetts Roads: {train,test}/{sat,map} or tiff/...)")
        config["data"] = str(Path(config["data"]).expanduser().resolve())
        if config["crop"] % 2 ** config["depth"]:
            raise LossnetError(f"roads: crop {config['crop']} must be divisible by 2**depth = {2 ** config['depth']}")
        if config["init_prior"] is not None and not config["init_prior"] < 1.0:
            raise LossnetError(f"roads: init_prior must be in (0, 1) or null, got {config['init_prior']}")
        if config["max_nodata"] > 1.0:
            raise LossnetError(f"roads: max_nodata must be in [0, 1], got {config['max_nodata']}")
        if config["loss"] == "bce":
            config["lam"] = 0.0  # a non-perceptual baseline: the weight cannot split identical runs

    def run(self, config: dict[str, Any], workdir: str | Path, *, progress: bool = True) -> BenchResult:
        return _run(config, workdir, progress=progress)


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


def _run(config: dict[str, Any], workdir: str | Path, *, progress: bool = True) -> BenchResult:
    """Train the iterative U-net, evaluate on the whole test tiles, write overlays."""
    import torch

    from lossnet.atomic import atomic_path, atomic_write_text
    from lossnet.bench.base import resolve_device
    from lossnet.bench.roads.data import find_tiles
    from lossnet.bench.roads.train import evaluate_tiles, fit_threshold, predict_tile, save_overlay, train

    workdir = Path(workdir)
    device = resolve_device(config)
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    train_tiles = find_tiles(config["data"], config["train_split"])
    test_tiles = find_tiles(config["data"], config["test_split"])
    model, outcome = train(config, train_tiles, workdir, device=device, progress=progress)
    artifacts = {"train_log": str(workdir / "train_log.csv"), "history": str(workdir / "history.json")}
    if outcome.checkpoint_path is not None:
        artifacts["checkpoint"] = str(outcome.checkpoint_path)
    details = [{"epoch": r["epoch"], "bce": round(r["bce"], 4), "perceptual": round(r["perceptual"], 4),
                "lambda*perceptual": round(r["weighted_perceptual"], 4), "s": r["seconds"]} for r in outcome.history]
    if not outcome.has_weights:
        return BenchResult(config, {}, artifacts, outcome.status, details)
    with atomic_path(workdir / "model.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    artifacts["model"] = str(workdir / "model.pt")
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
    if config["baselines"]:
        metrics.update(run_baselines(config, train_tiles, test_tiles, progress=progress))
    return BenchResult(config, metrics, artifacts, outcome.status, details)

BENCHMARK = Roads()
resolve_config = BENCHMARK.resolve_config
run = BENCHMARK.run
