"""Training (BCE + lambda * perceptual loss, summed over the U-net iterations) and tile evaluation.

Loss of one batch (Pihlgren et al., Eq. 5 with the BCE term of the paper's repository):

.. math::

    \\mathcal{L} = \\sum_{k=1}^{K} \\Big[ \\mathrm{BCE}(\\hat y_k, y)
        + \\lambda \\, \\frac{1}{C_l H_l W_l} \\lVert \\phi_l(\\hat y_k) - \\phi_l(y) \\rVert_2^2 \\Big]

where :math:`\\hat y_k` is the road probability after iteration ``k``, :math:`y` the true mask and
:math:`\\phi_l` the loss network's feature map at layer ``l`` of the mask repeated to 3 channels and
ImageNet-normalised (done by :class:`lossnet.loss.PerceptualLoss`).
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from lossnet.atomic import atomic_write_text
from lossnet.bench.roads.data import RandomCrops, RoadTile, load_tile
from lossnet.bench.trainer import FitOutcome, TrainingTask, fit
from lossnet.bench.roads.metrics import RoadCounts, road_counts
from lossnet.bench.roads.unet import IterativeUNet

__all__ = ["build_perceptual", "RoadsTask", "train", "evaluate_tiles", "fit_threshold", "predict_tile", "save_overlay", "LOG_FIELDS", "THRESHOLD_GRID"]

#: Candidate road-probability thresholds of :func:`fit_threshold`: 0.05, 0.10, ..., 0.95.
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))

LOG_FIELDS = ("epoch", "steps", "bce", "perceptual", "weighted_perceptual", "total", "seconds", "rejected_crops")


def build_perceptual(config: dict[str, Any]) -> torch.nn.Module | None:
    """The perceptual term (:class:`lossnet.loss.PerceptualLoss` at the config's network, layer(s) and
    distance), or None for ``loss=bce``."""
    from lossnet.bench.base import build_training_loss

    return build_training_loss(config, pixel=lambda: None)


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(LOG_FIELDS), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


class RoadsTask(TrainingTask):
    """The iterative U-net on random crops, BCE + lambda * perceptual summed over the K iterations."""

    def __init__(self, config: dict[str, Any], tiles: list[RoadTile], workdir: Path, device: torch.device, progress: bool):
        self.config, self.tiles, self.workdir, self.device, self.progress = config, tiles, workdir, device, progress
        self.model = IterativeUNet(config["width"], config["depth"], config["iterations"], config.get("init_prior")).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config["lr"])
        perceptual = build_perceptual(config)
        self.perceptual = perceptual.to(device) if perceptual is not None else None
        self.crops: RandomCrops | None = None

    def state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict[str, Any], start_epoch: int) -> None:
        self.optimizer.load_state_dict(state["optimizer"])

    def begin(self, start_epoch: int) -> None:
        c = self.config
        self.crops = RandomCrops(self.tiles, c["crop"], c["steps_per_epoch"] * c["batch_size"], seed=c["seed"], max_nodata=c["max_nodata"])

    def train_epoch(self, epoch: int, epochs: int) -> dict[str, Any] | None:
        config, crops, lam = self.config, self.crops, float(self.config["lam"])
        crops.epoch, crops.rejected = epoch, 0
        torch.manual_seed(config["seed"] * 100003 + epoch)
        loader = torch.utils.data.DataLoader(crops, batch_size=config["batch_size"], shuffle=False, num_workers=int(config.get("num_workers") or 0))
        sums = {"bce": 0.0, "perceptual": 0.0}
        t0, steps = time.perf_counter(), 0
        bar = self.steps(loader, f"roads epoch {epoch + 1}/{epochs}")
        for image, mask in bar:
            image, mask = image.to(self.device), mask.to(self.device)
            outputs = self.model(image)
            if not all(bool(torch.isfinite(p.sum())) for p in outputs):
                return None  # BCE refuses NaN probabilities with an exception; report divergence instead
            bce = sum(F.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), mask) for p in outputs)
            if self.perceptual is not None:
                target_feats = self.perceptual.target_features(mask)  # once per batch, reused for all K
                pl = sum(self.perceptual(p, target_feats) for p in outputs)
                loss = bce + lam * pl
            else:
                pl, loss = torch.zeros(()), bce
            if not torch.isfinite(loss):
                return None
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            sums["bce"] += float(bce.detach())
            sums["perceptual"] += float(pl.detach())
            steps += 1
            bar.set_postfix(bce=f"{float(bce.detach()):.3f}", pl=f"{float(pl.detach()):.3f}")
        return {
            "steps": steps,
            "bce": sums["bce"] / max(steps, 1),
            "perceptual": sums["perceptual"] / max(steps, 1),
            "weighted_perceptual": lam * sums["perceptual"] / max(steps, 1),
            "total": (sums["bce"] + lam * sums["perceptual"]) / max(steps, 1),
            "seconds": round(time.perf_counter() - t0, 2),
            "rejected_crops": crops.rejected,
        }

    def after_epoch(self, history: list[dict[str, Any]]) -> None:
        _write_log(self.workdir / "train_log.csv", history)


def train(
    config: dict[str, Any],
    tiles: list[RoadTile],
    workdir: Path,
    *,
    device: torch.device,
    progress: bool = True,
) -> tuple[IterativeUNet, FitOutcome]:
    """Train (or resume) the iterative U-net with the trainer core (:func:`lossnet.bench.trainer.fit`).

    ``steps_per_epoch`` None means one crop per training tile per epoch. A checkpoint whose config
    differs in more than evaluation-only keys and ``epochs`` is refused, naming the keys.

    Returns:
        the trained model (eval mode; the last good epoch's weights if training diverged) and the
        outcome (per-epoch rows also in ``workdir/train_log.csv``).
    """
    from lossnet.bench.roads import BENCHMARK

    if config["steps_per_epoch"] is None:
        config = dict(config, steps_per_epoch=max(1, len(tiles) // config["batch_size"]))
    task, outcome = fit(lambda: RoadsTask(config, tiles, workdir, device, progress), config, workdir,
                        resumable=BENCHMARK.resumable_keys(config), device=device, name="roads")
    return task.model, outcome


def predict_tile(model: IterativeUNet, image: np.ndarray, device: torch.device) -> np.ndarray:
    """Final-iteration road probability ``(H, W)`` of a whole ``uint8 (H, W, 3)`` tile."""
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)[None].to(device)
    model.eval()
    return model.predict(x)[0, 0].cpu().numpy()


def _predicted_tiles(
    tiles: Iterable[RoadTile], predict: Callable[[np.ndarray], np.ndarray], desc: str, progress: bool
) -> Iterator[tuple[RoadTile, np.ndarray, np.ndarray, np.ndarray]]:
    """``(tile, image, mask, prediction)`` per whole tile, ``predict`` called once each, shapes checked."""
    from tqdm.auto import tqdm

    for tile in tqdm(list(tiles), desc=desc, disable=not progress, leave=False):
        image, mask = load_tile(tile)
        pred = np.asarray(predict(image))
        if pred.shape != mask.shape:
            raise ValueError(f"predictor returned shape {pred.shape} for {tile.image}; expected {mask.shape}")
        yield tile, image, mask, pred


def evaluate_tiles(
    tiles: Iterable[RoadTile],
    predict: Callable[[np.ndarray], np.ndarray],
    rhos: Iterable[float] = (0, 3),
    *,
    on_tile: Callable[[RoadTile, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    progress: bool = False,
) -> dict[float, RoadCounts]:
    """Counts summed over whole tiles: ``predict(image uint8 HxWx3) -> bool HxW`` is called once per tile.

    ``on_tile(tile, image, mask, pred)`` is called after each tile (e.g. to write overlays).
    """
    rhos = tuple(rhos)
    totals = {r: RoadCounts() for r in rhos}
    for tile, image, mask, pred in _predicted_tiles(tiles, predict, "roads test tiles", progress):
        if pred.dtype != bool:
            raise ValueError(f"predictor returned {pred.dtype} for {tile.image}; expected bool {mask.shape}")
        for r in rhos:
            totals[r] = totals[r] + road_counts(pred, mask, r)
        if on_tile is not None:
            on_tile(tile, image, mask, pred)
    return totals


def fit_threshold(
    tiles: Iterable[RoadTile],
    predict_proba: Callable[[np.ndarray], np.ndarray],
    grid: Iterable[float] = THRESHOLD_GRID,
    rho: float = 3,
    *,
    progress: bool = False,
) -> tuple[float, dict[float, float]]:
    """The threshold of ``grid`` with the best quality at ``rho`` on ``tiles`` (pass training tiles only).

    ``predict_proba(image uint8 HxWx3) -> float HxW`` is called once per tile; the road mask is
    ``proba > t``. Counts are summed over the tiles as in :func:`evaluate_tiles`. Ties go to the
    lowest threshold.

    Returns:
        ``(best threshold, {threshold: quality in percent})``.
    """
    grid = tuple(float(t) for t in grid)
    if not grid:
        raise ValueError("empty threshold grid")
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

    gt = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=-1)
    colour = (image.astype(np.float32) * 0.4).astype(np.uint8)
    colour[pred & mask] = (0, 255, 0)
    colour[pred & ~mask] = (255, 0, 0)
    colour[~pred & mask] = (0, 0, 255)
    gap = np.full((image.shape[0], 8, 3), 255, np.uint8)
    save_image(path, np.concatenate([image, gap, gt, gap, colour], axis=1))
