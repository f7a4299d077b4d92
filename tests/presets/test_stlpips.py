"""ST-LPIPS presets (``stlpips-alex``, ``stlpips-vgg``; :mod:`lossnet.stlpips_preset`) against the
``stlpips-pytorch`` wheel (``stlpips.LPIPS(net=..., variant="shift_tolerant")``)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lossnet.imageio import load_image
from lossnet.loss import PerceptualMetric

pytest.importorskip("stlpips_pytorch", reason="needs lossnet[stlpips] (and IPython, torchsummary for the reference)")

NETS = {"stlpips-alex": "alex", "stlpips-vgg": "vgg"}


@pytest.fixture(scope="module")
def references():
    from stlpips_pytorch import stlpips

    return {p: stlpips.LPIPS(net=n, variant="shift_tolerant", verbose=False).eval() for p, n in NETS.items()}


def _reference(ref, a, b):
    with torch.no_grad():
        return ref(a, b, normalize=True).flatten()


@pytest.mark.parametrize("preset", list(NETS))
def test_lpips_example_triplet(preset, references, lpips_examples):
    ref_img = load_image(lpips_examples / "ex_ref.png")[None]
    others = torch.stack([load_image(lpips_examples / f"ex_p{i}.png") for i in (0, 1)])
    metric = PerceptualMetric(preset=preset)
    got = metric(ref_img.expand(2, -1, -1, -1), others)
    want = _reference(references[preset], ref_img.expand(2, -1, -1, -1), others)
    assert float((got - want).abs().max()) <= 1e-5, (got, want)
    assert float(want.min()) > 0.01


@pytest.mark.parametrize("preset", list(NETS))
def test_fifty_seeded_random_pairs(preset, references):
    g = torch.Generator().manual_seed(2022)
    a, b = torch.rand(50, 3, 64, 64, generator=g), torch.rand(50, 3, 64, 64, generator=g)
    t = torch.rand(50, 1, 1, 1, generator=g)
    b = t * a + (1 - t) * b  # blends from identical to unrelated: a range of distances
    metric = PerceptualMetric(preset=preset)
    got, want = metric(a, b), _reference(references[preset], a, b)
    assert float((got - want).abs().max()) <= 1e-5
    assert float(want.max() - want.min()) > 0.02


def test_gradient_matches_the_reference(references):
    from lossnet.loss import PerceptualLoss

    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 48, 48, generator=g), torch.rand(2, 3, 48, 48, generator=g)
    x = a.clone().requires_grad_(True)
    PerceptualLoss(preset="stlpips-alex", reduction="sum")(x, b).backward()
    y = a.clone().requires_grad_(True)
    references["stlpips-alex"](y, b, normalize=True).sum().backward()
    assert torch.allclose(x.grad, y.grad, atol=1e-6, rtol=1e-4)


def test_backbone_is_antialiased_and_named_like_torchvision():
    metric = PerceptualMetric(preset="stlpips-alex")
    body = metric.network.body
    assert metric.network.nodes == ("features.1", "features.4", "features.7", "features.9", "features.11")
    assert type(body.get_submodule("features.0")).__name__ == "ConvBlur" and body.get_submodule(
        "features.0"
    ).stride == (1, 1)
    assert type(body.get_submodule("features.2")).__name__ == "MaxBlurPool"
    assert "stlpips_shift_tolerant" not in metric.network.weights_source
    assert metric.network.weights_source.endswith("alex_shift_tolerant.pth")
    assert "|alexnet:blurpool|" in metric.signature and "heads=stlpips-0.0.2" in metric.signature


def test_tiled_stlpips_equals_whole():
    # reflect padding inside the blur pools: the halo covers the reflected border too
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 3, 150, 230, generator=g), torch.rand(1, 3, 150, 230, generator=g)
    for preset in NETS:
        whole, tiled = PerceptualMetric(preset=preset), PerceptualMetric(preset=preset, tile=64)
        assert abs(float(tiled(a, b)[0]) - float(whole(a, b)[0])) <= 1e-6


def test_lossnet_reads_the_weight_file_without_importing_the_wheel():
    code = (
        "import sys, lossnet, torch\nfrom lossnet.loss import PerceptualMetric\n"
        "m = PerceptualMetric(preset='stlpips-vgg')\n"
        "assert not any(k.split('.')[0] in ('stlpips_pytorch', 'IPython', 'torchsummary') for k in sys.modules), "
        "[k for k in sys.modules if 'stlpips' in k or 'IPython' in k]\nprint('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_missing_extra_is_one_line(monkeypatch):
    from lossnet import extras
    from lossnet.extras import MissingExtraError

    monkeypatch.setattr(extras, "missing", lambda modules: list(modules))
    with pytest.raises(
        MissingExtraError, match=r'preset .stlpips-alex. needs the \[stlpips\] extra: pip install "lossnet\[stlpips\]"'
    ):
        PerceptualMetric(preset="stlpips-alex")
