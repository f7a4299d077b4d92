"""JND scored two ways: the mean of per-subset APs (LPIPS authors) and one AP over the pooled pairs
(Pihlgren et al.'s reference code) -- on a BAPPS folder where the two differ, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from lossnet.bench import similarity as sim
from lossnet.bench.similarity import scores
from lossnet.bench.similarity.synthetic import write_synthetic_bapps


def test_pooled_ap_by_hand():
    # subset A: d=[1,2], same=[1,0] -> the positive ranks first: AP 1
    # subset B: d=[0.5,3], same=[0,1] -> precision 1/2 at full recall: AP 0.5
    # pooled ranking 0.5(0) 1(1) 2(0) 3(1): recall 0.5 at precision 1/2, recall 1 at precision 1/2 -> AP 0.5
    assert scores.jnd_map([1, 2], [1, 0]) == pytest.approx(1.0)
    assert scores.jnd_map([0.5, 3], [0, 1]) == pytest.approx(0.5)
    assert scores.jnd_map([1, 2, 0.5, 3], [1, 0, 0, 1]) == pytest.approx(0.5)


def test_benchmark_reports_pooled_and_mean_jnd(tmp_path, monkeypatch):
    import lossnet.bench.similarity.evaluate as ev

    root = write_synthetic_bapps(tmp_path / "bapps", n_2afc=2, n_jnd=2, seed=1)
    for subset, same in (("cnn", [1.0, 0.0]), ("traditional", [0.0, 1.0])):
        for i, v in enumerate(same):
            np.save(root / "jnd" / "val" / subset / "same" / f"{i:06d}.npy", np.array([v]))
    fixed = {"cnn": np.array([1.0, 2.0]), "traditional": np.array([0.5, 3.0])}
    order = []

    def fake_distances_jnd(data, features, compare, **kw):
        subset = ("cnn", "traditional")[len(order)]
        order.append(subset)
        return fixed[subset]

    monkeypatch.setattr(ev, "distances_jnd", fake_distances_jnd)
    config = sim.resolve_config(
        {
            "data": str(root),
            "net": "alexnet",
            "layer": "relu1",
            "weights": "none",
            "device": "cpu",
            "subsets_2afc": ["cnn"],
            "subsets_jnd": ["cnn", "traditional"],
        }
    )
    m = sim.run(config, tmp_path / "w", progress=False).metrics
    assert order == ["cnn", "traditional"]
    assert m["bapps.cnn/jnd_map"] == pytest.approx(1.0) and m["bapps.traditional/jnd_map"] == pytest.approx(0.5)
    assert m["bapps/jnd_map"] == pytest.approx(0.75)
    assert m["bapps/jnd_map_pooled"] == pytest.approx(0.5)
