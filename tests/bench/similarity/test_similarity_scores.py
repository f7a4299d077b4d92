"""2AFC, JND mAP and the perceptual score: hand-computed examples and the lpips package's own code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossnet.bench.similarity import scores
from lossnet.errors import InputError


# ---------------------------------------------------------------- hand-computed examples
def test_2afc_hand_example_with_tie():
    # d0<d1 -> 1-h = 0.8; d1<d0 -> h = 0.9; tie -> 0.5
    s = scores.two_afc_scores([1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [0.2, 0.9, 0.4])
    np.testing.assert_allclose(s, [0.8, 0.9, 0.5])
    assert scores.score_2afc([1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [0.2, 0.9, 0.4]) == pytest.approx(2.2 / 3)


def test_2afc_perfect_and_inverted_metric():
    h = np.array([0.0, 1.0, 0.0, 1.0])
    d_small, d_large = np.array([0.1, 0.9, 0.2, 0.8]), np.array([0.9, 0.1, 0.8, 0.2])
    assert scores.score_2afc(d_small, d_large, h) == 1.0
    assert scores.score_2afc(d_large, d_small, h) == 0.0


def test_voc_ap_hand_example():
    # envelope: [1, 1, 2/3, 2/3, 0]; recall steps 0->0.5 (p=1) and 0.5->1 (p=2/3)
    assert scores.voc_ap([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_jnd_map_hand_example():
    # ranked: same=1 (TP=1,FP=0), same=0 (TP=1,FP=1), same=1 (TP=2,FP=1)
    # precision 1, 1/2, 2/3; recall 1/2, 1/2, 1 -> AP = 1/2*1 + 1/2*2/3
    assert scores.jnd_map([0.3, 0.1, 0.2], [1.0, 1.0, 0.0]) == pytest.approx(0.5 + 1 / 3)


def test_jnd_map_perfect_ranking_is_one():
    assert scores.jnd_map([0.1, 0.2, 0.8, 0.9], [1.0, 1.0, 0.0, 0.0]) == pytest.approx(1.0)


def test_perceptual_score_is_mean_over_six_val_subsets():
    per = {"traditional": 0.7, "cnn": 0.8, "superres": 0.6, "deblur": 0.5, "color": 0.9, "frameinterp": 0.4}
    assert scores.perceptual_score(per) == pytest.approx(3.9 / 6)
    del per["color"]
    assert np.isnan(scores.perceptual_score(per))


def test_shape_errors():
    with pytest.raises(InputError, match="same length"):
        scores.two_afc_scores([1.0, 2.0], [1.0], [0.5, 0.5])
    with pytest.raises(InputError, match="same length"):
        scores.jnd_map([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="one-dimensional"):
        scores.two_afc_scores(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)))


# ---------------------------------------------------------------- against the lpips package
class _StubLoader:
    """Mimics lpips's CustomDatasetDataLoader: ``load_data()`` yields batches of dicts."""

    def __init__(self, batches):
        self.batches = batches

    def load_data(self):
        return self.batches


def _distance_is_second(a, b):
    # The stub "images" carry the distances themselves, so lpips's loop combines exactly our d0/d1.
    return b


def _random_case(rng, n, ties):
    d0 = rng.random(n)
    d1 = rng.random(n)
    if ties:  # coarse values give many exact ties, in d0 vs d1 and among JND distances
        d0, d1 = np.round(d0, 1), np.round(d1, 1)
    h = rng.random(n)
    h[rng.random(n) < 0.2] = rng.choice([0.0, 1.0, 0.5])
    return d0, d1, h


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_2afc_equals_lpips_score_2afc_dataset(seed, ties):
    from lpips.trainer import score_2afc_dataset

    rng = np.random.default_rng(seed)
    d0, d1, h = _random_case(rng, 203, ties)
    batches = []
    for s in range(0, len(d0), 50):
        sl = slice(s, s + 50)
        batches.append(
            {
                "ref": torch.zeros(len(d0[sl])),
                "p0": torch.from_numpy(d0[sl]),
                "p1": torch.from_numpy(d1[sl]),
                "judge": torch.from_numpy(h[sl]).view(-1, 1, 1, 1),
            }
        )
    expected, verbose = score_2afc_dataset(_StubLoader(batches), _distance_is_second)
    assert scores.score_2afc(d0, d1, h) == pytest.approx(expected, abs=1e-9)
    np.testing.assert_allclose(scores.two_afc_scores(d0, d1, h), verbose["scores"], atol=1e-12)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jnd_map_equals_lpips_score_jnd_dataset(seed, ties):
    from lpips.trainer import score_jnd_dataset

    rng = np.random.default_rng(100 + seed)
    ds, _, sames = _random_case(rng, 157, ties)
    batches = [
        {
            "p0": torch.zeros(len(ds[s : s + 50])),
            "p1": torch.from_numpy(ds[s : s + 50]),
            "same": torch.from_numpy(sames[s : s + 50]).view(-1, 1, 1, 1),
        }
        for s in range(0, len(ds), 50)
    ]
    expected, _ = score_jnd_dataset(_StubLoader(batches), _distance_is_second)
    assert scores.jnd_map(ds, sames) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_voc_ap_equals_lpips_voc_ap(seed):
    import lpips

    rng = np.random.default_rng(seed)
    rec = np.sort(rng.random(40))
    prec = rng.random(40)
    rec[5:9] = rec[5]  # repeated recall values
    assert scores.voc_ap(rec, prec) == pytest.approx(float(lpips.voc_ap(rec, prec)), abs=1e-12)
