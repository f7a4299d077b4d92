"""The two evaluation protocols of the roads benchmark, and the validation loss used to pick the checkpoint.

``full`` (lossnet's protocol)
    Whole test tiles at native resolution (reflect-padded for the U-net). Masks are the files'
    > 127 pixels. Pixel counts are summed over all tiles before dividing (micro average). Reported
    pixel-exact (rho = 0) and with a 3 px tolerance (rho = 3). Metric prefix ``mrd.full/``.

``reference`` (the authors' protocol; use it for comparisons with the paper)
    Every tile, image and mask alike, is resized bilinearly so its shorter side is ``size``
    (224; Massachusetts tiles are square, so 224 x 224). The resize has no antialiasing: torchvision's
    tensor resize did not antialias before version 0.17, and ``antialias=True`` selects the newer
    behaviour. The resized mask is binarised at > 0.5. Completeness, correctness and quality are
    computed per tile, pixel-exact (rho = 0), and averaged over tiles (macro average). Metric prefix
    ``mrd/``, which is what the paper tables compare against.

    Not reproduced from the authors' ``test.py``: the list of predictions there grows with
    every iteration and is re-scored at each one. With K = 3, a tile then adds
    ``3 m(p1) + 2 m(p2) + m(p3)`` to the sums, which are divided by the tile count. Here each tile's
    final-iteration prediction is scored exactly once. Their U-net also stays in train mode
    (BatchNorm statistics of the single test tile); here it is in eval mode. A ratio whose
    denominator is 0 is defined as in :mod:`lossnet.bench.roads.metrics` (1 when prediction and
    reference are both empty, else 0); in their code it raises ZeroDivisionError.

Validation (checkpoint choice)
    The authors' rule: after every epoch, compute the BCE of the final training iteration on the
    validation tiles, prepared as in ``reference`` but with the *soft* resized mask as the target
    (they do not binarise it), with the U-net in eval mode. Keep the epoch with the lowest value.
    Here the value is the mean over tiles of the per-pixel BCE. The authors instead sum the means
    of shuffled batches of 8; both give the same order of epochs when all batches have the same size.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from lossnet.bench.roads.metrics import road_counts, scores_from_counts

__all__ = [
    "PROTOCOLS",
    "METRIC_PREFIX",
    "resize_short_side",
    "reference_view",
    "macro_scores",
    "validation_bce",
    "as_float_image",
]

#: ``protocol`` values; ``both`` runs the two.
PROTOCOLS = ("full", "reference")
#: Metric dataset prefix of each protocol.
METRIC_PREFIX = {"reference": "mrd", "full": "mrd.full"}
SCORES = ("completeness", "correctness", "quality")


def resize_short_side(x: torch.Tensor, size: int, antialias: bool = False) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) of ``(N, C, H, W)`` so the shorter side is ``size``.

    The longer side becomes ``int(size * long / short)``, as in torchvision's ``resize(x, size)``
    with an int size.
    """
    h, w = x.shape[-2:]
    if h <= w:
        out = (size, int(size * w / h))
    else:
        out = (int(size * h / w), size)
    if (h, w) == out:
        return x
    return F.interpolate(x, size=out, mode="bilinear", align_corners=False, antialias=antialias)


def reference_view(
    image: np.ndarray, mask: np.ndarray, size: int = 224, antialias: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A tile as the authors' test and validation loaders see it.

    Args:
        image: ``uint8 (H, W, 3)``.
        mask: ``bool (H, W)`` (or 0/1 floats).
        size: shorter side after the resize.
        antialias: antialias the bilinear resize.

    Returns:
        ``(image float32 (h, w, 3) in [0, 1], soft mask float32 (h, w) in [0, 1])``: the image is
        ToTensor-scaled (/255) and then resized; the mask is resized as 0/1 floats (binarise it at >
        0.5 for scoring).
    """
    img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)[None]
    m = torch.from_numpy(np.asarray(mask, dtype=np.float32).copy())[None, None]
    img = resize_short_side(img, size, antialias).clamp_(0.0, 1.0)
    m = resize_short_side(m, size, antialias).clamp_(0.0, 1.0)
    return img[0].permute(1, 2, 0).contiguous().numpy(), m[0, 0].numpy()


def as_float_image(image: np.ndarray) -> np.ndarray:
    """``float32 (H, W, 3)`` in [0, 1] from a uint8 image (/255) or a float image (as is)."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.asarray(image, dtype=np.float32)


def macro_scores(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Pixel-exact completeness, correctness and quality (percent) of every ``(pred, ref)`` bool pair,
    averaged over the pairs (macro average), plus ``tiles``.

    Raises:
        ValueError: no pairs.
    """
    sums = dict.fromkeys(SCORES, 0.0)
    n = 0
    for pred, ref in pairs:
        s = scores_from_counts(road_counts(pred, ref, 0))
        for k in SCORES:
            sums[k] += s[k]
        n += 1
    if not n:
        raise ValueError("no tiles to score")
    return {**{k: v / n for k, v in sums.items()}, "tiles": float(n)}


@torch.no_grad()
def validation_bce(
    model: torch.nn.Module, views: list[tuple[torch.Tensor, torch.Tensor]], iterations: int, device
) -> float:
    """Mean over tiles of the per-pixel BCE of the final iteration, the model in eval mode.

    Args:
        model: an :class:`~lossnet.bench.roads.unet.IterativeUNet`.
        views: ``(image (1, 3, h, w), soft mask (1, 1, h, w))`` per validation tile (see
            :func:`reference_view`).
        iterations: K of the forward pass (the training K, as in the authors' code).
    """
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        for image, mask in views:
            prob = model.predict(image.to(device), iterations)
            if not bool(torch.isfinite(prob).all()):
                return float("inf")
            total += float(F.binary_cross_entropy(prob, mask.to(device)))
        return total / max(len(views), 1)
    finally:
        model.train(was_training)
