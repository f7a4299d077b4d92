"""Benchmark 4: autoencoder embeddings trained with a deep perceptual loss, judged by downstream MLPs.

A four-layer convolutional autoencoder with a 64-d embedding is trained on unlabelled images with
the perceptual loss of Eq. 6 of Pihlgren et al. -- MSE between the loss network's features of the
input and of the reconstruction at one extraction layer -- or, as the baseline, with pixel MSE
(``--loss pixel``). The encoder is then frozen; the labelled train set's embeddings are split 80/20
(seeded) and seven MLPs (hidden [], [32], [64], [32,32], [64,32], [64,64], [128,128]) are trained
with early stopping. The MLP with the best validation accuracy is evaluated on the test set:
``<dataset>/accuracy`` in [0, 1].

Models (--model; lossnet.bench.autoencoder.model):
  reference  the paper code's FourLayerCVAE: unpadded 4x4 stride-2 convs + BatchNorm + ReLU
             (32/64/128/256), linear to the code; linear to 1024 x g x g, transposed convs with
             kernels 5, 5, 6, 6 (BatchNorm + ReLU, sigmoid output). Sizes 64 + 16 n; 4.38 M
             parameters at 64 px, 5.11 M at 96 px.
  compact    lossnet's earlier model: padded 4x4 kernels both ways, no BatchNorm; 1.91 M at 64 px.

Classifier protocols (--mlp-protocol; lossnet.bench.autoencoder.mlp):
  reference  MSE against one-hot labels, LeakyReLU(0.01), raw embeddings, early stopping on
             validation loss with patience max(10, mlp_epochs/20), the best-validation-loss weights.
  ce         cross-entropy, ReLU, z-scored embeddings, early stopping on validation accuracy
             (patience 10), the best-accuracy weights.

Held-out AE validation (--ae-val-fraction): a seeded fraction of the AE images is not trained on;
their loss after every epoch (everything in eval mode) picks the epoch whose weights are embedded.

Datasets (--dataset, files in --data DIR in their distributed formats):
  svhn    train_32x32.mat, test_32x32.mat, extra_32x32.mat; AE trained on extra; 32x32
          reflect-padded to 64x64 as in the paper; label 10 = digit 0.
  stl10   unlabeled_X.bin, train_X.bin/train_y.bin, test_X.bin/test_y.bin; AE trained on
          unlabeled; 96x96 used natively (--image-size 96, the default for stl10); --image-size 64
          resizes instead.
  digits  scikit-learn's load_digits (8x8 -> bilinear 32x32 -> reflect-padded 64x64, grey -> RGB),
          seeded stratified 75/25 train/test split; AE trained on the train part. A real labelled
          stand-in reachable without downloads (no --data needed).

Deterministic AE by default (--variational for the VAE's reparameterisation + KL; the paper runs
gamma = 0, i.e. deterministic): the perceptual loss's magnitude differs by orders of magnitude
across the 14 networks x 4 layers, so one KL weight would give every loss network a different
effective beta. The downstream embedding is the code (mu) either way.

Presets:
  paper   as the authors' code runs it (docs/fidelity.md): the reference model; AE 10 epochs (the
          paper's; the code's default is 50), batch 256, Adam 1e-3, 20 % of the AE images held out
          to pick the best epoch by validation loss; loss network fed raw [0, 1] (normalize none),
          in train mode, googlenet/inception_v3 without transform_input; the reference classifier
          protocol with up to 100 epochs (the paper's; the code's default is 500), batch 256; all
          images; deterministic. Needs --dataset svhn or stl10: digits is a stand-in, refused
          without --allow-stand-in (which marks the run not paper-comparable).
  quick   CPU minutes on digits, lossnet's earlier setup: the compact model trained on every AE
          image (5 epochs, batch 32, ImageNet-normalised eval-mode loss network), the ce protocol
          (up to 60 epochs, patience 8, batch 64); at most 3000 AE / 2000 labelled / 1000 test
          images.

Examples:
  lossnet bench autoencoder --dataset digits --net alexnet --layer relu2 --weights-dir ../shared/weights
  lossnet bench autoencoder --dataset digits --loss pixel --preset paper --allow-stand-in   (not paper-comparable)
  lossnet bench autoencoder --dataset svhn --data ~/svhn --net vgg16 --layer E,S,M,L --preset paper   (4 runs)

Metrics: ``<dataset>/accuracy`` (test accuracy of the selected MLP, in [0, 1]),
``<dataset>/val_accuracy`` (its validation accuracy), ``<dataset>/ae_loss`` (last AE epoch's
training loss); with held-out AE images also ``<dataset>/ae_val_loss`` (the chosen epoch's
validation loss) and ``<dataset>/ae_best_epoch``. Details: the per-MLP table (hidden,
val_accuracy, val_loss, best_epoch, epochs, selected), also in ``history.json`` and ``mlps.json``.
Artifacts: ``checkpoint`` (resumable AE checkpoint), ``best`` (the chosen epoch's weights),
``reconstructions`` (PNG: inputs over reconstructions), ``history``, ``mlps``.

References:
  Pihlgren, Sandin, Liwicki, "Pretraining Image Encoders without Reconstruction via Feature
  Prediction Loss", ICPR 2020.
  Pihlgren et al., "A Systematic Performance Analysis of Deep Perceptual Loss Networks", 2024.
  Ha, Schmidhuber, "World Models", 2018.
"""

