"""Distances on hand-computed examples, their invariances, gradients and errors."""

from __future__ import annotations

import pytest
import torch

from lossnet.distances import DISTANCES, Distance, compute_distance, gram_matrix, unit_normalize
from lossnet.errors import InputError

#: The distances these generic tests apply to: A-DISTS needs the six DISTS layers together
#: (layer 0 reuses layer 1's adaptive weights); tests/distances/test_adists.py covers the same properties.
GENERIC = [n for n in DISTANCES if n != "adists"]


def t(values, shape):
    return torch.tensor(values, dtype=torch.float64).reshape(shape)


# ---- closed-form examples -------------------------------------------------------------------


def test_spatial_hand_computed():
    # position (0,0): identical (3,4) vs (3,4) -> 0; position (0,1): (1,0) vs (0,2) -> unit (1,0) vs (0,1) -> 2
    a = t([3, 1, 4, 0], (1, 2, 1, 2))
    b = t([3, 0, 4, 2], (1, 2, 1, 2))
    assert compute_distance("spatial", [a], [b]).item() == pytest.approx(1.0, abs=1e-12)  # mean of (0, 2)
    # channel weights (w1, w2) = (3, 1): position (0,1) -> 3*1 + 1*1 = 4 -> mean 2
    w = torch.tensor([3.0, 1.0])
    assert compute_distance("spatial", [a], [b], channel_weights=[w]).item() == pytest.approx(2.0, abs=1e-12)
    # lpips's 1x1-conv weight shape is accepted too
    assert compute_distance("spatial", [a], [b], channel_weights=[w.view(1, 2, 1, 1)]).item() == pytest.approx(2.0)


def test_mse_l1_hand_computed():
    a = t([1, 2, 3, 4], (1, 1, 2, 2))
    b = torch.zeros_like(a)
    assert compute_distance("mse", [a], [b]).item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    assert compute_distance("l1", [a], [b]).item() == pytest.approx((1 + 2 + 3 + 4) / 4)


def test_gram_hand_computed():
    # F = [[1, 2], [0, 1]] (C=2, H*W=2): F F^T = [[5, 2], [2, 1]], / (C*H*W = 4)
    a = t([1, 2, 0, 1], (1, 2, 1, 2))
    g = gram_matrix(a)[0]
    torch.testing.assert_close(g, t([1.25, 0.5, 0.5, 0.25], (2, 2)))
    b = torch.zeros_like(a)
    assert compute_distance("gram", [a], [b]).item() == pytest.approx(1.25**2 + 2 * 0.5**2 + 0.25**2)


def test_meanpool_hand_computed_and_invariances():
    # channel means (2, 0) vs (0, 5) -> unit (1, 0) vs (0, 1) -> squared L2 = 2
    a = t([4, 0, 0, 0], (1, 2, 1, 2))
    b = t([0, 0, 5, 5], (1, 2, 1, 2))
    assert compute_distance("meanpool", [a], [b]).item() == pytest.approx(2.0)
    x = torch.rand(3, 5, 4, 4, dtype=torch.float64)
    # scale of the mean vector and the spatial arrangement do not matter
    assert compute_distance("meanpool", [x], [2.5 * x]).abs().max().item() < 1e-12
    perm = torch.randperm(16)
    shuffled = x.flatten(2)[:, :, perm].reshape_as(x)
    assert compute_distance("meanpool", [x], [shuffled]).abs().max().item() < 1e-12
    # whereas the spatial distance sees the shuffle
    assert compute_distance("spatial", [x], [shuffled]).min().item() > 1e-3


def test_layer_weights_sum():
    g = torch.Generator().manual_seed(0)
    fa = [torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 5, 2, 2, generator=g)]
    fb = [torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 5, 2, 2, generator=g)]
    for name in GENERIC:
        d1 = compute_distance(name, fa[:1], fb[:1])
        d2 = compute_distance(name, fa[1:], fb[1:])
        both = compute_distance(name, fa, fb, layer_weights=[2.0, 0.5])
        torch.testing.assert_close(both, 2.0 * d1 + 0.5 * d2)
        assert both.shape == (2,)


