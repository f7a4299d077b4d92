"""PerceptualLoss / PerceptualMetric / perceptual_distance behaviour."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossnet.errors import InputError
from lossnet.loss import PerceptualLoss, PerceptualMetric, perceptual_distance
from lossnet.loss import functional as loss_mod

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, 32, 32, generator=g), torch.rand(3, 3, 32, 32, generator=g)


@pytest.fixture(scope="module")
def vgg_loss():
    torch.manual_seed(0)
    return PerceptualLoss("vgg16", ["relu2_2"], weights=None)


def test_matches_plain_torchvision_vgg_with_real_weights(shared_weights_dir, images):
    """Johnson et al.'s feature loss written out by hand: torchvision VGG16 cut after relu2_2."""
    from safetensors.torch import load_file
    from torchvision.models import vgg16

    path = shared_weights_dir / "vgg16-imagenet1k-v1-features.safetensors"
    model = vgg16(weights=None).eval()
    model.load_state_dict(load_file(str(path)), strict=False)
    body = model.features[:9]  # features.8 = relu2_2
    a, b = images
    with torch.no_grad():
        expected = F.mse_loss(body((a - MEAN) / STD), body((b - MEAN) / STD))
    ours = PerceptualLoss("vgg16", ["relu2_2"], distance="mse", weights=path)
    torch.testing.assert_close(ours(a, b), expected, rtol=1e-5, atol=1e-7)


def test_identical_is_zero_with_finite_gradient(vgg_loss, images):
    a = images[0].clone().requires_grad_()
    for distance in ("mse", "spatial", "gram", "meanpool", "l1"):
        torch.manual_seed(0)
        fn = PerceptualLoss("alexnet", ["relu1", "relu2"], distance=distance, weights=None)
        loss = fn(a, images[0].clone())
        a.grad = None
        loss.backward()
        assert float(loss.detach()) == 0.0
        assert torch.isfinite(a.grad).all()


def test_reductions_and_gradient_only_to_pred(images):
    torch.manual_seed(0)
    none = PerceptualLoss("alexnet", ["relu2"], weights=None, reduction="none")
    per = none(*images)
    assert per.shape == (3,)
    torch.manual_seed(0)
    mean = PerceptualLoss("alexnet", ["relu2"], weights=None, reduction="mean")
    torch.manual_seed(0)
    total = PerceptualLoss("alexnet", ["relu2"], weights=None, reduction="sum")
    torch.testing.assert_close(mean(*images), per.mean())
    torch.testing.assert_close(total(*images), per.sum())
    pred = images[0].clone().requires_grad_()
    target = images[1].clone().requires_grad_()
    mean(pred, target).backward()
    assert pred.grad is not None and target.grad is None
    assert not any(p.requires_grad for p in mean.parameters())
    with pytest.raises(InputError, match="reduction"):
        PerceptualLoss("alexnet", ["relu2"], weights=None, reduction="max")


def test_precomputed_target_features_equal_image_target(vgg_loss, images):
    a, b = images
    feats = vgg_loss.target_features(b)
    assert all(not f.requires_grad for f in feats)
    direct = vgg_loss(a, b)
    assert torch.equal(vgg_loss(a, feats), direct)
    as_dict = dict(zip(vgg_loss.layers, feats))
    assert torch.equal(vgg_loss(a, as_dict), direct)
    with pytest.raises(InputError, match="layers"):
        vgg_loss(a, feats + feats)


def test_deterministic_bitwise(images):
    def run():
        torch.manual_seed(0)
        fn = PerceptualLoss("vgg16", ["relu1_2", "relu2_2"], distance="spatial", weights=None)
        x = images[0].clone().requires_grad_()
        out = fn(x, images[1])
        out.backward()
        return out.detach(), x.grad

    (l1, g1), (l2, g2) = run(), run()
    assert torch.equal(l1, l2) and torch.equal(g1, g2)


def test_autocast_bf16_close_to_fp32(vgg_loss, images):
    a, b = images
    ref = vgg_loss(a, b)
    x = a.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vgg_loss(x, b)
    out.backward()
    assert out.dtype == torch.float32  # distances are accumulated in fp32
    assert torch.isfinite(x.grad).all()
    assert abs(float(out.detach()) - float(ref)) <= 0.05 * abs(float(ref))