from __future__ import annotations

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
from lossnet.errors import DataError, LossnetError

__all__ = ["BENCHMARK", "AutoencoderConfig", "PRESETS", "resolve_config", "run"]

LOSSES = ("perceptual", "pixel")
DATASETS = (
    "svhn",
    "stl10",
    "digits",
)  # lossnet.bench.autoencoder.datasets loads them (kept here: no torch for the CLI)
MODELS = ("compact", "reference")  # lossnet.bench.autoencoder.model.MODELS
MLP_PROTOCOLS = ("reference", "ce")  # lossnet.bench.autoencoder.mlp.PROTOCOLS


@dataclass
class AutoencoderConfig(TrainingConfig):
    net: str | None = option(
        "vgg16", CommonConfig.__dataclass_fields__["net"].metadata["help"], kind="str", nullable=True
    )
    layer: str | None = option(
        "relu2_2", CommonConfig.__dataclass_fields__["layer"].metadata["help"], kind="str", nullable=True
    )
    distance: str | None = option(
        "mse", "feature distance of the perceptual loss (Eq. 6: mse)", kind="str", nullable=True
    )
    dataset: str = option("digits", "svhn, stl10 or digits", kind="str", choices=DATASETS)
    data: str | None = option(
        None, "folder with the dataset files (svhn, stl10)", kind="str", nullable=True, metavar="DIR"
    )
    loss: str = option(
        "perceptual", "perceptual, or pixel (MSE baseline; --net/--layer ignored)", kind="str", choices=LOSSES
    )
    model: str = option(
        "compact",
        "autoencoder: reference (the paper code's FourLayerCVAE: unpadded convs + BatchNorm, "
        "sizes 64+16n) or compact (padded 4x4 kernels, no BatchNorm)",
        kind="str",
        choices=MODELS,
    )
    epochs: int = option(10, "autoencoder epochs", kind="int", minimum=1)
    batch_size: int = option(64, "autoencoder batch size", kind="int", minimum=1)
    lr: float = option(1e-3, "autoencoder Adam learning rate", kind="float", positive=True)
    ae_val_fraction: float = option(
        0.0,
        "fraction of the AE images held out (seeded) to pick the epoch with the lowest "
        "validation loss (0: train on all, use the last epoch)",
        kind="float",
        minimum=0,
    )
    embedding: int = option(64, "embedding size", kind="int", minimum=1)
    image_size: int | None = option(
        None, "autoencoder input size (none: 64; 96 for stl10)", kind="int", nullable=True, minimum=1
    )
    variational: bool = option(False, "VAE (reparameterisation + KL) instead of a deterministic AE", kind="bool")
    kl_weight: float | None = option(1.0, "KL factor with --variational", kind="float", nullable=True, positive=True)
    mlp_protocol: str = option(
        "ce",
        "classifier protocol: reference (MSE to one-hot, LeakyReLU, raw embeddings, stopping "
        "on validation loss) or ce (cross-entropy, ReLU, z-scored, stopping on validation accuracy)",
        kind="str",
        choices=MLP_PROTOCOLS,
    )
    mlp_epochs: int = option(100, "maximum MLP epochs", kind="int", minimum=1)
    mlp_patience: int | None = option(
        None,
        "early-stopping patience in epochs (none: the protocol's, reference max(10, mlp_epochs/20), ce 10)",
        kind="int",
        nullable=True,
        minimum=1,
    )
    mlp_batch_size: int = option(128, "MLP batch size", kind="int", minimum=1)
    mlp_lr: float = option(1e-3, "MLP Adam learning rate", kind="float", positive=True, cli=False)
    val_fraction: float = option(
        0.2, "fraction of the labelled train set used for MLP selection", kind="float", positive=True, cli=False
    )
    ae_images: int | None = option(
        None, "seeded subset of the AE training images (none: all)", kind="int", nullable=True, minimum=1
    )
    train_images: int | None = option(
        None, "seeded subset of the labelled train set (none: all)", kind="int", nullable=True, minimum=1
    )
    test_images: int | None = option(
        None, "seeded subset of the test set (none: all)", kind="int", nullable=True, minimum=1
    )


