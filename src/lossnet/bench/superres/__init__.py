"""Benchmark 2: single-image super-resolution (x4, x8) trained with a deep perceptual loss.

An image transformation network (Johnson et al. 2016; :class:`~lossnet.bench.superres.model.TransformNet`)
learns to upscale LR images made by Gaussian blur (sigma 1) + bicubic downsampling of HR crops. It is
trained with the perceptual loss of Eq. 3 of Pihlgren et al. -- MSE between the loss network's
features of the output and of the HR image at one extraction layer -- or, as the baseline, with
pixel MSE (``--loss pixel``). The weights with the best validation PSNR are evaluated on Set5,
Set14 and BSD100 (``--protocol full``: PSNR and SSIM on the BT.601 Y channel, ``scale`` border
pixels cropped; ``reference``: the reference code's test), next to bicubic upsampling.

Presets:
  paper   as the reference code trains and tests: 10,000 training images (a seeded choice from the
          --train folders; MS-COCO train2014 in the paper, `lossnet data fetch coco2014 --subset
          10000 --seed 42` -- seed 42 as the reference, but not its subset: it split os.listdir
          order with scikit-learn), 100 validation images from --val (val2014), the reference data
          pipeline (shorter side to 288 + centre crop; LR by PIL blur radius 1 + antialiased bicubic),
          batch 4, Adam lr 1e-3 constant, Johnson's network with 4 residual blocks and a BatchNorm
          before the output tanh, 80 epochs x 2,500 iterations = 200,000 steps, seed 42, raw [0, 1]
          into the loss network, no transform_input, checkpoint on the reference's validation PSNR
          (--val-metric reference), deterministic, test on Set5, Set14, BSD100 (the BSDS300 test
          images) under --protocol reference (all four of its printed numbers). Refuses stand-in data
          (the ../shared test crops, validation held out of --train) without --allow-stand-in.
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

Without --train/--test, the quick preset uses the ../shared folder of this project when present
($LOSSNET_SHARED, ./../shared), else the data root of `lossnet data`; the paper preset reads the data
root (COCO train2014 and val2014, set5, set14, bsds300). Explicit flags always win.

Metrics: ``<set>/psnr``, ``<set>/ssim`` (model), ``<set>/psnr_bicubic``, ``<set>/ssim_bicubic``,
``val/psnr`` (best validation PSNR of --val-metric). Under ``--protocol reference``: ``psnr`` is the
reference's "PSNR_2" (skimage, 2 px shave), ``ssim`` its skimage 7x7 SSIM, and also
``<set>/psnr_torchmetrics`` ("Test PSNR": torchmetrics on unshaved Y, range inferred) and
``<set>/ssim_torchmetrics`` ("Tensor MSSIM"); the paper does not say which fed its tables. Artifacts: ``best_checkpoint``, ``checkpoint``,
``grid_<set>`` (PNG: bicubic | model | HR). Status ``diverged`` when the training loss became
non-finite (metrics then come from the best checkpoint so far, if any).

References:
  Johnson, Alahi, Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution", ECCV 2016.
  Pihlgren et al., "A Systematic Performance Analysis of Deep Perceptual Loss Networks", 2024.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
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
from lossnet.errors import DataError, LossnetError

__all__ = ["BENCHMARK", "SuperresConfig", "PRESETS", "resolve_config", "run", "shared_data_dir"]

LOSSES = ("perceptual", "pixel")
LR_SCHEDULES = ("constant", "cosine")
PIPELINES = ("crops", "reference")
PROTOCOLS = ("full", "reference")
VAL_METRICS = ("lossnet", "reference")
SKIPS = ("none", "bicubic")  # TransformNet's skip modes (kept here so the CLI needs no torch)


def _tests(value: Any) -> dict:
    """``{name: folder}`` from a table, or from the CLI's ``NAME=DIR`` items (names lower-cased)."""
    if isinstance(value, list):
        value = dict(map(_split_test, value))
    if not isinstance(value, dict):
        raise ValueError(f"expected a table NAME = DIR, got {value!r}")
    return {str(k).strip().lower(): str(v).strip() for k, v in value.items()}


def _split_test(item: str) -> tuple[str, str]:
    name, sep, folder = str(item).partition("=")
    if not sep or not name.strip() or not folder.strip():
        raise ValueError(f"--test expects NAME=DIR, got {item!r}")
    return name, folder


