"""torch.compile: no graph breaks in the range modes that need no host check; compiled == eager."""

from __future__ import annotations

import warnings

import pytest
import torch

from lossnet.loss import RANGE_CHECKS, PerceptualLoss


def _loss(mode, **kw):
    torch.manual_seed(0)
    kw.setdefault("net", "alexnet")
    kw.setdefault("layers", ["relu1"])
    kw.setdefault("distance", "spatial")
    return PerceptualLoss(weights=None, range_check=mode, **kw)


def test_graph_breaks_per_mode():
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    counts = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mode in RANGE_CHECKS:
            torch._dynamo.reset()
            counts[mode] = torch._dynamo.explain(_loss(mode))(a, b).graph_break_count
    torch._dynamo.reset()
    assert counts["clamp"] == counts["off"] == counts["error"] == 0
    assert counts["warn"] > 0  # warn needs the host until it has warned


def test_lpips_preset_and_masks_trace_without_breaks():
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    fn = PerceptualLoss(preset="lpips-alex", weights=None)
    torch._dynamo.reset()
    assert torch._dynamo.explain(fn)(a, b).graph_break_count == 0
    mask = torch.ones(1, 1, 32, 32)
    torch._dynamo.reset()
    assert torch._dynamo.explain(lambda x, y: fn(x, y, mask=mask))(a, b).graph_break_count == 0
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["clamp", "error", "off"])
def test_compiled_equals_eager(mode):
    fn = _loss(mode)
    compiled = torch.compile(fn)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    xe, xc = a.clone().requires_grad_(), a.clone().requires_grad_()
    le, lc = fn(xe, b), compiled(xc, b)
    le.backward()
    lc.backward()
    torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-4, atol=1e-7)
    bad = a.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(Exception, match="contains NaN/Inf"):
        compiled(bad, b)
    torch._dynamo.reset()