PRESETS: dict[str, dict[str, Any]] = {
    # as the reference code runs it (docs/fidelity.md), with
    # the paper's epoch counts (AE 10, MLPs 100) where the code's defaults differ (50, 500)
    "paper": {
        "model": "reference",
        "batch_size": 256,
        "ae_val_fraction": 0.2,
        "mlp_protocol": "reference",
        "mlp_batch_size": 256,
        "normalize": "none",
        "loss_net_mode": "train",
        "transform_input": False,
        "deterministic": True,
    },
    "quick": {
        "epochs": 5,
        "batch_size": 32,
        "mlp_epochs": 60,
        "mlp_patience": 8,
        "mlp_batch_size": 64,
        "ae_images": 3000,
        "train_images": 2000,
        "test_images": 1000,
    },
}


class Autoencoder(Benchmark):
    name = "autoencoder"
    Config = AutoencoderConfig
    PRESETS = PRESETS
    BASELINE_LOSS = "pixel"
    #: the downstream-MLP keys: they do not touch the autoencoder
    RESUMABLE_KEYS = frozenset(
        {
            "mlp_protocol",
            "mlp_epochs",
            "mlp_patience",
            "mlp_batch_size",
            "mlp_lr",
            "val_fraction",
            "train_images",
            "test_images",
        }
    )

    def validate(self, config: AutoencoderConfig) -> None:
        if config.image_size is None:
            config.image_size = 96 if config.dataset == "stl10" else 64
        if config.image_size % 16:
            raise LossnetError(f"autoencoder: image_size must be divisible by 16, got {config.image_size}")
        if config.dataset in ("svhn", "digits") and not 32 <= config.image_size < 96:
            # Reflect padding needs pad < 32 per side; smaller sizes would crop the digits.
            raise LossnetError(
                f"autoencoder: {config.dataset} images are 32x32, reflect-padded; image_size must be 32..95 "
                f"(paper: 64), got {config.image_size}"
            )
        if config.model == "reference" and not (config.image_size >= 64 and (config.image_size - 64) % 16 == 0):
            raise LossnetError(
                f"autoencoder: the reference model takes image sizes 64 + 16 n (64, 80, 96, ...), "
                f"got {config.image_size}; use --model compact for other sizes"
            )
        if not config.val_fraction < 1:
            raise LossnetError(f"autoencoder: val_fraction must be in (0, 1), got {config.val_fraction!r}")
        if not config.ae_val_fraction < 1:
            raise LossnetError(f"autoencoder: ae_val_fraction must be in [0, 1), got {config.ae_val_fraction!r}")
        if config.mlp_patience is None:  # the protocol's rule, resolved so the stored config says what ran
            config.mlp_patience = max(10, -(-config.mlp_epochs // 20)) if config.mlp_protocol == "reference" else 10
        if not config.variational:
            config.kl_weight = None  # irrelevant; must not split identical runs
        elif config.kl_weight is None:
            raise LossnetError("autoencoder: --variational needs a kl_weight")
        check_stand_ins(
            config,
            ["dataset digits, scikit-learn's 8x8 digits (the paper: --dataset svhn or stl10)"]
            if config.dataset == "digits"
            else [],
        )
        if config.dataset == "digits":
            config.data = None
        else:
            if not config.data:
                from lossnet.datasets import locate, missing_error

                found = locate(config.dataset)  # the data root of `lossnet data`
                if found is None and data_optional():
                    return  # --print-config without the data: data stays null
                if found is None:
                    raise missing_error(
                        config.dataset, f"autoencoder benchmark (no --data DIR given for {config.dataset})"
                    )
                config.data = str(found)
            if not Path(config.data).is_dir():
                raise DataError(f"autoencoder: data folder not found: {config.data}")
            config.data = str(config.data)

    #: validation batches timed by :meth:`training_setup` (the pass is scaled to the held-out count)
    TIMED_VAL_BATCHES = 8

    def training_setup(self, config: AutoencoderConfig):
        import math

        import torch

        from lossnet.bench.profile import TrainingSetup
        from lossnet.devices import resolve_device

        from .datasets import load_dataset
        from .train import AutoencoderTask, split_ae_images

        device = resolve_device(config)
        data = load_dataset(
            config.dataset, config.data, seed=config.seed, ae_images=config.ae_images, train_images=1, test_images=1
        )
        images = data.unlabeled
        tr, val = split_ae_images(len(images), config)
        train_images, val_images = (images, None) if not len(val) else (images[tr], images[val])
        val_scale, notes = 1.0, []
        cap = self.TIMED_VAL_BATCHES * int(config.batch_size)
        if val_images is not None and len(val_images) > cap:
            val_scale = len(val_images) / cap
            notes.append(f"validation timed on {cap} of {len(val_images)} held-out images, scaled")
            val_images = val_images[:cap]
        torch.manual_seed(config.seed)
        task = AutoencoderTask(config, train_images, val_images, device, False)
        return TrainingSetup(
            task,
            math.ceil(len(train_images) / int(config.batch_size)),
            int(config.epochs),
            validates=val_images is not None,
            val_scale=val_scale,
            notes=notes,
            validate=task.validation_loss if val_images is not None else None,
        )

    def reduced_config(self, config: AutoencoderConfig) -> ReducedRun | None:
        # one step on batch_size images, no held-out validation (its pass is charged per epoch);
        # data loading, embedding and the MLPs as in the full run
        return ReducedRun(
            dataclasses.replace(config, epochs=1, ae_images=int(config.batch_size), ae_val_fraction=0.0),
            steps=1,
            vals=0,
        )

    def synthetic_data(self, root: Path, values: dict[str, Any]):
        """SVHN ``.mat`` or STL-10 ``.bin`` files of random images at 2 % of the real sizes; steps of
        the real autoencoder images, evaluation scaled x50 (:meth:`scale_to_real`)."""
        import numpy as np

        from lossnet.bench.synthetic import REAL_SIZES, SyntheticData

        dataset = values.get("dataset", "digits")
        frac = 0.02
        d = root / dataset
        d.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        if dataset == "svhn":
            import scipy.io

            real = REAL_SIZES["svhn"]
            for part in ("extra", "train", "test"):
                n = max(256, int(real[part] * frac))
                p = d / f"{part}_32x32.mat"
                if not p.exists():
                    scipy.io.savemat(
                        p,
                        {
                            "X": rng.integers(0, 255, (32, 32, 3, n), dtype=np.uint8),
                            "y": rng.integers(1, 11, (n, 1)).astype(np.uint8),
                        },
                    )
            ae_real = real["extra"]
        else:
            real = REAL_SIZES["stl10"]
            for part, bin_name in (("unlabeled", "unlabeled"), ("train", "train"), ("test", "test")):
                n = max(256, int(real[part] * frac))
                p = d / f"{bin_name}_X.bin"
                if not p.exists():
                    rng.integers(0, 255, (n, 3, 96, 96), dtype=np.uint8).tofile(p)
                    if part != "unlabeled":
                        rng.integers(1, 11, n, dtype=np.uint8).tofile(d / f"{bin_name}_y.bin")
            ae_real = real["unlabeled"]
        return SyntheticData(
            {"data": str(d)},
            {"ae_images": ae_real, "eval_scale": 1.0 / frac},
            f"autoencoder: synthetic {dataset} files at {frac:.0%} of the real size; steps of the real "
            f"{ae_real} AE images, evaluation scaled x{1 / frac:g}",
        )

    def scale_to_real(self, config: AutoencoderConfig, timing, sizes: dict[str, Any]) -> None:
        import math

        if "ae_images" in sizes:
            n = min(sizes["ae_images"], config.ae_images or sizes["ae_images"])
            n_train = n - math.floor(float(config.ae_val_fraction or 0) * n)
            timing.steps_per_run = math.ceil(n_train / int(config.batch_size)) * timing.epochs
            if timing.val_s:
                timing.val_s *= sizes.get("eval_scale", 1.0)

    def paper_benchmark(self, config: dict[str, Any]) -> str | None:
        return "autoencoder"

    def run(
        self, config: AutoencoderConfig | dict[str, Any], workdir: str | Path, *, progress: bool = True
    ) -> BenchResult:
        """Load data, train (resuming from ``workdir``) the autoencoder, embed, select and test the MLPs.

        When training diverged, the MLPs are evaluated on the last good epoch's encoder (status stays
        ``diverged``); when it diverged in its first epoch there are no accuracy metrics.
        """
        from lossnet.atomic import atomic_write_json
        from lossnet.bench.trainer import write_history

        from .datasets import load_dataset
        from .mlp import evaluate_mlps
        from .train import embed, save_reconstruction_grid, train_autoencoder

        config = self.config_object(config)
        workdir = Path(workdir)
        data = load_dataset(
            config.dataset,
            config.data,
            seed=config.seed,
            ae_images=config.ae_images,
            train_images=config.train_images,
            test_images=config.test_images,
        )
        model, outcome = train_autoencoder(
            config, data.unlabeled, workdir, progress=progress, log=print if progress else None
        )
        name, size = data.name, config.image_size
        artifacts = {"checkpoint": str(outcome.checkpoint_path)} if outcome.checkpoint_path else {}
        if outcome.best_path:
            artifacts["best"] = str(outcome.best_path)
        metrics: dict[str, float] = {}
        details: list[dict[str, Any]] = []
        if outcome.history:
            metrics[f"{name}/ae_loss"] = float(outcome.history[-1]["train_loss"])
            if "val_loss" in outcome.history[-1] and outcome.best_epoch is not None and outcome.best_path:
                metrics[f"{name}/ae_val_loss"] = float(outcome.history[outcome.best_epoch - 1]["val_loss"])
                metrics[f"{name}/ae_best_epoch"] = float(outcome.best_epoch)
        if outcome.has_weights:
            grid = workdir / "reconstructions.png"
            save_reconstruction_grid(model, data.test_x, size, grid)
            artifacts["reconstructions"] = str(grid)
            tr = embed(model, data.train_x, size, progress=progress, desc="embed train")
            te = embed(model, data.test_x, size, progress=progress, desc="embed test")
            sel = evaluate_mlps(
                tr,
                data.train_y,
                te,
                data.test_y,
                val_fraction=config.val_fraction,
                epochs=config.mlp_epochs,
                patience=config.mlp_patience,
                batch_size=config.mlp_batch_size,
                lr=config.mlp_lr,
                seed=config.seed,
                protocol=config.mlp_protocol,
                progress=progress,
            )
            details = sel.rows
            metrics[f"{name}/accuracy"] = float(sel.test_accuracy)
            metrics[f"{name}/val_accuracy"] = float(max(r["val_accuracy"] for r in sel.rows))
            mlps = workdir / "mlps.json"
            atomic_write_json(
                mlps,
                {
                    "protocol": config.mlp_protocol,
                    "selected": str(list(sel.selected)),
                    "test_accuracy": float(sel.test_accuracy),
                    "mlps": details,
                },
            )
            artifacts["mlps"] = str(mlps)
        artifacts["history"] = str(write_history(workdir, outcome, mlps=details))
        return BenchResult(
            config=config,
            metrics=metrics,
            artifacts=artifacts,
            status=outcome.status,
            details=details,
            signature=outcome.signature,
        )


BENCHMARK = Autoencoder()
resolve_config = BENCHMARK.resolve_config
run = BENCHMARK.run