def _parse_test(item: str) -> str:
    try:
        _split_test(item)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return item


@dataclass
class SuperresConfig(TrainingConfig):
    net: str | None = option(
        "vgg16", CommonConfig.__dataclass_fields__["net"].metadata["help"], kind="str", nullable=True
    )
    layer: str | None = option(
        "relu2_2", CommonConfig.__dataclass_fields__["layer"].metadata["help"], kind="str", nullable=True
    )
    distance: str | None = option(
        "mse", "feature distance of the perceptual loss (Eq. 3: mse)", kind="str", nullable=True
    )
    scale: int = option(4, "upscaling factor", kind="int", choices=(4, 8))
    loss: str | None = option(
        "perceptual",
        "perceptual, or pixel (MSE baseline; --net/--layer ignored)",
        kind="str",
        choices=LOSSES,
        nullable=True,
    )
    train: list | None = option(
        None,
        "training image folder (repeatable; default: ../shared t91 + bsd200, or for the paper "
        "preset COCO train2014 from `lossnet data`)",
        kind="list",
        nullable=True,
        append=True,
        metavar="DIR",
        normalize=lambda v: [v] if isinstance(v, str) else v,
    )
    val: str | None = option(
        None, "validation image folder (default: hold images out of --train)", kind="str", nullable=True, metavar="DIR"
    )
    test: dict | None = option(
        None,
        "test set NAME=DIR (repeatable; default: ../shared sets of test_sets)",
        kind="dict",
        nullable=True,
        append=True,
        parse=_parse_test,
        normalize=_tests,
        metavar="NAME=DIR",
    )
    test_sets: list = option(
        ["set5", "set14", "bsd100"], "../shared test sets used without --test", kind="list", cli=False
    )
    epochs: int = option(10, "epochs (validation + checkpoint after each)", kind="int", minimum=1)
    iters_per_epoch: int = option(2500, "optimiser steps per epoch", kind="int", minimum=1)
    batch_size: int = option(4, "HR crops per batch", kind="int", minimum=1)
    crop: int = option(288, "HR training crop size (multiple of --scale)", kind="int", minimum=1)
    lr: float = option(1e-3, "Adam learning rate", kind="float", positive=True)
    lr_schedule: str = option(
        "constant", "constant (paper) or cosine decay to 0 over the run", kind="str", choices=LR_SCHEDULES
    )
    num_blocks: int = option(4, "residual blocks of the transformation network", kind="int", minimum=1)
    channels: int = option(64, "channels of the transformation network", kind="int", minimum=1, cli=False)
    skip: str = option(
        "none",
        "none: Johnson et al.'s network; bicubic: learn a residual over bicubic upsampling",
        kind="str",
        choices=SKIPS,
    )
    train_images: int | None = option(
        None, "seeded random subset of this many training images (default all)", kind="int", nullable=True, minimum=1
    )
    val_images: int = option(100, "validation images (chosen/held out with the seed)", kind="int", minimum=1)
    val_crop: int = option(288, "centre crop of validation images", kind="int", minimum=1)
    grid_images: int = option(3, "images per PNG grid of a test set", kind="int", minimum=0, cli=False)
    output_bn: bool = option(False, "BatchNorm before the output tanh (the reference network has one)", kind="bool")
    pipeline: str = option(
        "crops",
        "training data: crops = random native-resolution crops + torch blur/bicubic; reference = "
        "resize to 288 + centre crop, LR by PIL blur radius 1 + antialiased bicubic (decoded lazily)",
        kind="str",
        choices=PIPELINES,
    )
    protocol: str = option(
        "full",
        "test protocol: full = whole images, BT.601 Y, scale-px border, Gaussian SSIM; reference = "
        "the reference code's 288 centre crop, its degradation, Y' of 8-bit RGB, 2-px shave, skimage "
        "PSNR/SSIM",
        kind="str",
        choices=PROTOCOLS,
    )
    val_metric: str = option(
        "lossnet",
        "checkpoint-selection PSNR: lossnet = per-image BT.601 Y-PSNR, scale-px border, 8-bit "
        "output, peak 255; reference = the reference's torchmetrics PSNR per batch on unquantised, unshaved "
        "Y, range inferred",
        kind="str",
        choices=VAL_METRICS,
    )
    baseline: str | None = option(
        None,
        "bicubic: evaluate bicubic upsampling alone, without training",
        kind="str",
        nullable=True,
        choices=("bicubic",),
    )


