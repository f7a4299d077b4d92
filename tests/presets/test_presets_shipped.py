"""The preset weights shipped inside lossnet equal the reference wheels' tensors, element for element.

``src/lossnet/data/presets/*.safetensors`` are written by ``scripts/convert_presets.py`` from the
``lpips`` and ``dists-pytorch`` wheels; here both sides are read independently (the wheel's file
with ``torch.load(weights_only=True)``, ours with safetensors) and compared with ``torch.equal``
(same keys, shapes, dtype and bits).
"""

import hashlib
import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import lossnet  # noqa: F401  (torchvision hook first)

PRESETS = Path(lossnet.__file__).parent / "data" / "presets"


def _wheel_file(package: str, inner: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None:
        pytest.skip(f"{package} is not installed (the test extra installs it)")
    return Path(list(spec.submodule_search_locations)[0]) / inner


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_shipped_lpips_heads_equal_the_lpips_wheel(net):
    wheel = _wheel_file("lpips", f"weights/v0.1/{net}.pth")
    ref = torch.load(wheel, map_location="cpu", weights_only=True)
    ours = load_file(str(PRESETS / f"lpips-v0.1-{net}.safetensors"))
    assert sorted(ours) == sorted(ref)
    for key in ref:
        assert ours[key].dtype == ref[key].dtype and torch.equal(ours[key], ref[key]), key
    with safe_open(str(PRESETS / f"lpips-v0.1-{net}.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["source_sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert meta["license"] == "BSD-2-Clause"


def test_shipped_dists_alpha_beta_equal_the_dists_wheel():
    wheel = _wheel_file("DISTS_pytorch", "weights.pt")
    ref = torch.load(wheel, map_location="cpu", weights_only=True)
    ours = load_file(str(PRESETS / "dists-alpha-beta.safetensors"))
    assert sorted(ours) == sorted(ref) == ["alpha", "beta"]
    for key in ref:
        assert ours[key].dtype == ref[key].dtype and torch.equal(ours[key], ref[key]), key


def test_presets_read_the_shipped_files_not_the_wheels(monkeypatch):
    """With lpips and DISTS_pytorch made unimportable, the preset tensors are still there, and equal
    to the wheels' (read before hiding them)."""
    from lossnet import dists_preset, lpips_presets

    ref = torch.load(_wheel_file("lpips", "weights/v0.1/alex.pth"), map_location="cpu", weights_only=True)
    ref_d = torch.load(_wheel_file("DISTS_pytorch", "weights.pt"), map_location="cpu", weights_only=True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("lpips", "DISTS_pytorch") else real_find_spec(name, *a),
    )
    lpips_presets._load_heads.cache_clear()
    dists_preset._load.cache_clear()
    heads = lpips_presets.lpips_heads("lpips-alex")
    for i, h in enumerate(heads):
        assert torch.equal(h, ref[f"lin{i}.model.1.weight"].reshape(-1))
    w = dists_preset.dists_channel_weights()
    alpha, beta = ref_d["alpha"].reshape(-1), ref_d["beta"].reshape(-1)
    total = alpha.sum() + beta.sum()
    assert torch.equal(torch.cat([x[0] for x in w]), torch.cat(torch.split(alpha / total, dists_preset.DISTS_CHANNELS)))
    assert torch.equal(torch.cat([x[1] for x in w]), beta / total)
    assert lpips_presets.lpips_version() == "0.1.4" and dists_preset.dists_version() == "0.1"
