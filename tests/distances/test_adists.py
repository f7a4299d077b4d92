"""A-DISTS (``preset="adists"``, ``distance="adists"``; :mod:`lossnet.adists`) against golden values
of the official script.

Provenance of GOLDEN: https://github.com/dingkeyan93/A-DISTS at commit 3d20592 (2024-03-07), file
``ADISTS(MM21).py`` (sha256 134b195d8e47f2ea0ce02444fe0513ac818296aa5d1d63c4551ce1cc8b5362de), run
unmodified once on 2026-12-07 in a scratch folder outside git (torch 2.13.0+cpu, torchvision
0.28.0, CPU, float32), ``ADISTS()(ref, dist, as_loss=False)``, images read by the script's own
``prepare_image`` (PIL -> ``ToTensor``, no resize). Adaptations, weight loading only: (1) ``import
lossnet`` before torchvision (its CPU op-schema shim, no numerical effect); (2)
``torchvision.models.vgg16`` replaced by ``vgg16(weights=None)`` + ../shared/weights/
vgg16-imagenet1k-v1-features.safetensors (torchvision's IMAGENET1K_V1 features, what the script's
``vgg16(pretrained=True)`` downloads). Check of the adaptation: on the repository's own example
(images/gt.png vs images/shan08.png) it gives 0.66163, where the script's comment says
"score: 0.662". The runner is quoted in /work/notes/issue-30b.md.
"""

from __future__ import annotations

import pytest
import torch

from lossnet.distances import compute_distance
from lossnet.errors import InputError
from lossnet.imageio import load_image
from lossnet.loss import PerceptualLoss, PerceptualMetric

GOLDEN = {
    "ex_ref-ex_p0": 0.6414780616760254,
    "ex_ref-ex_p1": 0.5096309781074524,
    "seed0-64x64-t0.0": 0.3103627562522888,
    "seed1-96x128-t0.5": 0.3092649579048157,
    "seed2-160x160-t0.8": 0.1275653839111328,
    "seed3-256x192-t0.3": 0.29690486192703247,
}
#: (seed, size, blend) of the random pairs, generated exactly as the runner did
RANDOM = [(0, (64, 64), 0.0), (1, (96, 128), 0.5), (2, (160, 160), 0.8), (3, (256, 192), 0.3)]


def _random_pair(seed, size, t):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(1, 3, *size, generator=g)
    b = torch.rand(1, 3, *size, generator=g)
    return a, t * a + (1 - t) * b


@pytest.fixture(scope="module")
def metric(shared_weights_dir):
    return PerceptualMetric(preset="adists", weights_dir=shared_weights_dir)


def test_lpips_examples_match_the_official_script(metric, lpips_examples):
    ref = load_image(lpips_examples / "ex_ref.png")[None]
    for i in (0, 1):
        got = float(metric(ref, load_image(lpips_examples / f"ex_p{i}.png")[None])[0])
        assert abs(got - GOLDEN[f"ex_ref-ex_p{i}"]) <= 1e-5, (i, got)


@pytest.mark.parametrize("seed,size,t", RANDOM)
def test_seeded_random_pairs_match_the_official_script(metric, seed, size, t):
    # 64x64 uses global statistics from relu3_3 on; 256x192 uses windows down to relu4_3
    a, b = _random_pair(seed, size, t)
    got = float(metric(a, b)[0])
    assert abs(got - GOLDEN[f"seed{seed}-{size[0]}x{size[1]}-t{t}"]) <= 1e-5, got


def test_properties_without_weights():
    torch.manual_seed(0)
    m = PerceptualMetric(preset="adists", weights=None)
    a, b = _random_pair(5, (80, 72), 0.5)
    assert float(m(a, a.clone())[0]) == pytest.approx(0.0, abs=1e-6)
    terms = m(a, b, per_layer=True)
    assert terms.shape == (1, 6) and torch.allclose(terms.sum(1), m(a, b), atol=1e-7)
    assert float((m(a, b) - m(b, a)).abs()) > 1e-5  # the reference sets the adaptive weights: not symmetric
    with pytest.raises(InputError, match="masks"):
        m(a, b, mask=torch.ones(1, 1, 80, 72))
    with pytest.raises(InputError, match="6 DISTS layers"):
        compute_distance("adists", [a], [b])
    with pytest.raises(InputError, match="cannot be accumulated over tiles"):
        PerceptualMetric(preset="adists", weights=None, tile=64)


def _six(seed, dtype=torch.float64, side=(22, 4)):
    # six layers like DISTS's (3, 64, ...) but small: layer 0 and 1 at 22x22 use the 21x21 window,
    # the deeper ones global statistics
    g = torch.Generator().manual_seed(seed)
    shapes = [
        (1, 3, side[0], side[0]),
        (1, 2, side[0], side[0]),
        (1, 2, 8, 8),
        (1, 2, side[1], side[1]),
        (1, 2, 3, 3),
        (1, 2, 2, 2),
    ]
    return [torch.rand(s, generator=g, dtype=dtype) + 0.1 for s in shapes]


def test_gradcheck_and_layer_weights():
    fa, fb = _six(7), _six(8)
    fa = [f.requires_grad_() for f in fa]
    assert torch.autograd.gradcheck(lambda *fs: compute_distance("adists", list(fs[:6]), list(fs[6:])), (*fa, *fb))
    w = [1.0, 2.0, 0.5, 1.0, 0.0, 3.0]
    per = compute_distance("adists", fa, fb, per_layer=True)
    torch.testing.assert_close(
        compute_distance("adists", fa, fb, layer_weights=w), (per * torch.tensor(w, dtype=per.dtype)).sum(1)
    )


def test_low_precision_features_computed_in_float32():
    fa, fb = _six(9, torch.float32), _six(10, torch.float32)
    d = compute_distance("adists", [f.bfloat16() for f in fa], [f.bfloat16() for f in fb])
    assert d.dtype == torch.float32
    torch.testing.assert_close(
        d, compute_distance("adists", [f.bfloat16().float() for f in fa], [f.bfloat16().float() for f in fb])
    )


def test_trains_as_a_loss():
    torch.manual_seed(0)
    loss_fn = PerceptualLoss(preset="adists", weights=None)
    a, b = _random_pair(6, (48, 48), 0.2)
    x = a.clone().requires_grad_(True)
    loss = loss_fn(x, b)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    # the target is the reference whose content sets the adaptive weights
    metric = PerceptualMetric(preset="adists", weights=None)
    metric.load_state_dict(loss_fn.state_dict())
    assert float(loss.detach()) == pytest.approx(float(metric(b, a)[0]), abs=1e-6)
    assert abs(float(loss.detach()) - float(metric(a, b)[0])) > 1e-5