PRESETS: dict[str, dict[str, Any]] = {
    # as the reference code trains it: 80 x 2,500 = 200,000 steps, seed 42, the reference data
    # pipeline and test protocol, BN before the output tanh, raw [0, 1] into the loss network,
    # googlenet/inception_v3 without transform_input
    "paper": {
        "train_images": 10000,
        "epochs": 80,
        "seed": 42,
        "pipeline": "reference",
        "protocol": "reference",
        "output_bn": True,
        "normalize": "none",
        "transform_input": False,
        "val_metric": "reference",
        "deterministic": True,
    },
    "quick": {
        "skip": "bicubic",
        "lr": 5e-4,
        "lr_schedule": "cosine",
        "crop": 48,
        "epochs": 3,
        "iters_per_epoch": 300,
        "val_images": 8,
        "val_crop": 96,
        "test_sets": ["set5", "set14"],
    },
}


def shared_data_dir() -> Path | None:
    """``<shared>/data/sr`` of this project's ../shared folder (the real path), or None when absent.

    Resolved: the folder goes into the run key, and ``cwd/../shared`` reached through a symlink or
    from another directory must give the key of the runs already done on the same data."""
    candidates = [
        os.environ.get("LOSSNET_SHARED"),
        Path.cwd().parent / "shared",
        Path(__file__).resolve().parents[5] / "shared",
    ]
    for c in candidates:
        if c and (Path(c) / "data" / "sr").is_dir():
            return (Path(c) / "data" / "sr").resolve()
    return None


def _default_train(config: SuperresConfig) -> list[str]:
    """Training folders when no --train is given: COCO train2014 from the data root for the paper
    preset (``lossnet data fetch coco2014 --subset 10000 --seed 42``); otherwise this project's
    ../shared T91 + BSD200 when present, else the data root's COCO."""
    from lossnet.datasets import locate, missing_error

    shared = shared_data_dir()
    if config.preset != "paper" and shared is not None:
        return [str(shared / "t91"), str(shared / "bsd200")]
    found = locate("coco2014", "train")
    if found is None:
        raise missing_error(
            "coco2014",
            "superres training set (no --train given)",
            "train",
            extra=f"--subset {config.train_images or 10000} --seed {config.seed}",
        )
    if config.val is None and config.preset == "paper":
        val = locate("coco2014", "val")
        if val is not None:
            config.val = str(val)
    return [str(found)]


#: test set name -> (dataset, part) in the data root; BSD100 is the BSDS300 test split.
_TEST_SETS = {"set5": ("set5", None), "set14": ("set14", None), "bsd100": ("bsds300", "test")}


def _default_test(name: str, preset: str = "quick") -> Path:
    """A test set's folder when no --test is given: ../shared when present, else the data root; for
    the paper preset the data root first (its BSD100 is the BSDS300 test images the authors used; the
    ../shared BSD100 are SelfExSR crops, a stand-in the paper preset refuses)."""
    from lossnet.datasets import locate, missing_error

    shared = shared_data_dir()
    dataset, part = _TEST_SETS.get(name, (name, None))
    found = locate(dataset, part) if preset == "paper" else None
    if found is not None:
        return found
    if shared is not None and (shared / name).is_dir():
        return shared / name
    found = locate(dataset, part)
    if found is None:
        raise missing_error(dataset, f"superres test set {name} (no --test given)", part)
    return found


def _optional(find, missing):
    """``find()``, or ``missing`` when its dataset is missing and configs resolve without data."""
    try:
        return find()
    except DataError:
        if data_optional():
            return missing
        raise


def _stand_ins(config: SuperresConfig) -> list[str]:
    """What a superres config uses in place of the paper's data: test or training folders of this
    project's ../shared (its BSD100 are SelfExSR crops, not the BSDS300 originals), and validation
    images held out of the training images instead of val2014."""
    out = []
    shared = shared_data_dir()
    if shared is not None:
        crops = [name for name, folder in config.test.items() if Path(folder).resolve().is_relative_to(shared)]
        if crops:
            out.append(
                f"test sets {', '.join(crops)} from {shared} (the paper: Set5, Set14 and the BSDS300 test images; "
                f"lossnet data fetch set5 set14 bsds300)"
            )
        if any(Path(t).resolve().is_relative_to(shared) for t in config.train):
            out.append(f"training images from {shared} (the paper: 10,000 COCO train2014 images)")
    if config.baseline is None and config.train and not config.val:
        out.append("validation images held out of the training images (the paper: val2014, --val DIR)")
    return out


