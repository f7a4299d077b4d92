"""Training (Mosinska-weighted BCE + lambda * perceptual loss over the U-net iterations), checkpoint
choice by validation BCE, and tile evaluation.

Loss of one batch (Pihlgren et al., Eq. 4-5, weighted over the iterations as in Mosinska et al.
and in the authors' code):

.. math::

    \\mathcal{L} = \\sum_{k=1}^{K} \\frac{k}{Z} \\Big[ \\mathrm{BCE}(\\hat y_k, y)
        + \\lambda \\, d\\big(\\phi_l(\\hat y_k), \\phi_l(y)\\big) \\Big], \\qquad Z = \\frac{K (K + 1)}{2}

where :math:`\\hat y_k` is the road probability after iteration ``k`` of ``K = train_iterations``,
:math:`y` the true mask, :math:`\\phi_l` the loss network's features at layer ``l`` of the mask
repeated to 3 channels (normalised as the config's ``normalize`` says, by
:class:`lossnet.loss.PerceptualLoss`) and :math:`d` the configured distance (Eq. 5: MSE). The
weights sum to 1, so the loss of K = 1 is plain BCE + lambda * perceptual.
"""

from __future__ import annotations

import contextlib
import csv
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from lossnet.atomic import atomic_write_text
from lossnet.bench.roads.data import RandomCrops, RoadTile, TileEpochCrops, load_tile
from lossnet.bench.roads.evaluate import as_float_image, macro_scores, reference_view, validation_bce
from lossnet.bench.roads.metrics import RoadCounts, road_counts
from lossnet.bench.roads.unet import IterativeUNet, build_model
from lossnet.bench.trainer import BEST, FitOutcome, TrainingTask, fit, load_checkpoint, resumable_keys

if TYPE_CHECKING:  # the package imports this module
    from lossnet.bench.roads import RoadsConfig


__all__ = [
    "build_perceptual",
    "iteration_weights",
    "iteration_loss",
    "RoadsTask",
    "train",
    "evaluate_tiles",
    "evaluate_tiles_reference",
    "reference_view_fn",
    "fit_threshold",
    "predict_tile",
    "batch_statistics",
    "TEST_BN",
    "save_overlay",
    "LOG_FIELDS",
    "THRESHOLD_GRID",
    "SELECTIONS",
    "SAMPLERS",
]

