"""The similarity benchmark end to end: config expansion, the evaluation loop, the CLI, lpips agreement."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lossnet.bench import similarity as sim
from lossnet.bench.similarity import bapps
from lossnet.bench.similarity.evaluate import distances_2afc
from lossnet.bench.similarity.synthetic import write_synthetic_bapps
from lossnet.errors import DataError, LossnetError, UnknownLayerError

BSD100 = (
    Path(os.environ.get("LOSSNET_SHARED", Path(__file__).resolve().parents[4] / "shared")) / "data" / "sr" / "bsd100"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = write_synthetic_bapps(
        tmp_path_factory.mktemp("bapps") / "BAPPS", n_2afc=10, n_jnd=10, source_dir=BSD100, seed=11
    )
    yield r
    bapps.clear_cache()


def _args(**kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sim.BENCHMARK.add_arguments(p)
    argv = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [flag, str(v)]
    return p.parse_args(argv)


# ---------------------------------------------------------------- configs
def _expand(args):
    return sim.BENCHMARK.partials_from_args(args)


def test_net_all_layers_esml_expands_to_56_runs():
    from lossnet.models.registry import PAPER_ARCHS

    configs = _expand(_args(net="all", layer="E,S,M,L", data="x"))
    assert len(configs) == 14 * 4 == len({(c["net"], c["layer"]) for c in configs})
    assert {c["net"] for c in configs} == set(PAPER_ARCHS) and {c["layer"] for c in configs} == set("ESML")


def test_layer_set_vs_separate_layers():
    (one,) = _expand(_args(net="vgg16", layer="relu1_2,relu2_2", data="x"))
    assert one["layer"] == "relu1_2,relu2_2"
    two = _expand(_args(net="vgg16", layer="relu1_2,relu2_2", data="x", separate_layers=True))
    assert [c["layer"] for c in two] == ["relu1_2", "relu2_2"]


def test_checkpoints_expand_in_natural_order(tmp_path):
    for name in ("epoch_10.pth", "epoch_2.safetensors", "notes.txt", "epoch_1.pt"):
        (tmp_path / name).write_bytes(b"")
    configs = _expand(_args(net="alexnet", layer="L", data="x", checkpoints=tmp_path))
    assert [Path(c["weights"]).name for c in configs] == ["epoch_1.pt", "epoch_2.safetensors", "epoch_10.pth"]
    with pytest.raises(LossnetError, match="exactly one --net"):
        _expand(_args(net="all", data="x", checkpoints=tmp_path))
    with pytest.raises(DataError, match="checkpoint folder not found"):
        _expand(_args(net="alexnet", data="x", checkpoints=tmp_path / "nope"))


def test_resolve_config_presets_and_errors(root):
    quick = sim.resolve_config({"preset": "quick", "data": str(root)})
    paper = sim.resolve_config({"preset": "paper", "data": str(root)})
    assert quick["max_items"] == 500 and paper["max_items"] is None
    assert paper["subsets_2afc"] == list(bapps.SUBSETS_2AFC_VAL) and paper["subsets_jnd"] == ["traditional", "cnn"]
    assert paper["distance"] == "spatial" and paper["benchmark"] == "similarity"
    lp = sim.resolve_config({"preset": "lpips-vgg", "data": str(root)})
    assert lp["net"] == "vgg16" and lp["metric_preset"] == "lpips-vgg"
    with pytest.raises(LossnetError, match="--data"):
        sim.resolve_config({"preset": "quick"})
    with pytest.raises(LossnetError, match="unknown distance"):
        sim.resolve_config({"data": str(root), "distance": "cosine"})
    with pytest.raises(UnknownLayerError, match="relu9"):
        sim.resolve_config({"data": str(root), "net": "alexnet", "layer": "relu9"})
    with pytest.raises(LossnetError, match="fixes --net"):
        sim.resolve_config({"preset": "lpips-alex", "data": str(root), "net": "vgg16"})
    with pytest.raises(LossnetError, match="only for the val split"):
        sim.resolve_config({"data": str(root), "split": "train", "subsets_jnd": ["cnn"]})
    with pytest.raises(LossnetError, match="unknown preset"):
        sim.resolve_config({"preset": "huge", "data": str(root)})


# ---------------------------------------------------------------- the evaluation loop
class _CountingFeatures:
    def __init__(self):
        self.images = 0

    def __call__(self, x):
        self.images += x.shape[0]
        return [x]


def _mse(fa, fb):
    return (fa[0] - fb[0]).pow(2).mean((1, 2, 3))


def test_three_backbone_passes_per_triplet_and_pixel_distances(root):
    data = bapps.load_subset(root, "2afc", "val", "cnn", progress=False)
    feats = _CountingFeatures()
    d0, d1 = distances_2afc(data, feats, _mse, batch_size=4, progress=False)
    assert feats.images == 3 * len(data)  # lpips's loop: 4 per triplet
    ref, p0 = data.images["ref"].double() / 255, data.images["p0"].double() / 255
    np.testing.assert_allclose(d0, (ref - p0).pow(2).mean((1, 2, 3)).numpy(), rtol=1e-5)
    assert d1.shape == (len(data),)


# ---------------------------------------------------------------- full runs
def test_sanity_shared_weights_spatial_L_well_above_chance(root, shared_weights_dir, tmp_path):
    for net in ("alexnet", "vgg16"):
        config = sim.resolve_config(
            {"data": str(root), "net": net, "layer": "L", "preset": "paper", "weights_dir": str(shared_weights_dir)}
        )
        result = sim.run(config, tmp_path / net, progress=False)
        m = result.metrics
        # humans prefer the mild distortion with h in [0.7, 1]: the ceiling is ~0.85, chance 0.5
        assert m["bapps/2afc"] > 0.75, (net, m)
        assert m["bapps/perceptual_score"] == pytest.approx(
            np.mean([m[f"bapps.{s}/2afc"] for s in bapps.SUBSETS_2AFC_VAL])
        )
        assert m["bapps/jnd_map"] == pytest.approx(np.mean([m["bapps.traditional/jnd_map"], m["bapps.cnn/jnd_map"]]))
        assert m["bapps/jnd_map"] > 0.6
        rows = (tmp_path / net / "subsets.csv").read_text().splitlines()
        assert rows[0] == "kind,subset,n,n_bad,score" and len(rows) == 1 + 6 + 2


def _load_lpips_alex_backbone(model, path):
    from safetensors.torch import load_file

    state = load_file(str(path))
    for k in range(1, 6):
        for name, module in getattr(model.net, f"slice{k}").named_children():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.data.copy_(state[f"features.{name}.weight"])
                module.bias.data.copy_(state[f"features.{name}.bias"])


@pytest.mark.parametrize("preset", [None, "lpips-alex"])
def test_pipeline_equals_lpips_evaluation(root, shared_weights_dir, tmp_path, preset):
    """Our 2AFC per subset == lpips's own loop (score_2afc_dataset) with lpips.LPIPS on the same data.

    preset None: alexnet relu1..relu5 + unweighted spatial == lpips.LPIPS(lpips=False) (its baseline);
    preset lpips-alex: calibrated LPIPS v0.1 == lpips.LPIPS(net="alex") with the package's heads.
    """
    import lpips
    from lpips.trainer import score_2afc_dataset

    weights = shared_weights_dir / "alexnet-imagenet1k-v1-features.safetensors"
    partial = {"data": str(root), "preset": preset or "paper", "weights": str(weights), "subsets_jnd": []}
    if preset is None:
        partial.update(net="alexnet", layer="relu1,relu2,relu3,relu4,relu5")
    ours = sim.run(sim.resolve_config(partial), tmp_path, progress=False).metrics

    model = lpips.LPIPS(net="alex", lpips=preset is not None, pretrained=True, pnet_rand=True, verbose=False).eval()
    _load_lpips_alex_backbone(model, weights)

    class Loader:
        def __init__(self, data):
            self.data = data

        def load_data(self):  # lpips's TwoAFCDataset: images in [-1, 1], judge (N,1,1,1)
            im = {k: v.float() / 255 * 2 - 1 for k, v in self.data.images.items()}
            return [
                {
                    "ref": im["ref"],
                    "p0": im["p0"],
                    "p1": im["p1"],
                    "judge": torch.from_numpy(self.data.judgments).view(-1, 1, 1, 1),
                }
            ]

    from lossnet.bench.similarity.evaluate import build_metric

    layers = sim.LPIPS_METRICS["lpips-alex"][1].split(",")
    metric = build_metric("alexnet", layers, "spatial", preset=preset, weights=str(weights))
    for subset in bapps.SUBSETS_2AFC_VAL:
        data = bapps.load_subset(root, "2afc", "val", subset, progress=False)
        with torch.no_grad():
            expected, verbose = score_2afc_dataset(Loader(data), model.forward)
        assert ours[f"bapps.{subset}/2afc"] == pytest.approx(expected, abs=1e-9), subset
        # and the distances themselves, not only the decisions
        d0, d1 = distances_2afc(data, metric.features, metric.compare, batch_size=7, progress=False)
        np.testing.assert_allclose(d0, verbose["d0s"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(d1, verbose["d1s"], rtol=1e-4, atol=1e-6)


def test_layer_all_writes_curve(root, tmp_path):
    config = sim.resolve_config(
        {
            "data": str(root),
            "net": "alexnet",
            "layer": "all",
            "weights": "none",
            "subsets_2afc": ["cnn"],
            "subsets_jnd": ["cnn"],
        }
    )
    result = sim.run(config, tmp_path, progress=False)
    from lossnet.bench.similarity.evaluate import feature_nodes

    nodes = feature_nodes("alexnet")
    assert nodes[0] == "features.0" and "features.11" in nodes and "classifier.1" not in nodes
    assert all(f"bapps/2afc@{n}" in result.metrics and f"bapps/jnd_map@{n}" in result.metrics for n in nodes)
    assert result.metrics["bapps/2afc_best"] == max(result.metrics[f"bapps/2afc@{n}"] for n in nodes)
    png = Path(result.artifacts["layers_plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(Path(result.artifacts["layers_csv"]).read_text().splitlines()) == 1 + len(nodes)
    # the per-subset rows name each subset's own best node (not a score of "layer all")
    for row in result.details:
        assert "score" not in row and row["best_node"] in nodes
        key = "2afc" if row["kind"] == "2afc" else "jnd_map"
        assert row["best_node_score"] == pytest.approx(
            result.metrics[f"bapps/{key}@{row['best_node']}"], abs=1e-12
        )  # one subset each

    # the curve's value at the L node equals a single-layer run at L
    single = sim.run(dict(config, layer="L"), tmp_path / "single", progress=False)
    assert result.metrics["bapps/2afc@features.11"] == pytest.approx(single.metrics["bapps/2afc"], abs=1e-12)


def test_checkpoint_series(root, tmp_path):
    from lossnet.bench.similarity import scores
    from lossnet.distances import compute_distance
    from lossnet.network import LossNetwork
    from lossnet.weights import save_safetensors

    ckpts = tmp_path / "ckpts"
    for seed in (1, 2):
        torch.manual_seed(seed)
        save_safetensors(
            ckpts / f"step_{seed}.safetensors", LossNetwork("alexnet", "L", weights=None).body.state_dict()
        )
    partials = _expand(_args(net="alexnet", layer="L", data=root, checkpoints=ckpts, subsets="cnn", jnd_subsets="none"))
    results = [
        sim.run(sim.resolve_config(dict(p, preset="paper")), tmp_path / str(i), progress=False)
        for i, p in enumerate(partials)
    ]
    assert [Path(r.config["weights"]).name for r in results] == ["step_1.safetensors", "step_2.safetensors"]
    # each result is that checkpoint's score, recomputed here directly from the network and the data
    data = bapps.load_subset(root, "2afc", "val", "cnn", progress=False)
    im = {k: v.float() / 255 for k, v in data.images.items()}
    for r in results:
        net = LossNetwork("alexnet", "L", weights=r.config["weights"])
        with torch.no_grad():
            f = {k: [net(v)["L"]] for k, v in im.items()}
            d0 = compute_distance("spatial", f["ref"], f["p0"]).double().numpy()
            d1 = compute_distance("spatial", f["ref"], f["p1"]).double().numpy()
        assert r.metrics["bapps.cnn/2afc"] == pytest.approx(scores.score_2afc(d0, d1, data.judgments), abs=1e-12)


# ---------------------------------------------------------------- CLI
def test_cli_full_pipeline_json_and_skip_bad(root, tmp_path, capsys, shared_weights_dir):
    from lossnet.cli.main import main

    out = tmp_path / "r.json"
    argv = [
        "bench",
        "similarity",
        "--data",
        str(root),
        "--net",
        "alexnet",
        "--layer",
        "L",
        "--weights-dir",
        str(shared_weights_dir),
    ]
    argv += ["--subsets", "traditional,cnn", "--out", str(tmp_path / "w"), "--json", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "bapps/2afc" in printed and "bapps.cnn/2afc" in printed
    payload = json.loads(out.read_text())
    assert payload["config"]["net"] == "alexnet" and payload["config"]["benchmark"] == "similarity"
    m = payload["metrics"]
    assert m["bapps/2afc"] == pytest.approx((m["bapps.traditional/2afc"] + m["bapps.cnn/2afc"]) / 2)
    assert "bapps/perceptual_score" not in m  # only four of the six val subsets

    # a corrupt file: one-line error naming it (exit 2); --skip-bad counts it instead
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    bad = broken / "2afc/val/cnn/ref/000005.png"
    bad.write_bytes(b"\x89PNG broken")
    argv2 = [
        "bench",
        "similarity",
        "--data",
        str(broken),
        "--net",
        "alexnet",
        "--layer",
        "L",
        "--weights",
        "none",
        "--subsets",
        "cnn",
    ]
    argv2 += ["--jnd-subsets", "none", "--out", str(tmp_path / "w2"), "--no-progress"]
    assert main(argv2 + ["--json", str(tmp_path / "bad.json")]) == 2
    assert str(bad) in capsys.readouterr().err
    assert main(argv2 + ["--skip-bad", "--json", str(tmp_path / "skip.json")]) == 0
    assert json.loads((tmp_path / "skip.json").read_text())["metrics"]["bapps/n_bad"] == 1.0


def test_result_carries_the_metric_signature(root, tmp_path):
    """The run's signature (stored with it in the results store) names the metric it scored with."""
    from lossnet.signature import parse_signature

    config = sim.resolve_config(
        {
            "data": str(root),
            "net": "alexnet",
            "layer": "M",
            "weights": "none",
            "distance": "mse",
            "subsets_2afc": ["cnn"],
            "subsets_jnd": [],
        }
    )
    sig = parse_signature(sim.run(config, tmp_path, progress=False).signature)
    assert (sig["arch"], sig["layers"], sig["distance"], sig["w"].split(":")[0]) == ("alexnet", "M", "mse", "none")


def test_random_init_runs_are_reproducible_from_the_seed(root, tmp_path):
    """``weights none`` draws the network from the config's seed: the same config (one run key)
    gives the same numbers whatever ran before it in the process."""
    config = sim.resolve_config(
        {
            "data": str(root),
            "net": "vgg16",
            "layer": "L",
            "weights": "none",
            "distance": "mse",
            "subsets_2afc": ["cnn"],
            "subsets_jnd": ["cnn"],
            "size": 32,
        }
    )
    first = sim.run(config, tmp_path / "a", progress=False).metrics
    torch.rand(1000)  # move the global generator on, as any earlier work in the process would
    again = sim.run(config, tmp_path / "b", progress=False).metrics
    assert first == again
