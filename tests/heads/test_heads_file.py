"""The heads file (issue #20): format, LPIPS v0.1 export, PerceptualMetric / CLI / bench use."""

from __future__ import annotations

import json

import pytest
import torch

import lossnet
from lossnet.errors import InputError, LossnetError, WeightsError
from lossnet.heads import Heads, export_lpips_heads, load_heads, save_heads
from lossnet.lpips_presets import PRESETS, lpips_heads


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_lpips_export_loads_back_bit_identically(net, tmp_path):
    path = export_lpips_heads(net, tmp_path / f"{net}.safetensors")
    h = load_heads(path)
    preset = PRESETS[f"lpips-{net}"]
    assert h.net == preset.arch and h.layers == list(preset.layers) and h.normalize == "imagenet"
    for a, b in zip(h.weights, lpips_heads(preset)):
        assert a.dtype == b.dtype and torch.equal(a, b)
    meta = h.metadata()
    assert meta["format"] == "lossnet-heads/1" and meta["channels"] == list(preset.channels) and meta["lossnet_version"]


def test_metric_with_exported_heads_equals_preset(tmp_path, shared_weights_dir, lpips_examples):
    """Exported heads give exactly the preset's distances (test_lpips_presets.py ties the preset to lpips)."""
    from lossnet.imageio import load_image

    path = export_lpips_heads("alex", tmp_path / "alex.safetensors")
    ref, p0 = (load_image(lpips_examples / f"ex_{n}.png")[None] for n in ("ref", "p0"))
    ours = lossnet.PerceptualMetric(heads=path, weights_dir=shared_weights_dir)
    preset = lossnet.PerceptualMetric(preset="lpips-alex", weights_dir=shared_weights_dir)
    assert torch.equal(ours(ref, p0), preset(ref, p0))
    assert torch.equal(ours.spatial_map(ref, p0), preset.spatial_map(ref, p0))
    assert "heads=file:" in ours.signature


def test_heads_conflicts_are_one_line_errors(tmp_path):
    path = export_lpips_heads("alex", tmp_path / "alex.safetensors")
    cases = [
        dict(net="vgg16"),
        dict(layers="features.1"),
        dict(preset="lpips-alex"),
        dict(distance="mse"),
        dict(normalize="none"),
        dict(channel_weights=[None] * 5),
    ]
    for kwargs in cases:
        with pytest.raises(InputError) as exc:
            lossnet.PerceptualMetric(heads=path, weights=None, **kwargs)
        assert "\n" not in str(exc.value) and str(path) in str(exc.value) or "preset" in str(exc.value)
    # agreeing explicit values are fine (layers by alias or node)
    m = lossnet.PerceptualMetric(
        heads=path, net="alexnet", layers="relu1,relu2,relu3,relu4,relu5", distance="spatial", weights=None
    )
    assert m.layers == tuple(PRESETS["lpips-alex"].layers)
    loss = lossnet.PerceptualLoss(heads=path, weights=None)
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    loss(x, torch.rand(1, 3, 64, 64)).backward()
    assert x.grad is not None and loss.distance.name == "spatial"


def test_bad_heads_files_are_refused(tmp_path):
    from lossnet.weights import save_safetensors

    with pytest.raises(WeightsError, match="not found"):
        load_heads(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsError, match="junk.safetensors"):
        load_heads(tmp_path / "junk.safetensors")
    save_safetensors(tmp_path / "plain.safetensors", {"head.0": torch.ones(3)})
    with pytest.raises(WeightsError, match="not a lossnet heads file"):
        load_heads(tmp_path / "plain.safetensors")
    with pytest.raises(WeightsError, match="non-negative"):
        save_heads(tmp_path / "neg.safetensors", Heads("alexnet", ["features.1"], [-torch.ones(64)]))
    # a file whose tensors were edited to be negative after writing is refused on load
    save_heads(tmp_path / "ok.safetensors", Heads("alexnet", ["features.1"], [torch.ones(64)]))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ok.safetensors"), "pt") as fh:
        meta = fh.metadata()
    save_safetensors(tmp_path / "edited.safetensors", {"head.0": -torch.ones(64)}, metadata=meta)
    with pytest.raises(WeightsError, match="non-negative"):
        load_heads(tmp_path / "edited.safetensors")
    with pytest.raises(WeightsError, match="channels"):  # metadata/tensor mismatch
        meta2 = json.loads(meta["lossnet_heads"])
        meta2["channels"] = [32]
        save_safetensors(
            tmp_path / "mism.safetensors", {"head.0": torch.ones(64)}, metadata={"lossnet_heads": json.dumps(meta2)}
        )
        load_heads(tmp_path / "mism.safetensors")


