"""range_check modes, NaN/Inf, empty batches and meta tensors of PerceptualLoss / PerceptualMetric."""

from __future__ import annotations

import warnings

import pytest
import torch

from lossnet.errors import InputError
from lossnet.loss import RANGE_CHECKS, PerceptualLoss, PerceptualMetric, RangeWarning, check_range
from lossnet.loss import ranges as loss_mod


def _loss(**kw):
    torch.manual_seed(0)
    return PerceptualLoss("alexnet", ["relu2"], weights=None, **kw)


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)


def _overshoot(x):
    """A generator output in [-0.02, 1.02]."""
    return x * 1.04 - 0.02


def test_defaults_loss_clamps_metric_is_strict():
    assert _loss().range_check == "clamp"
    assert PerceptualMetric(net="alexnet", layers=["relu2"], weights=None).range_check == "error"
    with pytest.raises(InputError, match="range_check must be one of error, warn, clamp, off"):
        _loss(range_check="ignore")


def test_clamp_equals_loss_on_clamped_input_and_keeps_running(pair):
    a, b = pair
    fn = _loss()
    x = _overshoot(a).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 2 % overshoot is clamped silently
        value = fn(x, b)
    value.backward()
    ref = fn(_overshoot(a).clamp(0, 1), b)
    assert torch.equal(value.detach(), ref)
    # pixels beyond the range get no gradient from this loss (as if the output were clamped)
    outside = (_overshoot(a) < 0) | (_overshoot(a) > 1)
    assert outside.any() and (x.grad[outside] == 0).all() and (x.grad[~outside] != 0).any()


def test_clamp_warns_once_on_a_wrong_range(pair):
    a, b = pair
    fn = _loss()
    with pytest.warns(RangeWarning, match=r"pass input_range=\(-1, 1\).*only the first batch"):
        fn(a * 2 - 1, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn(a * 2 - 1, b)  # inspected once: no second warning, no further host sync


def test_error_mode_raises_with_hint(pair):
    a, b = pair
    fn = _loss(range_check="error")
    with pytest.raises(InputError, match=r"pred: values in \[-0\.0.*input_range=\(0, 1\)"):
        fn(_overshoot(a), b)
    with pytest.raises(InputError, match="target: .*8-bit values"):
        fn(a, b * 255)
    fn(a * 1.0005, b)  # within the 0.1 % tolerance


def test_warn_mode_warns_once_and_uses_values_as_they_are(pair):
    a, b = pair
    warn, off = _loss(range_check="warn"), _loss(range_check="off")
    with pytest.warns(RangeWarning, match="warned once"):
        first = warn(_overshoot(a), b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = warn(_overshoot(a), b)
    assert torch.equal(first, off(_overshoot(a), b)) and torch.equal(first, second)
    assert not torch.equal(first, _loss()(_overshoot(a), b))  # clamp differs


@pytest.mark.parametrize("mode", RANGE_CHECKS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_inf_raise_in_every_mode(pair, mode, bad):
    a, b = pair
    x = a.clone()
    x[0, 1, 2, 3] = bad
    fn = _loss(range_check=mode)
    with pytest.raises(InputError, match="pred: contains NaN/Inf"):
        fn(x, b)
    with pytest.raises(InputError, match="target: contains NaN/Inf"):
        fn(a, x)
    metric = PerceptualMetric(net="alexnet", layers=["relu2"], weights=None, range_check=mode)
    with pytest.raises(InputError, match="contains NaN/Inf"):
        metric(x, b)


def test_nan_message_is_not_a_range(pair):
    a, _ = pair
    x = a.clone()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError) as info:
        check_range(x)
    assert "contains NaN/Inf (1 NaN, 0 Inf" in str(info.value) and "[nan" not in str(info.value)


def test_host_syncs_per_mode(pair, monkeypatch):
    """Value inspections (the host sync) per call: error every call, warn until it warned, clamp
    only on the first call, off never."""
    a, b = pair
    calls = []
    real = loss_mod._range_message
    monkeypatch.setattr(loss_mod, "_range_message", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    counts = {}
    for mode in RANGE_CHECKS:
        fn = _loss(range_check=mode)
        calls.clear()
        for _ in range(3):
            fn(a, b)
        counts[mode] = len(calls)
    # two images (pred, target) per call; clamp looks once at the first pred and the first target
    assert counts == {"error": 6, "warn": 6, "clamp": 2, "off": 0}


def test_no_value_check_of_target_features(pair):
    a, b = pair
    fn = _loss(range_check="error")
    feats = fn.target_features(b)
    assert torch.equal(fn(a, feats), fn(a, b))


def test_minus_one_one_range_in_every_mode(pair):
    a, b = pair
    ref = _loss()(a, b)
    for mode in RANGE_CHECKS:
        fn = _loss(range_check=mode, input_range=(-1, 1))
        torch.testing.assert_close(fn(a * 2 - 1, b * 2 - 1), ref, rtol=1e-5, atol=1e-7)


def test_check_range_function_modes():
    x = torch.tensor([[-0.5, 0.5, 1.5]])
    with pytest.raises(InputError, match="values in"):
        check_range(x)
    assert torch.equal(check_range(x, mode="clamp"), torch.tensor([[0.0, 0.5, 1.0]]))
    assert torch.equal(check_range(x, mode="off"), x)
    with pytest.warns(RangeWarning):
        assert torch.equal(check_range(x, mode="warn"), x)
    with pytest.raises(InputError, match="float"):
        check_range(torch.zeros(2, dtype=torch.uint8), mode="off")


# ---- empty batches and meta tensors ---------------------------------------------------------------


def test_empty_batch():
    metric = PerceptualMetric(net="alexnet", layers=["relu1", "relu2"], weights=None)
    empty = torch.rand(0, 3, 32, 32)
    assert metric(empty, empty).shape == (0,)
    assert metric(empty, empty, per_layer=True).shape == (0, 2)
    with pytest.raises(InputError, match="empty batch"):
        _loss()(empty, empty)
    x = empty.clone().requires_grad_()
    total = _loss(reduction="sum")(x, empty)
    assert total.item() == 0.0
    total.backward()
    assert x.grad.shape == x.shape
    assert _loss(reduction="none")(empty, empty).shape == (0,)


def test_meta_tensors_give_shapes_or_a_clear_error():
    metric = PerceptualMetric(net="alexnet", layers=["relu1", "relu2"], weights=None)
    meta = torch.empty(4, 3, 32, 32, device="meta")
    with pytest.raises(InputError, match="meta tensor.*call .to\\('meta'\\)"):
        metric(meta, meta)
    metric.to("meta")
    out = metric(meta, meta)
    assert out.is_meta and out.shape == (4,)
    assert metric(meta, meta, per_layer=True).shape == (4, 2)
    assert metric.spatial_map(meta, meta).shape == (4, 1, 32, 32)
    loss = _loss(reduction="none").to("meta")
    assert loss(meta, meta).shape == (4,)
    with pytest.raises(InputError, match="got a cpu tensor"):
        metric(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