def test_channels_last_close(vgg_loss, images):
    """NHWC (the default) and NCHW networks, and either input layout, agree to float rounding."""
    a, b = images
    assert vgg_loss.channels_last
    ref = vgg_loss(a, b)
    out = vgg_loss(a.contiguous(memory_format=torch.channels_last), b.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-7)
    nchw = PerceptualLoss("vgg16", ["relu2_2"], weights=None, channels_last=False)
    nchw.load_state_dict(vgg_loss.state_dict())
    torch.testing.assert_close(nchw(a, b), ref, rtol=1e-5, atol=1e-7)
    xa, xb = a.clone().requires_grad_(), a.clone().requires_grad_()
    vgg_loss(xa, b).backward()
    nchw(xb, b).backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-9)


def test_input_range(vgg_loss, images):
    a, b = images
    strict = PerceptualLoss("vgg16", ["relu2_2"], weights=None, range_check="error")
    strict.load_state_dict(vgg_loss.state_dict())
    vgg_loss = strict
    with pytest.raises(InputError, match=r"values in \[-0\.9.*input_range=\(0, 1\); pass input_range=\(-1, 1\)"):
        vgg_loss(a * 2 - 1, b)
    with pytest.raises(InputError, match="255"):
        vgg_loss(a * 255, b)
    with pytest.raises(InputError, match="float"):
        vgg_loss((a * 255).to(torch.uint8), b)
    signed = PerceptualLoss("vgg16", ["relu2_2"], weights=None, input_range=(-1, 1))
    signed.load_state_dict(vgg_loss.state_dict())
    torch.testing.assert_close(signed(a * 2 - 1, b * 2 - 1), vgg_loss(a, b), rtol=1e-5, atol=1e-7)
    with pytest.raises(InputError, match="input_range"):
        PerceptualLoss("vgg16", weights=None, input_range=(0, 255))


def test_greyscale_equals_repeated_rgb(vgg_loss, images):
    g = images[0][:, :1]
    torch.testing.assert_close(vgg_loss(g, images[1]), vgg_loss(g.expand(-1, 3, -1, -1), images[1]))


def test_train_mode_keeps_network_in_eval(images):
    torch.manual_seed(0)
    fn = PerceptualLoss("vgg16_bn", ["relu2_2"], weights=None)
    before = fn(*images)
    fn.train()
    assert not fn.network.body.training
    torch.testing.assert_close(fn(*images), before)


def test_metric_features_compare_and_forward(images):
    torch.manual_seed(0)
    m = PerceptualMetric(net="alexnet", layers=["relu1", "relu3"], distance="spatial", weights=None)
    a, b = images
    fa, fb = m.features(a), m.features(b)
    assert isinstance(fa, list) and [f.shape[1] for f in fa] == [64, 384]
    d = m.compare(fa, fb)
    assert d.shape == (3,)
    assert torch.equal(d, m(a, b))
    # per-sample: comparing one pair alone gives the same number
    torch.testing.assert_close(m(a[1:2], b[1:2]), d[1:2])
    # broadcasting one reference against a batch
    torch.testing.assert_close(m.compare([f[:1] for f in fa], fb), m(a[:1].expand_as(b), b))
    with pytest.raises(InputError, match="size"):
        m(a, b[:, :, :16])


def test_perceptual_distance_caches_and_has_gradient(images, monkeypatch):
    monkeypatch.setattr(loss_mod, "_CACHE", {})
    a, b = images
    torch.manual_seed(0)
    d1 = perceptual_distance(a, b, net="alexnet", layers=["relu2"], distance="mse", weights=None)
    torch.manual_seed(1)  # a rebuilt random network would differ: equality shows the cache is used
    d2 = perceptual_distance(a, b, net="alexnet", layers=["relu2"], distance="mse", weights=None)
    assert torch.equal(d1, d2) and len(loss_mod._CACHE) == 1
    x = a.clone().requires_grad_()
    perceptual_distance(x, b, net="alexnet", layers=["relu2"], distance="mse", weights=None).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_unknown_names_are_clear_errors():
    from lossnet.errors import UnknownLayerError, UnknownNetworkError

    with pytest.raises(InputError, match="unknown distance"):
        PerceptualLoss("alexnet", ["relu1"], distance="cos", weights=None)
    with pytest.raises(UnknownLayerError):
        PerceptualLoss("alexnet", ["relu9"], weights=None)
    with pytest.raises(UnknownNetworkError):
        PerceptualLoss("alexnot", ["relu1"], weights=None)