@pytest.mark.parametrize("name", GENERIC)
def test_identical_is_zero_and_different_positive(name):
    x = torch.rand(4, 6, 5, 5)
    y = torch.rand(4, 6, 5, 5)
    assert torch.equal(compute_distance(name, [x], [x.clone()]), torch.zeros(4))
    assert (compute_distance(name, [x], [y]) > 0).all()


def test_spatial_unit_normalisation_matches_lpips_formula_away_from_zero():
    x = torch.randn(3, 7, 4, 4, dtype=torch.float64)
    lpips_style = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
    torch.testing.assert_close(unit_normalize(x), lpips_style, atol=1e-12, rtol=1e-9)


# ---- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GENERIC)
def test_finite_gradient_for_identical_inputs_with_zero_vectors(name):
    f = torch.rand(2, 4, 3, 3, dtype=torch.float64)
    f[:, :, 0, 0] = 0.0  # a dead position: the case where lpips's normalisation gives NaN
    f[1] = 0.0  # and an all-zero sample
    a = f.clone().requires_grad_()
    compute_distance(name, [a], [f.clone()]).sum().backward()
    assert torch.isfinite(a.grad).all()
    assert a.grad.abs().max().item() == 0.0  # identical inputs are a minimum


@pytest.mark.parametrize("name", GENERIC)
def test_gradcheck(name):
    g = torch.Generator().manual_seed(1)
    a = (torch.rand(2, 3, 2, 2, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    b = (torch.rand(2, 3, 2, 2, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    c = (torch.rand(2, 2, 1, 3, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    d = (torch.rand(2, 2, 1, 3, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b, c, d: compute_distance(name, [a, c], [b, d], layer_weights=[1.0, 0.7]), (a, b, c, d)
    )


def test_gradcheck_spatial_channel_weights():
    a = torch.rand(1, 3, 2, 2, dtype=torch.float64).requires_grad_()
    b = torch.rand(1, 3, 2, 2, dtype=torch.float64).requires_grad_()
    w = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: compute_distance("spatial", [a], [b], channel_weights=[w]), (a, b))


def test_low_precision_features_computed_in_float32():
    a, b = torch.rand(2, 4, 3, 3), torch.rand(2, 4, 3, 3)
    for name in GENERIC:
        d = compute_distance(name, [a.bfloat16()], [b.bfloat16()])
        assert d.dtype == torch.float32
        ref = compute_distance(name, [a.bfloat16().float()], [b.bfloat16().float()])
        torch.testing.assert_close(d, ref)


# ---- module form and errors -----------------------------------------------------------------


def test_module_form_matches_functional_and_moves_weights():
    w = [torch.tensor([1.0, 2.0, 0.5])]
    m = Distance("spatial", layer_weights=[3.0], channel_weights=w)
    a, b = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(m([a], [b]), compute_distance("spatial", [a], [b], [3.0], w))
    assert "channel_weight_0" in dict(m.named_buffers())
    assert m.double()([a.double()], [b.double()]).dtype == torch.float64


def test_errors():
    a = torch.rand(1, 3, 4, 4)
    with pytest.raises(InputError, match="unknown distance 'cosine'"):
        compute_distance("cosine", [a], [a])
    with pytest.raises(InputError, match="single tensor"):
        compute_distance("mse", a, a)
    with pytest.raises(InputError, match="layers"):
        compute_distance("mse", [a, a], [a])
    with pytest.raises(InputError, match="shapes differ"):
        compute_distance("mse", [a], [torch.rand(1, 3, 5, 4)])
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        compute_distance("mse", [a[0]], [a[0]])
    with pytest.raises(InputError, match="only to the 'spatial'"):
        compute_distance("mse", [a], [a], channel_weights=[torch.ones(3)])
    with pytest.raises(InputError, match=r"shape \(3,\)"):
        compute_distance("spatial", [a], [a], channel_weights=[torch.ones(4)])
    with pytest.raises(InputError, match="non-negative"):
        compute_distance("spatial", [a], [a], channel_weights=[-torch.ones(3)])
    with pytest.raises(InputError, match="2 layer weights for 1"):
        compute_distance("l1", [a], [a], layer_weights=[1.0, 2.0])
