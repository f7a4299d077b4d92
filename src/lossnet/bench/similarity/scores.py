"""BAPPS scores: 2AFC agreement, JND mAP, and Kumar et al.'s perceptual score.

All functions follow the LPIPS authors' evaluation code (``lpips.trainer.score_2afc_dataset``,
``score_jnd_dataset``, ``lpips.voc_ap``) exactly, in float64 numpy.

References:
    Zhang, Isola, Efros, Shechtman, Wang. "The Unreasonable Effectiveness of Deep Features as a
    Perceptual Metric", CVPR 2018.
    Kumar, Houlsby, Kalchbrenner, Cubuk. "Do better ImageNet classifiers assess perceptual
    similarity better?", TMLR 2022.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from lossnet.errors import InputError

__all__ = ["two_afc_scores", "score_2afc", "voc_ap", "jnd_map", "perceptual_score"]


def _vec(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1) if np.ndim(x) <= 1 else None
    if a is None:
        raise InputError(f"{name} must be one-dimensional, got shape {np.shape(x)}")
    return a


def two_afc_scores(d0, d1, judge) -> np.ndarray:
    """Per-triplet 2AFC agreement with the human judgment.

    .. math:: s = \\mathbb 1[d_0<d_1](1-h) + \\mathbb 1[d_1<d_0]\\,h + \\tfrac12\\mathbb 1[d_0=d_1]

    Args:
        d0: distances reference <-> p0, shape (N,).
        d1: distances reference <-> p1, shape (N,).
        judge: ``h``, fraction of humans who judged p1 closer, in [0, 1], shape (N,).

    Returns:
        ``s`` in [0, 1], shape (N,).
    """
    d0, d1, h = _vec(d0, "d0"), _vec(d1, "d1"), _vec(judge, "judge")
    if not d0.shape == d1.shape == h.shape:
        raise InputError(f"d0, d1 and judge must have the same length, got {d0.size}, {d1.size}, {h.size}")
    return (d0 < d1) * (1.0 - h) + (d1 < d0) * h + (d1 == d0) * 0.5


def score_2afc(d0, d1, judge) -> float:
    """Mean 2AFC score of a subset (the LPIPS authors' ``score_2afc_dataset``); NaN when empty."""
    s = two_afc_scores(d0, d1, judge)
    return float(np.mean(s)) if s.size else float("nan")


def voc_ap(rec, prec) -> float:
    """Area under the precision-recall curve with the monotone precision envelope (PASCAL VOC 2010+).

    .. math:: AP = \\sum_i (r_{i+1}-r_i)\\,\\max_{j>i} p_j

    with sentinels ``r = [0, rec, 1]``, ``p = [0, prec, 0]`` -- the same as ``lpips.voc_ap``
    (``use_07_metric=False``).
    """
    mrec = np.concatenate(([0.0], _vec(rec, "rec"), [1.0]))
    mpre = np.concatenate(([0.0], _vec(prec, "prec"), [0.0]))
    # Envelope from the right: the best precision achievable at this recall or higher.
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def jnd_map(ds, sames) -> float:
    """JND mean average precision (the LPIPS authors' ``score_jnd_dataset``).

    Pairs are ranked by ascending distance (numpy's default ``argsort``, as lpips, so tied
    distances are ordered identically); with ``same`` as fractional positives, ``TP_k = sum_{i<=k} same_i``,
    ``FP_k = sum_{i<=k} (1 - same_i)``, precision ``TP/(TP+FP)``, recall ``TP / sum(same)``,
    and the score is :func:`voc_ap`.

    Args:
        ds: distances between the two patches of each pair, shape (N,).
        sames: fraction of humans who judged the pair identical, shape (N,).
    """
    ds, sames = _vec(ds, "ds"), _vec(sames, "sames")
    if ds.shape != sames.shape:
        raise InputError(f"ds and sames must have the same length, got {ds.size} and {sames.size}")
    if ds.size == 0:
        return float("nan")
    order = np.argsort(ds)
    s = sames[order]
    tps = np.cumsum(s)
    fps = np.cumsum(1.0 - s)
    fns = np.sum(s) - tps
    with np.errstate(invalid="ignore", divide="ignore"):
        precs = tps / (tps + fps)
        recs = tps / (tps + fns)
    return voc_ap(recs, precs)


def perceptual_score(subset_2afc: Mapping[str, float], subsets=None) -> float:
    """Kumar et al.'s perceptual score (PS): the unweighted mean of the 2AFC scores of the BAPPS
    validation subsets.

    Kumar et al. (TMLR 2022, Sec. 3) summarise a network's perceptual similarity by its 2AFC
    accuracy on BAPPS averaged over the validation distortion types (traditional, cnn, superres,
    deblur, color, frameinterp), each subset counting equally regardless of its size.

    Args:
        subset_2afc: ``{subset: 2afc score}``.
        subsets: the subsets that must be present (default: the six BAPPS 2AFC val subsets).

    Returns:
        The mean; NaN when one of ``subsets`` is missing (the score is then not comparable).
    """
    from lossnet.bench.similarity.bapps import SUBSETS_2AFC_VAL

    subsets = tuple(SUBSETS_2AFC_VAL if subsets is None else subsets)
    if any(s not in subset_2afc for s in subsets):
        return float("nan")
    return float(np.mean([subset_2afc[s] for s in subsets]))