def test_cli_similarity_heads_equals_preset(tmp_path, shared_weights_dir, lpips_examples, capsys):
    from lossnet.cli.main import main

    path = tmp_path / "alex.safetensors"
    assert main(["heads", "export-lpips", "--net", "alex", "-o", str(path)]) == 0
    imgs = [str(lpips_examples / "ex_ref.png"), str(lpips_examples / "ex_p0.png")]
    capsys.readouterr()
    assert main(["similarity", *imgs, "--heads", str(path), "--weights-dir", str(shared_weights_dir)]) == 0
    with_heads = capsys.readouterr().out.strip()
    assert main(["similarity", *imgs, "--preset", "lpips-alex", "--weights-dir", str(shared_weights_dir)]) == 0
    assert capsys.readouterr().out.strip() == with_heads
    assert main(["similarity", *imgs, "--heads", str(path), "--net", "vgg16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is for net alexnet" in err
    assert main(["heads", "show", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["net"] == "alexnet" and len(shown["heads"]) == 5


def test_bench_similarity_heads_run_key_follows_content(tmp_path, shared_dir):
    from lossnet.bench.similarity import BENCHMARK
    from lossnet.bench.similarity.synthetic import write_synthetic_bapps
    from lossnet.runs.identity import run_key

    data = write_synthetic_bapps(tmp_path / "bapps", n_2afc=4, n_jnd=4)
    path = tmp_path / "h.safetensors"
    export_lpips_heads("alex", path)
    cfg = BENCHMARK.resolve_config({"data": str(data), "heads": str(path), "weights": "none"})
    assert cfg["net"] == "alexnet" and cfg["layer"] == ",".join(PRESETS["lpips-alex"].layers) and cfg["heads_sha256"]
    h = load_heads(path)
    save_heads(path, Heads(h.net, h.layers, [w * 2 for w in h.weights], h.normalize, h.meta))
    cfg2 = BENCHMARK.resolve_config({"data": str(data), "heads": str(path), "weights": "none"})
    assert run_key(cfg) != run_key(cfg2)
    with pytest.raises(LossnetError, match="is for --net alexnet"):
        BENCHMARK.resolve_config({"data": str(data), "heads": str(path), "net": "vgg16"})
    result = BENCHMARK.run(cfg2, tmp_path / "run", progress=False)
    assert 0 <= result.metrics["bapps/2afc"] <= 1


def test_random_resnet18_heads_fit_and_load(tmp_path, shared_dir):
    """The path of a user with downloaded weights: any backbone, E,S,M,L, fit -> file -> metric."""
    from lossnet.bench.heads import fit_heads
    from lossnet.bench.similarity.synthetic import write_synthetic_bapps

    root = write_synthetic_bapps(tmp_path / "bapps", n_2afc=8, subsets_2afc=("traditional",), split="train", seed=0)
    res = fit_heads(
        dict(
            net="resnet18",
            layers="E,S,M,L",
            weights="none",
            data=str(root),
            epochs=1,
            decay_epochs=1,
            batch_size=4,
            val="holdout",
            val_fraction=0.25,
        ),
        tmp_path / "r18.safetensors",
        progress=False,
    )
    assert res.status == "done" and res.val_2afc is not None
    h = load_heads(res.path)
    assert h.net == "resnet18" and h.layers == ["relu", "layer1", "layer2", "layer4"]
    assert [w.numel() for w in h.weights] == [64, 64, 128, 512] and all(bool((w >= 0).all()) for w in h.weights)
    assert h.meta["val_2afc"] == res.val_2afc and h.meta["epochs"] == 1
    torch.manual_seed(0)
    m = lossnet.PerceptualMetric(heads=res.path, weights=None)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    ref = lossnet.PerceptualMetric(net="resnet18", layers="E,S,M,L", channel_weights=h.weights, weights=None)
    ref.network.load_state_dict(m.network.state_dict())
    assert torch.equal(m(x, y), ref(x, y))


def test_perceptual_distance_takes_heads_and_rereads_a_rewritten_file(tmp_path):
    """``perceptual_distance(heads=FILE)`` equals ``PerceptualMetric(heads=FILE)``; a file rewritten in
    place (other weights) is not served from the functional API's cache."""
    import os

    from lossnet.network import LossNetwork
    from lossnet.weights import save_safetensors

    torch.manual_seed(0)
    wfile = tmp_path / "alexnet-random.safetensors"  # one fixed backbone for every metric built here
    save_safetensors(wfile, dict(LossNetwork("alexnet", "relu5", weights=None).body.state_dict()))
    path = export_lpips_heads("alex", tmp_path / "alex.safetensors")
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    d = lossnet.perceptual_distance(a, b, heads=path, weights=str(wfile))
    torch.testing.assert_close(d, lossnet.PerceptualMetric(heads=path, weights=str(wfile))(a, b), rtol=0, atol=0)
    h = load_heads(path)
    stat = path.stat()
    save_heads(path, Heads(h.net, h.layers, [2 * w for w in h.weights], h.normalize, h.meta))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a distinct mtime even on coarse clocks
    torch.testing.assert_close(lossnet.perceptual_distance(a, b, heads=path, weights=str(wfile)), 2 * d)
