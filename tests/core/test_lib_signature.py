"""Reproducibility signatures: what they contain, what changes them and what does not."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

import lossnet
from lossnet.cli import main as cli_main
from lossnet.loss import PerceptualLoss, PerceptualMetric
from lossnet.signature import parse_signature, tensors_digest


def _metric(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("net", "alexnet")
    kw.setdefault("layers", ["L"])
    return PerceptualMetric(weights=None, **kw)


def test_fields():
    sig = _metric().signature
    f = parse_signature(sig)
    assert f["lossnet"] == lossnet.__version__ and f["arch"] == "alexnet" and f["layers"] == "L"
    assert f["distance"] == "spatial" and f["heads"] == "none" and f["range"] == "0,1:error" and f["norm"] == "imagenet"
    import torchvision

    assert f["tv"] == ".".join(torchvision.__version__.split("+")[0].split(".")[:2])
    assert f["w"].startswith("none:sha256:") and len(f["w"].split(":")[-1]) == 16


def test_same_config_same_signature_layer_names_canonical():
    from lossnet.models.layers import list_nodes

    list_nodes("alexnet")  # resolving an FX node name builds the model once (cached); keep the RNG streams aligned
    assert (
        _metric(layers=["L"]).signature
        == _metric(layers=["features.11"]).signature
        == _metric(layers=["relu5"]).signature
    )
    assert _metric(seed=0).signature != _metric(seed=1).signature  # other random weights


@pytest.mark.parametrize(
    "change,field",
    [
        (dict(input_range=(-1, 1)), "range"),
        (dict(range_check="clamp"), "range"),
        (dict(distance="mse"), "distance"),
        (dict(layer_weights=[0.5]), "lw"),
        (dict(normalize="none"), "norm"),
        (dict(loss_net_mode="train"), "mode"),
    ],
)
def test_every_option_that_changes_numbers_changes_the_signature(change, field):
    base, other = parse_signature(_metric().signature), parse_signature(_metric(**change).signature)
    assert base.get(field) != other.get(field)


def test_weights_digest_is_content_not_file(tmp_path, shared_weights_dir):
    """The same tensors from the full file and from a trimmed copy sign alike."""
    from safetensors.torch import load_file, save_file

    full = shared_weights_dir / "alexnet-imagenet1k-v1-features.safetensors"
    trimmed = tmp_path / "alex-trim.safetensors"
    save_file(
        {k: v for k, v in load_file(str(full)).items() if k.startswith(("features.0.", "features.3."))}, str(trimmed)
    )
    a = PerceptualMetric(net="alexnet", layers=["relu2"], weights=full)
    b = PerceptualMetric(net="alexnet", layers=["relu2"], weights=trimmed)
    c = PerceptualMetric(net="alexnet", layers=["relu2"], weights_dir=shared_weights_dir)
    da, db, dc = (parse_signature(m.signature)["w"].split(":", 1)[1] for m in (a, b, c))
    assert da == db == dc
    assert parse_signature(c.signature)["w"].startswith("imagenet:")


def test_presets_and_custom_heads():
    f = parse_signature(PerceptualMetric(preset="lpips-alex", weights=None).signature)
    assert f["preset"] == "lpips-alex" and f["heads"] == "lpips-v0.1" and f["distance"] == "spatial"
    heads = [torch.rand(64)]
    g = parse_signature(_metric(layers=["relu1"], channel_weights=heads).signature)
    assert g["heads"] == "custom:" + tensors_digest({"0": heads[0]})[:16]


def test_loss_has_signature_and_digest_follows_weights():
    fn = PerceptualLoss("alexnet", ["relu1"], weights=None)
    before = fn.signature
    assert "range=0,1:clamp" in before
    with torch.no_grad():
        fn.network.body.get_parameter("features.0.bias").add_(1.0)
    assert fn.signature != before


def test_cli_pair_prints_signature(tmp_path, capsys, monkeypatch):
    present = tuple(m for m in cli_main.SUBCOMMAND_MODULES if importlib.util.find_spec(m) is not None)
    monkeypatch.setattr(cli_main, "SUBCOMMAND_MODULES", present)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    code = cli_main.main(
        [
            "similarity",
            str(tmp_path / "a.png"),
            str(tmp_path / "b.png"),
            "--net",
            "alexnet",
            "--layer",
            "relu1",
            "--weights",
            "none",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0 and float(out) > 0
    assert err.startswith("signature: lossnet ") and "|alexnet|E|spatial|" in err