#: Candidate road-probability thresholds of :func:`fit_threshold`: 0.05, 0.10, ..., 0.95.
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: ``selection`` choices: lowest validation BCE (the authors' rule) or the last epoch.
SELECTIONS = ("val_bce", "last")
#: ``sampler`` choices: the authors' (each tile once per pass) or lossnet's earlier one (with replacement).
SAMPLERS = ("reference", "random")

LOG_FIELDS = (
    "epoch",
    "steps",
    "bce",
    "perceptual",
    "weighted_perceptual",
    "total",
    "val_bce",
    "seconds",
    "rejected_crops",
)


def build_perceptual(config: RoadsConfig) -> torch.nn.Module | None:
    """The perceptual term (:class:`lossnet.loss.PerceptualLoss` at the config's network, layer(s),
    distance and loss-network knobs), or None for ``loss=bce``."""
    from lossnet.bench.base import build_training_loss

    return build_training_loss(config, pixel=lambda: None)


def iteration_weights(k: int) -> list[float]:
    """Mosinska et al.'s weights of iterations ``1..k``: ``i / Z`` with ``Z = k (k + 1) / 2`` (they sum to 1)."""
    if k < 1:
        raise ValueError(f"need at least one iteration, got {k}")
    z = k * (k + 1) / 2
    return [i / z for i in range(1, k + 1)]


def _bce(p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE in fp32 even under ``--amp``: autocast refuses binary_cross_entropy (its log saturates in
    half precision); in fp32 runs the casts are no-ops."""
    with torch.autocast(device_type=p.device.type, enabled=False):
        return F.binary_cross_entropy(p.float(), mask.float())


def iteration_loss(
    outputs: list[torch.Tensor], mask: torch.Tensor, perceptual: torch.nn.Module | None, target_feats: Any, lam: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, weighted BCE, weighted perceptual)`` of one batch: ``sum_k (k/Z) [BCE_k + lam * P_k]``.

    ``outputs`` are the probabilities of iterations ``1..K``; ``target_feats`` the loss network's
    features of ``mask`` (computed once per batch), ignored when ``perceptual`` is None.
    """
    weights = iteration_weights(len(outputs))
    bce = sum(w * _bce(p, mask) for w, p in zip(weights, outputs))
    if perceptual is None:
        pl = torch.zeros((), device=mask.device)
    else:
        pl = sum(w * perceptual(p, target_feats) for w, p in zip(weights, outputs))
    return bce + lam * pl, bce, pl


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(LOG_FIELDS), extrasaction="ignore")
    w.writeheader()
    # the trainer stores the score (the negative validation BCE); the log shows the BCE itself
    w.writerows({**r, "val_bce": -r[RoadsTask.score_name]} if RoadsTask.score_name in r else r for r in rows)
    atomic_write_text(path, buf.getvalue())


class RoadsTask(TrainingTask):
    """The iterative U-net on training crops, the Mosinska-weighted loss, and (with ``selection =
    val_bce``) the validation BCE as the epoch score (its negative: the trainer keeps the highest)."""

    score_name = "neg_val_bce"

    def __init__(
        self,
        config: RoadsConfig,
        tiles: list[RoadTile],
        workdir: Path,
        device: torch.device,
        progress: bool,
        val_tiles: list[RoadTile] | None = None,
    ):
        self.config, self.tiles, self.workdir, self.device, self.progress = config, tiles, workdir, device, progress
        self.model = build_model(config).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        perceptual = build_perceptual(config)
        self.perceptual = perceptual.to(device) if perceptual is not None else None
        self.crops: RandomCrops | None = None
        self.val_tiles = list(val_tiles or [])
        self._val_views: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._last_val: float | None = None

    def loss_signature(self) -> str | None:
        return getattr(self.perceptual, "signature", None)  # None: BCE only

    def state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict[str, Any], start_epoch: int) -> None:
        self.optimizer.load_state_dict(state["optimizer"])

    def begin(self, start_epoch: int) -> None:
        c = self.config
        length = None if c.steps_per_epoch is None else c.steps_per_epoch * c.batch_size
        # decoded tiles are cached in memory in-process; DataLoader workers would each hold a copy
        # (about 10 GB for the 1,108 full-size training tiles), so with workers tiles are decoded once
        # into a disk cache and memory-mapped (data.load_tile_mapped): a crop reads only its pages
        cache = not c.num_workers
        if c.sampler == "reference":
            self.crops = TileEpochCrops(self.tiles, c.crop, length, seed=c.seed, cache=cache)
        else:
            if length is None:
                length = max(1, len(self.tiles) // c.batch_size) * c.batch_size
            self.crops = RandomCrops(self.tiles, c.crop, length, seed=c.seed, max_nodata=c.max_nodata, cache=cache)

    def batches(self, epoch: int, epochs: int):
        """The epoch's crops (seeded per epoch, so a resumed run sees the same ones), in a DataLoader."""
        config, crops = self.config, self.crops
        crops.epoch, crops.rejected = epoch, 0
        torch.manual_seed(config.seed * 100003 + epoch)
        self._t0 = time.perf_counter()
        return torch.utils.data.DataLoader(
            crops,
            batch_size=config.batch_size,
            shuffle=False,
            drop_last=False,
            num_workers=int(config.num_workers or 0),
        )

    def epoch_label(self, epoch: int, epochs: int) -> str:
        return f"roads epoch {epoch + 1}/{epochs}"

    def step(self, batch) -> dict[str, Any] | None:
        image, mask = batch
        with self.timer.phase("model"):
            outputs = self.model(image, int(self.config.train_iterations))
            if not all(bool(torch.isfinite(p.sum())) for p in outputs):
                return None  # BCE refuses NaN probabilities with an exception; report divergence instead
        with self.timer.phase("loss_net"):
            target_feats = (
                self.perceptual.target_features(mask) if self.perceptual is not None else None
            )  # once per batch
            loss, bce, pl = iteration_loss(outputs, mask, self.perceptual, target_feats, float(self.config.lam))
        return {"loss": loss, "bce": bce, "perceptual": pl}

    def postfix(self, record: dict[str, float]) -> dict[str, str]:
        return {"bce": f"{record['bce']:.3f}", "pl": f"{record['perceptual']:.3f}"}

    def epoch_row(self, epoch: int, records: list[dict[str, float]]) -> dict[str, Any]:
        lam, steps = float(self.config.lam), len(records)
        sums = {"bce": 0.0, "perceptual": 0.0}
        for r in records:
            sums["bce"] += r["bce"]
            sums["perceptual"] += r["perceptual"]
        return {
            "steps": steps,
            "bce": sums["bce"] / max(steps, 1),
            "perceptual": sums["perceptual"] / max(steps, 1),
            "weighted_perceptual": lam * sums["perceptual"] / max(steps, 1),
            "total": (sums["bce"] + lam * sums["perceptual"]) / max(steps, 1),
            "seconds": round(time.perf_counter() - self._t0, 2),
            "rejected_crops": getattr(self.crops, "rejected", 0),
        }

    def _views(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self._val_views is None:
            size, aa = int(self.config.eval_size), bool(self.config.eval_antialias)
            views = []
            for tile in self.val_tiles:
                image, mask = reference_view(*load_tile(tile), size, aa)
                views.append(
                    (torch.from_numpy(image.transpose(2, 0, 1).copy())[None], torch.from_numpy(mask.copy())[None, None])
                )
            self._val_views = views
        return self._val_views

    def score(self, epoch: int) -> float | None:
        if self.config.selection != "val_bce" or not self.val_tiles:
            return None
        self._last_val = validation_bce(self.model, self._views(), int(self.config.train_iterations), self.device)
        return -self._last_val

    def after_epoch(self, history: list[dict[str, Any]]) -> None:
        _write_log(self.workdir / "train_log.csv", history)


def train(
    config: RoadsConfig,
    tiles: list[RoadTile],
    workdir: Path,
    *,
    device: torch.device,
    progress: bool = True,
    val_tiles: list[RoadTile] | None = None,
    resumable: Iterable[str] | None = None,
) -> tuple[IterativeUNet, FitOutcome]:
    """Train (or resume) the iterative U-net with the trainer core (:func:`lossnet.bench.trainer.fit`).

    With ``selection = val_bce`` the validation BCE on ``val_tiles`` is computed after every epoch,
    and the returned model holds the weights of the epoch with the lowest value (``best.pt``); with
    ``last`` it holds the last epoch's weights. A checkpoint whose config differs in more than
    evaluation-only keys and ``epochs`` is refused, naming the keys (``resumable``: the keys it may
    differ in, the benchmark's ``resumable_keys``).

    Returns:
        the model (eval mode; the best weights so far if training diverged) and the outcome
        (per-epoch rows also in ``workdir/train_log.csv``).
    """
    if config.selection == "val_bce" and not val_tiles:
        raise ValueError("selection val_bce needs validation tiles")
    task, outcome = fit(
        lambda: RoadsTask(config, tiles, workdir, device, progress, val_tiles),
        config,
        workdir,
        resumable=resumable_keys("roads", config, resumable),
        device=device,
        name="roads",
    )
    if config.selection == "val_bce" and outcome.status == "done" and (Path(workdir) / BEST).exists():
        task.model.load_state_dict(load_checkpoint(Path(workdir) / BEST, device)["model"])
        task.model.eval()
    return task.model, outcome


@contextlib.contextmanager
def batch_statistics(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode except its BatchNorm layers, which normalise with the statistics of
    the batch they see, as in the authors' roads test (it never calls ``.eval()`` and passes one tile
    at a time). The running statistics are neither used nor updated; every mode is restored after."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = model.training, [(m.training, m.track_running_stats) for m in norms]
    model.eval()
    for m in norms:
        # training with track_running_stats off: batch statistics, running buffers untouched
        m.train()
        m.track_running_stats = False
    try:
        yield model
    finally:
        model.train(saved[0])
        for m, (training, track) in zip(norms, saved[1]):
            m.train(training)
            m.track_running_stats = track


#: ``test_bn`` values: BatchNorm with its running statistics (eval mode) or each tile's own.
TEST_BN = ("running", "batch")


def predict_tile(
    model: IterativeUNet,
    image: np.ndarray,
    device: torch.device,
    iterations: int | None = None,
    test_bn: str = "running",
) -> np.ndarray:
    """Final-iteration road probability ``(H, W)`` of a whole tile: ``uint8 (H, W, 3)``, or
    float in [0, 1] (a :func:`~lossnet.bench.roads.evaluate.reference_view`); K = ``iterations``
    (default: the model's); ``test_bn`` ``running`` (eval mode) or ``batch`` (:func:`batch_statistics`:
    the BatchNorm layers normalise with this tile's statistics). The model is left in eval mode."""
    if test_bn not in TEST_BN:
        raise ValueError(f"test_bn must be one of {', '.join(TEST_BN)}, got {test_bn!r}")
    x = torch.from_numpy(np.ascontiguousarray(as_float_image(image).transpose(2, 0, 1)))[None].to(device)
    model.eval()
    if test_bn == "batch":
        with batch_statistics(model):
            return model.predict(x, iterations)[0, 0].cpu().numpy()
    return model.predict(x, iterations)[0, 0].cpu().numpy()


View = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def reference_view_fn(size: int = 224, antialias: bool = False) -> View:
    """``(image uint8, mask bool) -> (image float, mask bool)`` of the reference protocol (mask > 0.5)."""

    def view(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img, soft = reference_view(image, mask, size, antialias)
        return img, soft > 0.5

    return view


def _predicted_tiles(
    tiles: Iterable[RoadTile],
    predict: Callable[[np.ndarray], np.ndarray],
    desc: str,
    progress: bool,
    view: View | None = None,
) -> Iterator[tuple[RoadTile, np.ndarray, np.ndarray, np.ndarray]]:
    """``(tile, image, mask, prediction)`` per tile (after ``view``), ``predict`` called once each, shapes checked."""
    from tqdm.auto import tqdm

    for tile in tqdm(list(tiles), desc=desc, disable=not progress, leave=False):
        image, mask = load_tile(tile)
        if view is not None:
            image, mask = view(image, mask)
        pred = np.asarray(predict(image))
        if pred.shape != mask.shape:
            raise ValueError(f"predictor returned shape {pred.shape} for {tile.image}; expected {mask.shape}")
        yield tile, image, mask, pred


def _check_bool(pred: np.ndarray, tile: RoadTile) -> None:
    if pred.dtype != bool:
        raise ValueError(f"predictor returned {pred.dtype} for {tile.image}; expected a bool mask")


def evaluate_tiles(
    tiles: Iterable[RoadTile],
    predict: Callable[[np.ndarray], np.ndarray],
    rhos: Iterable[float] = (0, 3),
    *,
    on_tile: Callable[[RoadTile, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    progress: bool = False,
) -> dict[float, RoadCounts]:
    """The ``full`` protocol: counts summed over whole native tiles; ``predict(image uint8 HxWx3) ->
    bool HxW`` is called once per tile.

    ``on_tile(tile, image, mask, pred)`` is called after each tile (e.g. to write overlays).
    """
    rhos = tuple(rhos)
    totals = {r: RoadCounts() for r in rhos}
    for tile, image, mask, pred in _predicted_tiles(tiles, predict, "roads test tiles", progress):
        _check_bool(pred, tile)
        for r in rhos:
            totals[r] = totals[r] + road_counts(pred, mask, r)
        if on_tile is not None:
            on_tile(tile, image, mask, pred)
    return totals


def evaluate_tiles_reference(
    tiles: Iterable[RoadTile],
    predict: Callable[[np.ndarray], np.ndarray],
    size: int = 224,
    antialias: bool = False,
    *,
    on_tile: Callable[[RoadTile, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """The ``reference`` protocol: every tile resized (shorter side ``size``, bilinear), mask > 0.5,
    pixel-exact per-tile ratios averaged over the tiles.

    ``predict(image float (h, w, 3) in [0, 1]) -> bool (h, w)`` is called once per tile.

    Returns:
        ``{"completeness", "correctness", "quality"}`` in percent and ``"tiles"``.
    """
    pairs = []
    for tile, image, mask, pred in _predicted_tiles(
        tiles, predict, "roads test tiles (224)", progress, reference_view_fn(size, antialias)
    ):
        _check_bool(pred, tile)
        pairs.append((pred, mask))
        if on_tile is not None:
            on_tile(tile, image, mask, pred)
    return macro_scores(pairs)


def fit_threshold(
    tiles: Iterable[RoadTile],
    predict_proba: Callable[[np.ndarray], np.ndarray],
    grid: Iterable[float] = THRESHOLD_GRID,
    rho: float = 3,
    *,
    protocol: str = "full",
    size: int = 224,
    antialias: bool = False,
    progress: bool = False,
) -> tuple[float, dict[float, float]]:
    """The threshold of ``grid`` with the best quality on ``tiles`` (pass training tiles only), scored
    as ``protocol`` scores test tiles.

    ``full``: native tiles, counts summed over the tiles (as :func:`evaluate_tiles`), quality at
    ``rho``. ``reference``: tiles resized as :func:`evaluate_tiles_reference`, per-tile pixel-exact
    quality averaged over the tiles (``rho`` is ignored). ``predict_proba(image) -> float HxW`` is
    called once per tile; the road mask is ``proba > t``. Ties go to the lowest threshold.

    Returns:
        ``(best threshold, {threshold: quality in percent})``.
    """
    grid = tuple(float(t) for t in grid)
    if not grid:
        raise ValueError("empty threshold grid")
    if protocol == "reference":
        probas = [
            (proba, mask)
            for _, _, mask, proba in _predicted_tiles(
                tiles, predict_proba, "roads threshold fit (224)", progress, reference_view_fn(size, antialias)
            )
        ]
        if not probas:
            raise ValueError("no tiles to fit the threshold on")
        quality = {t: macro_scores((p > t, m) for p, m in probas)["quality"] for t in grid}
    else:
        totals = {t: RoadCounts() for t in grid}
        for _, _, mask, proba in _predicted_tiles(tiles, predict_proba, "roads threshold fit", progress):
            for t in grid:
                totals[t] = totals[t] + road_counts(proba > t, mask, rho)
        if not any(c.tiles for c in totals.values()):
            raise ValueError("no tiles to fit the threshold on")
        quality = {t: c.scores()["quality"] for t, c in totals.items()}
    best = max(grid, key=lambda t: (quality[t], -t))
    return best, quality


def save_overlay(path: Path, image: np.ndarray, mask: np.ndarray, pred: np.ndarray) -> None:
    """PNG of three panels: image | ground truth | prediction (green = hit, red = false, blue = missed)."""
    from lossnet.imageio import save_image

    if image.dtype != np.uint8:  # a float view in [0, 1]
        image = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    gt = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=-1)
    colour = (image.astype(np.float32) * 0.4).astype(np.uint8)
    colour[pred & mask] = (0, 255, 0)
    colour[pred & ~mask] = (255, 0, 0)
    colour[~pred & mask] = (0, 0, 255)
    gap = np.full((image.shape[0], 8, 3), 255, np.uint8)
    save_image(path, np.concatenate([image, gap, gt, gap, colour], axis=1))
