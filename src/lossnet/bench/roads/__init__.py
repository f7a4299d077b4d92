"""Benchmark 3: road delineation on Massachusetts Roads with an iterative U-net and perceptual loss.

A U-net on [RGB, previous prediction] is applied K times (Mosinska et al.). It is trained on random
crops with BCE + lambda * perceptual loss per iteration (the loss network's distance between the
features of the predicted and true masks, Eq. 5 of Pihlgren et al.), with iteration k of K weighted
k / (K (K + 1) / 2) as in Mosinska et al. and the authors' code. After every epoch the BCE of the
final iteration on the validation tiles (resized to 224) is computed, and the epoch with the lowest
value is kept (the authors' rule; ``--selection last`` keeps the last epoch instead). Test tiles
are scored with Wiedemann et al.'s completeness / correctness / quality under one or both protocols
(:mod:`lossnet.bench.roads.evaluate`):

* ``reference`` (metrics ``mrd/...``; use these for comparisons with the paper): tiles resized to
  224 (bilinear), mask > 0.5, pixel-exact ratios per tile averaged over tiles. The authors' bug of
  scoring each tile's iterations several times is not reproduced.
* ``full`` (metrics ``mrd.full/...``): whole tiles at native resolution, counts summed over tiles,
  pixel-exact (rho = 0) and with a 3 px tolerance (``_rho3``).

Models (``--model``): ``reference``, the authors' pix2pix-style U-net (64,546 parameters; ReLU
in the down path as their code builds it, see :mod:`lossnet.bench.roads.unet`); ``ronneberger``,
Ronneberger et al.'s U-net (``--width``/``--depth``; 31.0 M parameters at 64/4).

Presets:
  paper   as the authors' experiments ran: the reference U-net, Adam 1e-3, batch 8, 100 epochs of one
          224 px crop of every training tile (shuffled, horizontal flips), lambda 0.01, ImageNet
          normalisation, the loss network in train mode, no transform_input; K = 1 in training and
          validation (their main.py; the paper's text says 3: ``--train-iterations 3``) and K = 3
          at test; checkpoint with the lowest validation BCE on ``valid``; at test every BatchNorm
          uses the tile's own statistics (``--test-bn batch``: their test script never calls
          .eval()); threshold 0.3; ``reference`` protocol on ``test`` (the paper's text) and, as
          ``mrd.val/...``, on the validation split (what their test script scores); deterministic.
          Refuses validation tiles held out of training (``holdout:N``) without --allow-stand-in.
  quick   CPU minutes: the same, except the Ronneberger U-net at width 8 / depth 3 (121 k
          parameters; in 20 quick epochs on ../shared it learned more than the reference net), 64 px
          crops, 20 epochs x 24 steps of 8 crops (several shuffled passes over the tiles), validation
          on ``valid`` when the data has it, else on 4 training tiles held out (``auto``: ../shared
          has no ``valid`` split, so ``holdout:4``), output bias initialised to a 5 % road prior,
          the threshold chosen on the training split (``train``, below), both protocols, and the
          trivial baselines (all background, intensity thresholds fitted on 4 training tiles,
          Canny edges). On one busy CPU core it takes about 3.5 min with
          --loss bce (about 1.5 min with --model reference); the perceptual loss adds the loss
          network's passes.

  --threshold T overrides the preset's; --threshold train chooses it after training, on the
  training split only (per protocol: up to 8 evenly spaced training tiles scored as that protocol
  scores test tiles, ``full`` by quality at rho = 3; the value of 0.05, 0.10, ..., 0.95 with the
  best quality, reported as ``<prefix>/threshold``, the curve in ``threshold_fit_<protocol>.csv``).
  The test split is never used for any choice.

Examples:
  lossnet bench roads --data ../shared/data/roads --net vgg16 --layer relu2_2 --weights-dir ../shared/weights
  lossnet bench roads --data mass_roads --loss bce --preset paper
  lossnet bench roads --data mass_roads --net all --layer E,S,M,L --preset paper   (56 runs)

Data layouts: ``DIR/{train,valid,test}/{sat,map}`` (original, and ../shared),
``DIR/{train,val,test}/{input,output}`` (the authors' code) or ``DIR/tiff/{train,train_labels,...}``;
pairs by file stem; masks > 127 are road. ``--val-split holdout:N`` validates on N evenly spaced
training tiles held out of training; ``auto`` (quick) resolves to ``valid`` when the data folder
has that split and to ``holdout:4`` otherwise, when the config is resolved.

Metrics (percent): per protocol ``<prefix>/correctness``, ``/completeness``, ``/quality`` (``full``
also ``_rho3``), ``<prefix>/threshold`` and ``<prefix>/test_tiles``, with prefix ``mrd``
(reference) or ``mrd.full`` (full); with baselines also ``<prefix>.<baseline>/<metric>`` for
baseline in background, intensity, edges. ``mrd/selected_epoch`` (the epoch evaluated) and, with
validation, ``mrd/val_bce`` (its validation BCE, lower is better). Beside the reference protocol's
test scores: ``mrd.bn_<other>/...`` (the test split with the other ``--test-bn`` setting) and, with
validation tiles, ``mrd.val/...`` and ``mrd.val.bn_<other>/...`` (the selected epoch on the
validation split), each with ``/tiles``.

Workdir: ``checkpoint.pt`` (atomic, every epoch; a rerun with the same config resumes), ``best.pt``
(the lowest validation BCE so far), ``train_log.csv`` (per epoch: the iteration-weighted BCE,
perceptual and lambda * perceptual terms averaged over the epoch's batches, and the validation
BCE), ``threshold_fit_<protocol>.csv``, ``overlay_<tile>.png`` (image | truth | prediction),
``model.pt`` (the evaluated weights).

References:
  Mnih, "Machine Learning for Aerial Image Labeling", 2013 (the dataset).
  Ronneberger et al., "U-Net", MICCAI 2015. Mosinska et al., "Beyond the Pixel-Wise Loss for
  Topology-Aware Delineation", CVPR 2018. Wiedemann et al., "Empirical evaluation of automatically
  extracted road axes", 1998. Pihlgren et al., "A Systematic Performance Analysis of Deep
  Perceptual Loss Networks", 2024.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossnet.bench.base import (
    Benchmark,
    BenchResult,
    CommonConfig,
    ReducedRun,
    TrainingConfig,
    check_stand_ins,
    data_optional,
    option,
)

__all__ = ["BENCHMARK", "RoadsConfig", "PRESETS", "LOSSES", "resolve_config", "run"]

#: ``--loss`` choices -> config value ("perceptual" means BCE + lambda * perceptual).
LOSSES = {"bce": "bce", "bce+perceptual": "perceptual", "perceptual": "perceptual"}
RHOS = (0, 3)
#: ``threshold`` value meaning "choose it on the training split after training".
FIT_THRESHOLD = "train"
#: Training tiles (evenly spaced) the threshold is chosen on, to bound the time it takes.
THRESHOLD_FIT_TILES = 8
#: Tolerance (pixels) whose quality the fitted threshold maximises under the ``full`` protocol.
THRESHOLD_FIT_RHO = 3
#: ``protocol`` choices (``both`` evaluates ``reference`` and ``full``).
PROTOCOL_CHOICES = ("reference", "full", "both")
#: ``test_bn`` choices: BatchNorm with running statistics (eval mode) or with each test tile's own.
TEST_BN_CHOICES = ("running", "batch")
#: Ronneberger U-net defaults when ``width`` / ``depth`` are not given.
RONNEBERGER_WIDTH, RONNEBERGER_DEPTH = 64, 4


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
        raise ValueError(
            f"unknown loss {value!r}; choose bce, or perceptual (BCE + lambda * perceptual; also spelled bce+perceptual)"
        )
    return LOSSES[str(value)]


#: ``val_split`` value resolved when the config is resolved: the data's ``valid`` split when it has
#: one, else :data:`AUTO_HOLDOUT` training tiles held out.
AUTO_VAL_SPLIT = "auto"
AUTO_HOLDOUT = 4


def _val_split(value: Any) -> str:
    from lossnet.bench.roads.data import parse_holdout

    value = str(value).strip()
    if value.lower() == AUTO_VAL_SPLIT:
        return AUTO_VAL_SPLIT
    n = parse_holdout(value)  # ValueError names a bad holdout:N
    return f"holdout:{n}" if n is not None else value


_NET_HELP = CommonConfig.__dataclass_fields__["net"].metadata["help"]
_LAYER_HELP = CommonConfig.__dataclass_fields__["layer"].metadata["help"]


@dataclass
class RoadsConfig(TrainingConfig):
    net: str | None = option("vgg16", _NET_HELP, kind="str", nullable=True)
    layer: str | None = option("relu2_2", _LAYER_HELP, kind="str", nullable=True)
    distance: str | None = option(
        "mse", "feature distance of the perceptual term (Eq. 5: mse)", kind="str", nullable=True
    )
    data: str | None = option(
        None,
        "Massachusetts Roads folder ({train,valid,test}/{sat,map}, {train,val,test}/{input,output} "
        "or tiff/...); required",
        kind="str",
        nullable=True,
    )
    loss: str = option(
        "perceptual",
        "bce (pixel baseline) or perceptual (BCE + lambda * perceptual; also bce+perceptual)",
        kind="str",
        choices=("bce", "perceptual"),
        normalize=_loss,
        parse=str,
    )
    lam: float = option(0.01, "weight lambda of the perceptual term", kind="float", minimum=0.0, flag="--lambda")
    model: str = option(
        "reference",
        "U-net: reference (the authors' pix2pix-style net, 64.5 k parameters) or ronneberger (--width/--depth)",
        kind="str",
        choices=("reference", "ronneberger"),
    )
    down_activation: str | None = option(
        "relu",
        "reference U-net's down path: relu (what the authors' code builds: its "
        "LeakyReLU condition is inverted) or leaky_relu (LeakyReLU 0.2, what it asks for)",
        kind="str",
        nullable=True,
        choices=("relu", "leaky_relu"),
    )
    width: int | None = option(
        None,
        f"Ronneberger U-net channels of the first level (none: {RONNEBERGER_WIDTH})",
        kind="int",
        nullable=True,
        minimum=1,
    )
    depth: int | None = option(
        None, f"Ronneberger U-net poolings (none: {RONNEBERGER_DEPTH})", kind="int", nullable=True, minimum=1
    )
    train_split: str = option("train", "split to train on", kind="str", cli=False)
    val_split: str | None = option(
        "valid",
        "validation split of the checkpoint choice, holdout:N (N evenly spaced training "
        f"tiles held out of training) or auto (valid when --data has it, else holdout:{AUTO_HOLDOUT})",
        kind="str",
        nullable=True,
        normalize=_val_split,
    )
    selection: str = option(
        "val_bce",
        "weights evaluated: val_bce (the epoch with the lowest validation BCE of the final "
        "iteration, the authors' rule) or last",
        kind="str",
        choices=("val_bce", "last"),
    )
    test_split: str = option("test", "split to evaluate", kind="str")
    sampler: str = option(
        "reference",
        "training crops: reference (every tile once per pass, shuffled, horizontal flips) "
        "or random (tiles with replacement, no-data crops rejected, both flips)",
        kind="str",
        choices=("reference", "random"),
    )
    crop: int = option(224, "training crop size in pixels", kind="int", minimum=1)
    batch_size: int = option(8, "crops per batch", kind="int", minimum=1)
    epochs: int = option(100, "training epochs", kind="int", minimum=1)
    steps_per_epoch: int | None = option(
        None, "batches per epoch (none: one crop per training tile)", kind="int", nullable=True, minimum=1
    )
    lr: float = option(1e-3, "Adam learning rate", kind="float", positive=True)
    iterations: int = option(3, "refinement iterations K at test time", kind="int", minimum=1)
    train_iterations: int | None = option(
        None,
        "refinement iterations K in training and validation (none: --iterations, "
        "as the paper's text; the authors' experiments trained with 1)",
        kind="int",
        nullable=True,
        minimum=1,
    )
    test_bn: str = option(
        "running",
        "U-net BatchNorm at test: running (eval mode, the running statistics) or batch (each "
        "tile's own statistics: the authors' test script never calls .eval() and tests one tile at a time); "
        "the other setting's reference-protocol scores are reported beside as <prefix>.bn_<other>/...",
        kind="str",
        choices=TEST_BN_CHOICES,
    )
    protocol: str = option(
        "reference",
        "test protocol: reference (224 px bilinear resize, mask > 0.5, per-tile ratios "
        "averaged; compare these with the paper), full (native tiles, counts summed, rho 0 and 3) or both",
        kind="str",
        choices=PROTOCOL_CHOICES,
    )
    eval_size: int = option(
        224, "shorter side of the resized tiles of validation and the reference protocol", kind="int", minimum=1
    )
    eval_antialias: bool = option(
        False, "antialias that resize (torchvision >= 0.17's default; the authors' era did not)", kind="bool"
    )
    threshold: Any = option(
        0.5,
        "road probability threshold in (0, 1), or 'train' to choose it on the training split",
        normalize=_parse_threshold,
        parse=_threshold_arg,
    )
    max_nodata: float | None = option(
        0.5,
        "random sampler: largest no-data fraction of a training crop",
        kind="float",
        nullable=True,
        minimum=0.0,
        cli=False,
    )
    init_prior: float | None = option(
        None,
        "output-bias initialisation to a road prior (none: PyTorch default)",
        kind="float",
        nullable=True,
        positive=True,
        cli=False,
    )
    baselines: bool = option(False, "also score trivial baselines (all background, intensity, edges)", kind="bool")
    overlays: int = option(3, "test tiles drawn as overlay PNGs", kind="int", minimum=0, cli=False)


#: The model of the quick preset: of the two, the one that learned more in the quick preset's 20 CPU
#: epochs on ../shared (BCE; full protocol quality at rho 3 of the selected epoch 24.1 vs 21.4).
QUICK_MODEL = "ronneberger"

PRESETS: dict[str, dict[str, Any]] = {
    # as the authors' experiments ran (their main.py trains and validates with K = 1, their test.py tests
    # with K = 3 and never calls .eval()); scored on `test` (the paper's text) and, as mrd.val/..., on
    # the validation split their test script scores
    "paper": {
        "model": "reference",
        "down_activation": "relu",
        "sampler": "reference",
        "crop": 224,
        "batch_size": 8,
        "epochs": 100,
        "steps_per_epoch": None,
        "lr": 1e-3,
        "lam": 0.01,
        "iterations": 3,
        "train_iterations": 1,
        "test_bn": "batch",
        "selection": "val_bce",
        "val_split": "valid",
        "test_split": "test",
        "protocol": "reference",
        "threshold": 0.3,
        "normalize": "imagenet",
        "loss_net_mode": "train",
        "transform_input": False,
        "deterministic": True,
    },
    "quick": {
        "model": QUICK_MODEL,
        "width": 8,
        "depth": 3,
        "sampler": "reference",
        "crop": 64,
        "batch_size": 8,
        "epochs": 20,
        "steps_per_epoch": 24,
        "val_split": AUTO_VAL_SPLIT,
        "threshold": FIT_THRESHOLD,
        "init_prior": 0.05,
        "baselines": True,
        "protocol": "both",
        "normalize": "imagenet",
        "loss_net_mode": "train",
        "transform_input": False,
    },
}


class Roads(Benchmark):
    name = "roads"
    Config = RoadsConfig
    PRESETS = PRESETS
    BASELINE_LOSS = "bce"
    #: evaluation-only keys, and ``epochs`` (the learning rate is constant: more epochs continue).
    #: ``eval_size``/``eval_antialias`` are not among them: validation (the checkpoint choice) uses them.
    RESUMABLE_KEYS = frozenset(
        {"threshold", "baselines", "overlays", "test_split", "epochs", "protocol", "iterations", "test_bn"}
    )

    def validate(self, config: RoadsConfig) -> None:
        from lossnet.errors import LossnetError

        if not config.data:
            from lossnet.datasets import locate, missing_error

            found = locate("mrd")  # the data root of `lossnet data`
            if found is None and not data_optional():
                raise missing_error(
                    "mrd",
                    "roads benchmark (no --data DIR given: Massachusetts Roads, {train,valid,test}/{sat,map} "
                    "or {train,val,test}/{input,output})",
                )
            config.data = str(found) if found is not None else None
        if config.data is not None:
            config.data = str(Path(config.data).expanduser().resolve())
        if config.model == "reference":
            # the authors' net has fixed channels: the Ronneberger keys cannot split identical runs
            config.width = config.depth = None
            config.down_activation = config.down_activation or "relu"
            multiple = 16
        else:
            config.width = config.width or RONNEBERGER_WIDTH
            config.depth = config.depth or RONNEBERGER_DEPTH
            config.down_activation = None
            multiple = 2**config.depth
        if config.crop % multiple:
            raise LossnetError(
                f"roads: crop {config.crop} must be divisible by {multiple} (the {config.model} U-net's down-sampling)"
            )
        if config.train_iterations is None:
            config.train_iterations = config.iterations
        stand_ins = []
        if config.selection == "last":
            config.val_split = None  # no validation: nothing is held out either
        elif config.val_split == AUTO_VAL_SPLIT:
            from lossnet.bench.roads.data import has_split

            config.val_split = "valid" if config.data and has_split(config.data, "valid") else f"holdout:{AUTO_HOLDOUT}"
        elif not config.val_split:
            raise LossnetError("roads: selection val_bce needs --val-split (a split name or holdout:N)")
        # val_split == test_split is allowed: it is the authors' configuration (their test script scores
        # `val`, their checkpoint split); the paper preset reports it anyway as mrd.val/...
        if config.val_split and config.val_split.startswith("holdout:"):
            stand_ins.append(
                f"validation {config.val_split} held out of the training tiles (the paper: the valid split)"
            )
        elif config.val_split and config.data and Path(config.data).is_dir():
            from lossnet.bench.roads.data import has_split

            if not has_split(config.data, config.val_split):
                import warnings

                warnings.warn(
                    f"roads: {config.data} has no {config.val_split!r} split; the run will fail when it looks for "
                    f"the validation tiles (use --val-split holdout:N, or data with that split)",
                    stacklevel=2,
                )
        check_stand_ins(config, stand_ins)
        if config.sampler == "reference":
            config.max_nodata = None  # the authors' sampler keeps every crop
        elif config.max_nodata is None:
            config.max_nodata = 0.5
        elif config.max_nodata > 1.0:
            raise LossnetError(f"roads: max_nodata must be in [0, 1], got {config.max_nodata}")
        if config.init_prior is not None and not config.init_prior < 1.0:
            raise LossnetError(f"roads: init_prior must be in (0, 1) or null, got {config.init_prior}")
        if config.loss == "bce":
            config.lam = 0.0  # a non-perceptual baseline: the weight cannot split identical runs

    def training_setup(self, config: RoadsConfig):
        import tempfile

        import torch

        from lossnet.bench.profile import TrainingSetup
        from lossnet.bench.roads.train import RoadsTask
        from lossnet.devices import resolve_device

        device = resolve_device(config)
        train_tiles, val_tiles, _ = split_tiles(config)
        torch.manual_seed(config.seed)
        task = RoadsTask(config, train_tiles, Path(tempfile.gettempdir()), device, False, val_tiles)
        return TrainingSetup(
            task,
            steps_per_epoch(config, len(train_tiles)),
            int(config.epochs),
            validates=config.selection == "val_bce" and bool(val_tiles),
        )

    def reduced_config(self, config: RoadsConfig) -> ReducedRun | None:
        return ReducedRun(
            dataclasses.replace(config, epochs=1, steps_per_epoch=1),
            steps=1,
            vals=1 if config.selection == "val_bce" else 0,
        )

    def synthetic_data(self, root: Path, values: dict[str, Any]):
        """1500x1500 smooth tiles with a road cross: 8 training tiles, the real valid/test counts;
        the steps per epoch are those of the real training tiles (:meth:`scale_to_real`)."""
        import numpy as np
        from PIL import Image

        from lossnet.bench.synthetic import REAL_SIZES, SyntheticData, smooth_image

        real = REAL_SIZES["mrd"]
        counts = {"train": 8, "valid": real["valid"], "test": real["test"]}
        rng = np.random.default_rng(0)
        for split, n in counts.items():
            for sub in ("sat", "map"):
                (root / "roads" / split / sub).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                sat = root / "roads" / split / "sat" / f"tile{i:03d}.png"
                if sat.exists():
                    continue
                smooth_image(rng, 1500, 1500).save(sat, compress_level=1)
                mask = np.zeros((1500, 1500), np.uint8)
                mask[700:712] = 255
                mask[:, 300:310] = 255
                Image.fromarray(mask).save(root / "roads" / split / "map" / f"tile{i:03d}.png", compress_level=1)
        return SyntheticData(
            {"data": str(root / "roads")},
            {"train_tiles": real["train"]},
            "roads: synthetic 1500x1500 tiles (8 train; real valid/test counts 14/49), steps per epoch of "
            "the real 1108 train tiles",
        )

    def scale_to_real(self, config: RoadsConfig, timing, sizes: dict[str, Any]) -> None:
        if config.steps_per_epoch is None and "train_tiles" in sizes:
            n = sizes["train_tiles"]
            if str(config.val_split or "").startswith("holdout:"):
                n -= int(config.val_split.split(":")[1])
            timing.steps_per_run = steps_per_epoch(config, n) * timing.epochs

    def paper_benchmark(self, config: dict[str, Any]) -> str | None:
        return "segmentation"

    def run(self, config: RoadsConfig | dict[str, Any], workdir: str | Path, *, progress: bool = True) -> BenchResult:
        return _run(self.config_object(config), workdir, progress=progress)


def steps_per_epoch(config: RoadsConfig, train_tiles: int) -> int:
    """Optimiser steps of one epoch with ``train_tiles`` training tiles (after any hold-out)."""
    bs = int(config.batch_size)
    if config.steps_per_epoch is not None:
        return int(config.steps_per_epoch)
    if config.sampler == "reference":
        return -(-train_tiles // bs)  # one crop per tile, the last batch smaller
    return max(1, train_tiles // bs)


def protocols_of(config: RoadsConfig) -> list[str]:
    """The protocols a config evaluates, in order."""
    return ["reference", "full"] if config.protocol == "both" else [config.protocol]


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


def _score(
    protocol: str, config: RoadsConfig, tiles, predict, *, on_tile=None, progress: bool = False
) -> dict[str, float]:
    """``{"<prefix>/<metric>": value}`` of ``predict`` (image -> bool mask) on ``tiles`` under ``protocol``."""
    from lossnet.bench.roads.train import evaluate_tiles, evaluate_tiles_reference

    if protocol == "reference":
        s = evaluate_tiles_reference(
            tiles, predict, config.eval_size, config.eval_antialias, on_tile=on_tile, progress=progress
        )
        return {
            "correctness": s["correctness"],
            "completeness": s["completeness"],
            "quality": s["quality"],
            "test_tiles": s["tiles"],
        }
    counts = evaluate_tiles(tiles, predict, RHOS, on_tile=on_tile, progress=progress)
    return {**{k.split("/", 1)[1]: v for k, v in _prefixed(counts, "x").items()}, "test_tiles": float(counts[0].tiles)}


def run_baselines(
    config: RoadsConfig, train_tiles, test_tiles, progress: bool = False, protocols: list[str] | None = None
) -> dict[str, float]:
    """Scores of the trivial baselines on the test tiles under each protocol (intensity thresholds
    fitted on <= 4 training tiles, scored as that protocol scores)."""
    from lossnet.bench.roads import baselines as B
    from lossnet.bench.roads.data import load_tile
    from lossnet.bench.roads.evaluate import METRIC_PREFIX
    from lossnet.bench.roads.train import reference_view_fn

    raw = [load_tile(t) for t in train_tiles[:: max(1, len(train_tiles) // 4)][:4]]
    metrics: dict[str, float] = {}
    for protocol in protocols or protocols_of(config):
        if protocol == "reference":
            view = reference_view_fn(config.eval_size, config.eval_antialias)
            params = B.fit_intensity_baseline([view(im, m) for im, m in raw], macro=True)
        else:
            params = B.fit_intensity_baseline(raw, rho=THRESHOLD_FIT_RHO)
        for name, fn in (
            ("background", B.all_background),
            ("intensity", lambda im: B.intensity_baseline(im, **params)),
            ("edges", B.edge_baseline),
        ):
            scores = _score(protocol, config, test_tiles, fn, progress=progress)
            metrics.update({f"{METRIC_PREFIX[protocol]}.{name}/{k}": v for k, v in scores.items() if k != "test_tiles"})
    return metrics


def split_tiles(config: RoadsConfig) -> tuple[list, list, list]:
    """``(training, validation, test)`` tiles of a config (validation empty with ``selection = last``).

    Raises:
        DataError: a split is missing, or holding out leaves no training tile.
    """
    from lossnet.bench.roads.data import find_tiles, parse_holdout, split_holdout

    train_tiles = find_tiles(config.data, config.train_split)
    val_tiles: list = []
    if config.selection == "val_bce":
        n = parse_holdout(config.val_split)
        if n is not None:
            train_tiles, val_tiles = split_holdout(train_tiles, n)
        else:
            val_tiles = find_tiles(config.data, config.val_split)
    return train_tiles, val_tiles, find_tiles(config.data, config.test_split)


def _reference_extras(
    config: RoadsConfig, test_tiles, val_tiles, proba, threshold: float, test_bn: str, other_bn: str
) -> dict[str, float]:
    """Reference-protocol scores beside the main ones, so that both the paper text's and the authors'
    code's numbers exist: the test split with the other ``test_bn`` setting (``mrd.bn_<other>/...``),
    and the validation split -- which the authors' test script scores -- with both settings
    (``mrd.val/...``, ``mrd.val.bn_<other>/...``), all at the reference protocol's threshold."""
    out: dict[str, float] = {}
    runs = [(f"mrd.bn_{other_bn}", test_tiles, other_bn)]
    if val_tiles:
        runs += [("mrd.val", val_tiles, test_bn), (f"mrd.val.bn_{other_bn}", val_tiles, other_bn)]
    for prefix, tiles, bn in runs:
        scores = _score("reference", config, tiles, lambda im, b=bn: proba(im, b) > threshold)
        out.update({f"{prefix}/{name}": v for name, v in scores.items() if name != "test_tiles"})
        out[f"{prefix}/tiles"] = scores["test_tiles"]
    return out


