"""Road delineation metrics of Wiedemann et al.: completeness, correctness and quality.

With a tolerance buffer of ``rho`` pixels (Euclidean distance transform):

* ``TP_ref``  = reference pixels within ``rho`` of a predicted pixel (matched reference),
* ``TP_pred`` = predicted pixels within ``rho`` of a reference pixel (matched prediction),
* ``FN`` = ``|ref| - TP_ref``, ``FP`` = ``|pred| - TP_pred``.

.. math::

    \\text{completeness} = \\frac{TP_{ref}}{|ref|}, \\qquad
    \\text{correctness} = \\frac{TP_{pred}}{|pred|}, \\qquad
    \\text{quality} = \\frac{TP_{pred}}{|pred| + |ref| - TP_{ref}} = \\frac{TP_{pred}}{TP_{pred} + FP + FN}

(Wiedemann's quality "matched extraction / (extraction + unmatched reference)"). With ``rho = 0``
a pixel matches only itself, so ``TP_ref = TP_pred = TP`` and the three are the pixel-exact
recall, precision and ``TP / (TP + FP + FN)`` (IoU) of the paper's repository.

Counts are summed over all tiles before dividing (micro average). A ratio whose denominator is 0
is 1.0 when prediction and reference are both empty (nothing to find, nothing wrong) and 0.0
otherwise; in particular an empty prediction on a non-empty reference has completeness 0,
correctness 0 and quality 0, without a division error.

References:
  Wiedemann, Heipke, Mayer, Jamet, "Empirical evaluation of automatically extracted road axes",
  Empirical Evaluation Techniques in Computer Vision, 1998.
  Mosinska et al., "Beyond the Pixel-Wise Loss for Topology-Aware Delineation", CVPR 2018.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterable

import numpy as np
from scipy.ndimage import distance_transform_edt

from lossnet.errors import InputError

__all__ = ["RoadCounts", "road_counts", "road_scores", "scores_from_counts"]


@dataclass
class RoadCounts:
    """Pixel counts of one or more tiles (add them with ``+``).

    Attributes:
        pred: predicted road pixels ``|pred|``.
        ref: reference road pixels ``|ref|``.
        tp_pred: predicted pixels within ``rho`` of the reference.
        tp_ref: reference pixels within ``rho`` of the prediction.
        tiles: number of tiles counted.
    """

    pred: int = 0
    ref: int = 0
    tp_pred: int = 0
    tp_ref: int = 0
    tiles: int = 0

    def __add__(self, other: "RoadCounts") -> "RoadCounts":
        return RoadCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def scores(self) -> dict[str, float]:
        """``{"completeness", "correctness", "quality"}`` in percent."""
        return scores_from_counts(self)


def _as_bool_mask(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise InputError(f"{name} must be a 2-D mask (H, W), got shape {a.shape}")
    if a.dtype != bool:
        raise InputError(f"{name} must be a boolean mask, got dtype {a.dtype}; threshold it first")
    return a


def road_counts(pred: np.ndarray, ref: np.ndarray, rho: float = 0) -> RoadCounts:
    """Matched/unmatched pixel counts of one tile.

    Args:
        pred: predicted road mask, bool ``(H, W)``.
        ref: reference road mask, bool ``(H, W)``, same shape.
        rho: tolerance buffer in pixels (Euclidean); 0 is pixel-exact.

    Returns:
        :class:`RoadCounts` with ``tiles = 1``.
    """
    pred = _as_bool_mask(pred, "prediction")
    ref = _as_bool_mask(ref, "reference")
    if pred.shape != ref.shape:
        raise InputError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    if rho < 0:
        raise InputError(f"rho must be >= 0, got {rho}")
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    if rho == 0:
        tp = int(np.logical_and(pred, ref).sum())
        return RoadCounts(n_pred, n_ref, tp, tp, 1)
    # edt of the complement = distance of every pixel to the nearest True pixel; an empty mask
    # has no True pixel, so nothing is within rho of it.
    tp_ref = int((ref & (distance_transform_edt(~pred) <= rho)).sum()) if n_pred else 0
    tp_pred = int((pred & (distance_transform_edt(~ref) <= rho)).sum()) if n_ref else 0
    return RoadCounts(n_pred, n_ref, tp_pred, tp_ref, 1)


def _ratio(num: int, den: int, both_empty: bool) -> float:
    if den == 0:
        return 100.0 if both_empty else 0.0
    return 100.0 * num / den


def scores_from_counts(c: RoadCounts) -> dict[str, float]:
    """Completeness, correctness and quality in percent from (summed) counts."""
    both_empty = c.pred == 0 and c.ref == 0
    return {
        "completeness": _ratio(c.tp_ref, c.ref, both_empty),
        "correctness": _ratio(c.tp_pred, c.pred, both_empty),
        "quality": _ratio(c.tp_pred, c.pred + c.ref - c.tp_ref, both_empty),
    }


def road_scores(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], rhos: Iterable[float] = (0, 3)
) -> dict[float, RoadCounts]:
    """Counts summed over ``(pred, ref)`` tile pairs, for every ``rho``; each pair is counted once."""
    rhos = tuple(rhos)
    totals = {r: RoadCounts() for r in rhos}
    for pred, ref in pairs:
        for r in rhos:
            totals[r] = totals[r] + road_counts(pred, ref, r)
    return totals