class Superres(Benchmark):
    name = "superres"
    Config = SuperresConfig
    PRESETS = PRESETS
    BASELINE_LOSS = "pixel"

    def uses_loss_network(self, config: SuperresConfig) -> bool:
        return config.baseline is None and super().uses_loss_network(config)

    def resumable_keys(self, config: SuperresConfig) -> frozenset:
        """Evaluation-only keys; ``epochs`` may grow on resume with a constant learning rate, not
        with the cosine schedule, whose curve depends on the total number of steps."""
        keys = {"test", "grid_images", "test_sets", "protocol"}
        return frozenset(keys | ({"epochs"} if config.lr_schedule == "constant" else set()))

    def validate(self, config: SuperresConfig) -> None:
        if config.baseline is not None:
            # nothing is trained: training keys cannot split identical runs
            config.loss, config.train, config.val, config.train_images = None, [], None, None
        if config.crop % config.scale:
            raise LossnetError(f"superres: crop {config.crop} must be a multiple of scale {config.scale}")
        if not config.train and config.baseline is None:
            config.train = _optional(lambda: _default_train(config), [])
        config.train = [str(t) for t in config.train]
        test = config.test
        if not test:
            test = {
                name: _optional(lambda n=name: str(_default_test(n, config.preset)), None) for name in config.test_sets
            }
            test = {k: v for k, v in test.items() if v is not None}
        config.test = {str(k): str(v) for k, v in test.items()}
        for folder in [*config.train, *config.test.values(), *([config.val] if config.val else [])]:
            if not Path(folder).is_dir():
                raise DataError(f"superres: folder not found: {folder}")
        config.test_sets = sorted(config.test)
        check_stand_ins(config, _stand_ins(config))

    def training_setup(self, config: SuperresConfig):
        if config.baseline is not None:
            return None  # nothing is trained: one run is timed whole
        from .train import training_setup

        return training_setup(config)

    def reduced_config(self, config: SuperresConfig) -> ReducedRun | None:
        if config.baseline is not None:
            return None
        return ReducedRun(dataclasses.replace(config, epochs=1, iters_per_epoch=1), steps=1, vals=1)

    def synthetic_data(self, root: Path, values: dict[str, Any]):
        """Smooth random images larger than the crops: ``val_images`` + 16 training images and test
        sets of the real sets' image counts."""
        from lossnet.bench.synthetic import REAL_SIZES, SyntheticData, write_images

        root.mkdir(parents=True, exist_ok=True)
        size = max(320, int(values.get("crop", 288)) + 32, int(values.get("val_crop", 288)) + 32)
        n_val = int(values.get("val_images", 100))
        train = write_images(root / "sr_train", n_val + 16, size, 0)
        tests = {
            name: write_images(root / f"sr_{name}", REAL_SIZES["superres_tests"].get(name, 5), size, 1)
            for name in values.get("test_sets", ["set5"])
        }
        return SyntheticData(
            {"train": [train], "test": tests},
            {},
            f"superres: synthetic {size}x{size} images ({n_val + 16} train, real test-set counts)",
        )

    def paper_benchmark(self, config: dict[str, Any]) -> str | None:
        """The paper's tables have x4 and x8 super-resolution."""
        try:
            scale = int(config.get("scale"))
        except (TypeError, ValueError):
            return None
        return f"superres_x{scale}" if scale in (4, 8) else None

    def run(
        self, config: SuperresConfig | dict[str, Any], workdir: str | Path, *, progress: bool = True
    ) -> BenchResult:
        """Train (resuming from ``workdir``), then evaluate the best weights on every test set."""
        config = self.config_object(config)
        from .evaluate import check_test_set
        from .train import evaluate, train

        workdir = Path(workdir)
        if config.baseline == "bicubic":
            return evaluate(config, workdir, None, None, progress=progress)
        for name, folder in config.test.items():  # test images are read at the end: check them first
            check_test_set(folder, name, config.scale)
        task, outcome = train(config, workdir, progress=progress, log=print if progress else None)
        return evaluate(config, workdir, task, outcome, progress=progress)


BENCHMARK = Superres()
resolve_config = BENCHMARK.resolve_config
run = BENCHMARK.run
