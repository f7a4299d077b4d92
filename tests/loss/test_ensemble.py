"""Transform ensembles (``ensemble=`` on PerceptualMetric / PerceptualLoss, :mod:`lossnet.loss.ensemble`)."""

from __future__ import annotations

import pytest
import torch

from lossnet.errors import InputError
from lossnet.loss import PerceptualLoss, PerceptualMetric
from lossnet.loss.ensemble import Ensemble, Transform, ensemble_stats

IDENTITY = dict(n=1, max_shift=0, flips=False, swap=False, scale=None, colour=False)


def _pair(seed=0, size=(48, 40)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, *size, generator=g), torch.rand(2, 3, *size, generator=g)


def _metric(**kw):
    torch.manual_seed(0)  # the same random backbone in every metric
    return PerceptualMetric(net="alexnet", layers=["relu2", "relu3"], distance="spatial", weights=None, **kw)


def test_same_seed_same_value_other_seed_other_value():
    a, b = _pair()
    v1 = _metric(ensemble=dict(n=4, seed=3))(a, b)
    v2 = _metric(ensemble=dict(n=4, seed=3))(a, b)
    v3 = _metric(ensemble=dict(n=4, seed=4))(a, b)
    assert torch.equal(v1, v2)
    assert float((v1 - v3).abs().max()) > 1e-4


def test_identical_images_give_zero():
    a, _ = _pair(1)
    assert float(_metric(ensemble=6)(a, a.clone()).abs().max()) == 0.0


def test_identity_transform_equals_the_plain_metric():
    a, b = _pair(2)
    assert torch.allclose(_metric(ensemble=IDENTITY)(a, b), _metric()(a, b), rtol=0, atol=1e-7)
    assert torch.allclose(_metric(ensemble=IDENTITY)(a, b, per_layer=True), _metric()(a, b, per_layer=True), atol=1e-7)


def test_mean_is_the_average_of_the_transformed_pairs():
    # independent of Ensemble.forward: apply each drawn transform by hand and average
    a, b = _pair(3)
    ens = Ensemble(5, seed=11)
    plain, metric = _metric(), _metric(ensemble=ens)
    by_hand = torch.stack([plain(t(a), t(b)) for t in ens.transforms]).mean(0)
    assert torch.allclose(metric(a, b), by_hand, atol=1e-7)
    mean, std = ensemble_stats(metric, a, b)
    assert torch.allclose(mean, by_hand, atol=1e-7)
    assert std.shape == (2,) and float(std.min()) > 0
    assert torch.allclose(std, torch.stack([plain(t(a), t(b)) for t in ens.transforms]).std(0), atol=1e-7)


def test_transforms_are_the_ones_described():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) / 216
    assert torch.equal(Transform()(x), x)
    assert torch.equal(Transform(flip_h=True)(x), x.flip(-1))
    assert torch.equal(Transform(swap=True)(x), x.transpose(-1, -2))
    assert torch.equal(Transform(perm=(2, 0, 1))(x), x[:, [2, 0, 1]])
    shifted = Transform(shift=(1, -2), max_shift=2)(x)
    assert torch.equal(shifted[..., 0:5, 2:6], x[..., 1:6, 0:4])  # content moves up 1, right 2
    assert Transform(scale=0.5)(x).shape[-2:] == (3, 3)
    drawn = Ensemble(20, seed=0).transforms
    assert any(t.flip_h for t in drawn) and any(t.swap for t in drawn) and any(t.shift != (0, 0) for t in drawn)
    assert all(0.8 <= t.scale <= 1.25 and all(0.8 <= g <= 1 for g in t.gain) for t in drawn)


def test_loss_gradient_flows_and_mask_is_transformed():
    torch.manual_seed(0)
    loss_fn = PerceptualLoss("vgg16", ["relu2_2"], weights=None, ensemble=dict(n=3, seed=1))
    a, b = _pair(4)
    pred = a.clone().requires_grad_(True)
    loss = loss_fn(pred, b)
    loss.backward()
    assert loss.ndim == 0 and pred.grad is not None and float(pred.grad.abs().sum()) > 0
    masked = loss_fn(a, b, mask=torch.ones(1, 1, *a.shape[-2:]))
    assert torch.allclose(masked, loss.detach(), atol=1e-6)  # an all-ones mask changes nothing
    with pytest.raises(InputError, match="target image"):
        loss_fn(a, loss_fn.target_features(b))


def test_signature_names_the_ensemble_and_bad_values_are_refused():
    assert "|ens=4:3:" in _metric(ensemble=dict(n=4, seed=3)).signature
    assert "ens=" not in _metric().signature
    for bad in (0, "8", 2.5):
        with pytest.raises(InputError):
            _metric(ensemble=bad)