def _run(config: RoadsConfig, workdir: str | Path, *, progress: bool = True) -> BenchResult:
    """Train the iterative U-net, keep the chosen epoch, evaluate the test tiles, write overlays."""
    import torch

    from lossnet.atomic import atomic_path, atomic_write_text
    from lossnet.bench.roads.evaluate import METRIC_PREFIX
    from lossnet.bench.roads.train import fit_threshold, predict_tile, save_overlay, train
    from lossnet.devices import resolve_device

    workdir = Path(workdir)
    device = resolve_device(config)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    train_tiles, val_tiles, test_tiles = split_tiles(config)
    model, outcome = train(config, train_tiles, workdir, device=device, progress=progress, val_tiles=val_tiles)
    artifacts = {"train_log": str(workdir / "train_log.csv"), "history": str(workdir / "history.json")}
    if outcome.checkpoint_path is not None:
        artifacts["checkpoint"] = str(outcome.checkpoint_path)
    if outcome.best_path is not None:
        artifacts["best"] = str(outcome.best_path)
    details = [
        {
            "epoch": r["epoch"],
            "bce": round(r["bce"], 4),
            "perceptual": round(r["perceptual"], 4),
            "lambda*perceptual": round(r["weighted_perceptual"], 4),
            **({"val_bce": round(-r["neg_val_bce"], 4)} if "neg_val_bce" in r else {}),
            "s": r["seconds"],
        }
        for r in outcome.history
    ]
    if not outcome.has_weights:
        return BenchResult(config, {}, artifacts, outcome.status, details, signature=outcome.signature)
    with atomic_path(workdir / "model.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    artifacts["model"] = str(workdir / "model.pt")

    protocols = protocols_of(config)
    overlay_protocol = "full" if "full" in protocols else protocols[0]
    overlay_names = {t.name for t in test_tiles[: int(config.overlays)]}

    def on_tile(tile, image, mask, pred):
        if tile.name in overlay_names:
            path = workdir / f"overlay_{tile.name}.png"
            save_overlay(path, image, mask, pred)
            artifacts[f"overlay_{tile.name}"] = str(path)

    k = int(config.iterations)
    test_bn = config.test_bn or "running"
    other_bn = next(b for b in TEST_BN_CHOICES if b != test_bn)

    def proba(im, bn=test_bn):
        return predict_tile(model, im, device, k, test_bn=bn)

    metrics: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    for protocol in protocols:
        prefix = METRIC_PREFIX[protocol]
        threshold = config.threshold
        if threshold == FIT_THRESHOLD:
            # chosen on training tiles only, never on the split being evaluated
            threshold, curve = fit_threshold(
                threshold_fit_tiles(train_tiles),
                proba,
                rho=THRESHOLD_FIT_RHO,
                protocol=protocol,
                size=config.eval_size,
                antialias=config.eval_antialias,
                progress=progress,
            )
            column = f"quality_rho{THRESHOLD_FIT_RHO}_train" if protocol == "full" else "quality_train"
            lines = [f"threshold,{column}"] + [f"{t:g},{q:.4f}" for t, q in curve.items()]
            atomic_write_text(workdir / f"threshold_fit_{protocol}.csv", "\n".join(lines) + "\n")
            artifacts[f"threshold_fit_{protocol}"] = str(workdir / f"threshold_fit_{protocol}.csv")
        scores = _score(
            protocol,
            config,
            test_tiles,
            lambda im, t=threshold: proba(im) > t,
            on_tile=on_tile if protocol == overlay_protocol else None,
            progress=progress,
        )
        metrics.update({f"{prefix}/{name}": v for name, v in scores.items()})
        metrics[f"{prefix}/threshold"] = float(threshold)
        thresholds[protocol] = float(threshold)
    if "reference" in thresholds:
        metrics.update(
            _reference_extras(config, test_tiles, val_tiles, proba, thresholds["reference"], test_bn, other_bn)
        )
    if outcome.best_epoch is not None:
        metrics["mrd/selected_epoch"] = float(outcome.best_epoch)
    if config.selection == "val_bce" and outcome.best_path is not None:
        metrics["mrd/val_bce"] = float(-outcome.best_score)
    if config.baselines:
        metrics.update(run_baselines(config, train_tiles, test_tiles, progress=progress, protocols=protocols))
    return BenchResult(config, metrics, artifacts, outcome.status, details, signature=outcome.signature)


BENCHMARK = Roads()
resolve_config = BENCHMARK.resolve_config
run = BENCHMARK.run
