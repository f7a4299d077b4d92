"""Wiedemann completeness/correctness/quality on hand-made masks, and once-per-tile counting."""

from __future__ import annotations

import numpy as np
import pytest

from lossnet.bench.roads.metrics import RoadCounts, road_counts, road_scores, scores_from_counts
from lossnet.errors import InputError


def _scores(pred, ref, rho):
    return road_counts(pred, ref, rho).scores()


def _vertical_road(shift: int = 0, size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[:, 10 + shift : 13 + shift] = True  # a 3 px wide road
    return m


def test_road_shifted_by_one_pixel_is_exact_only_with_tolerance():
    ref, pred = _vertical_road(0), _vertical_road(1)
    s0 = _scores(pred, ref, 0)
    # 2 of 3 columns overlap: TP = 64, FP = FN = 32
    assert s0["completeness"] == pytest.approx(100 * 2 / 3)
    assert s0["correctness"] == pytest.approx(100 * 2 / 3)
    assert s0["quality"] == pytest.approx(100 * 64 / (64 + 32 + 32))
    for rho in (1, 3):
        assert _scores(pred, ref, rho) == {"completeness": 100.0, "correctness": 100.0, "quality": 100.0}


def test_worked_example():
    ref = np.zeros((5, 5), bool)
    ref[0, 0:4] = True  # 4 reference pixels
    pred = np.zeros((5, 5), bool)
    pred[0, 2:5] = True
    pred[4, 4] = True  # 4 predicted pixels, one far away
    # rho = 0: TP = 2 (cols 2, 3), FP = 2, FN = 2
    assert _scores(pred, ref, 0) == pytest.approx({"completeness": 50.0, "correctness": 50.0, "quality": 100 * 2 / 6})
    # rho = 1: matched ref = cols 1..3 (3 of 4); matched pred = cols 2..4 (3 of 4; (4,4) is 4 px away)
    # quality = TP_pred / (|pred| + |ref| - TP_ref) = 3 / (4 + 4 - 3)
    c = road_counts(pred, ref, 1)
    assert (c.pred, c.ref, c.tp_pred, c.tp_ref) == (4, 4, 3, 3)
    assert c.scores() == pytest.approx({"completeness": 75.0, "correctness": 75.0, "quality": 60.0})


def _brute_force(pred, ref, rho):
    """Independent O(n^2) matching by explicit pairwise distances."""
    P, R = np.argwhere(pred), np.argwhere(ref)
    if len(P) and len(R):
        d = np.sqrt(((P[:, None, :] - R[None, :, :]) ** 2).sum(-1))
        tp_pred, tp_ref = int((d.min(1) <= rho).sum()), int((d.min(0) <= rho).sum())
    else:
        tp_pred = tp_ref = 0
    return RoadCounts(len(P), len(R), tp_pred, tp_ref, 1)


@pytest.mark.parametrize("rho", [0, 1, 2.5, 3])
def test_matches_brute_force_pairwise_distances(rho):
    rng = np.random.default_rng(1)
    for _ in range(5):
        pred, ref = rng.random((20, 24)) < 0.05, rng.random((20, 24)) < 0.05
        assert road_counts(pred, ref, rho) == _brute_force(pred, ref, rho)


def test_empty_prediction_and_empty_reference():
    ref = _vertical_road()
    empty = np.zeros_like(ref)
    for rho in (0, 3):
        assert _scores(empty, ref, rho) == {"completeness": 0.0, "correctness": 0.0, "quality": 0.0}
        assert _scores(ref, empty, rho)["correctness"] == 0.0
        # nothing to find and nothing found: perfect, not a division error
        assert _scores(empty, empty, rho) == {"completeness": 100.0, "correctness": 100.0, "quality": 100.0}


def test_counts_are_summed_over_tiles_not_averaged():
    ref1, pred1 = _vertical_road(), _vertical_road()  # perfect tile, 96 px
    ref2 = np.zeros((32, 32), bool)
    ref2[5, 5:9] = True  # 4 px, missed entirely
    pred2 = np.zeros((32, 32), bool)
    totals = road_scores([(pred1, ref1), (pred2, ref2)], rhos=(0,))[0]
    assert totals.tiles == 2
    assert totals.scores()["completeness"] == pytest.approx(100 * 96 / 100)  # micro, not (100 + 0) / 2


def test_bad_input():
    with pytest.raises(InputError, match="boolean"):
        road_counts(np.zeros((4, 4)), np.zeros((4, 4), bool))
    with pytest.raises(InputError, match="shape"):
        road_counts(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    with pytest.raises(InputError, match="rho"):
        road_counts(np.zeros((4, 4), bool), np.zeros((4, 4), bool), -1)
    assert scores_from_counts(RoadCounts())["quality"] == 100.0
