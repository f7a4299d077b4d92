"""LossNetwork / PerceptualLoss options: normalize, transform_input, loss_net_mode, pooling, "input" layer."""

from __future__ import annotations

import pytest
import torch

from lossnet.errors import InputError
from lossnet.loss import PerceptualLoss, PerceptualMetric
from lossnet.network import IMAGENET_MEAN, IMAGENET_STD, LossNetwork


def _tv(arch, seed=0, **kw):
    from torchvision.models import get_model

    torch.manual_seed(seed)
    return get_model(arch, weights=None, **kw).eval()


def _copy(net: LossNetwork, model):
    net.body.load_state_dict({k: v for k, v in model.state_dict().items() if k in net.body.state_dict()})
    return net


def test_normalize_none_feeds_the_raw_image():
    model = _tv("resnet18")
    x = torch.rand(2, 3, 32, 32)
    raw = _copy(LossNetwork("resnet18", "conv1", weights=None, normalize="none"), model)
    std = _copy(LossNetwork("resnet18", "conv1", weights=None), model)
    with torch.no_grad():
        assert (raw(x)["conv1"] - model.conv1(x)).abs().max() <= 1e-5
        z = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        assert (std(x)["conv1"] - model.conv1(z)).abs().max() <= 1e-5
    with pytest.raises(InputError, match="normalize must be one of imagenet, none"):
        LossNetwork("resnet18", "conv1", weights=None, normalize="unit")
    fn = PerceptualLoss("resnet18", ["conv1"], weights=None, normalize="none")
    assert fn.network.normalization == "none"


def test_transform_input_defaults_and_passthrough():
    assert LossNetwork("googlenet", "E", weights=None).transform_input is False  # torchvision: random init -> False
    assert PerceptualLoss("googlenet", ["E"], weights=None, transform_input=True).network.transform_input is True
    assert PerceptualMetric(
        net="inception_v3", layers=["E"], weights=None, transform_input=True
    ).network.transform_input
    with pytest.raises(InputError, match="transform_input applies only"):
        PerceptualLoss("vgg16", ["relu1_2"], weights=None, transform_input=True)


def test_loss_net_mode_train_uses_batch_statistics():
    x = torch.rand(4, 3, 32, 32) * 0.5
    torch.manual_seed(0)
    ev = PerceptualLoss("vgg16_bn", ["relu1_2"], weights=None)
    torch.manual_seed(0)
    tr = PerceptualLoss("vgg16_bn", ["relu1_2"], weights=None, loss_net_mode="train")
    assert not ev.network.body.training and tr.network.body.training
    tr.eval()  # the parent's mode does not matter
    assert tr.network.body.training
    ev.train()
    assert not ev.network.body.training
    bn = dict(tr.network.body.named_modules())["features.1"]
    before = bn.running_mean.clone()
    y = torch.rand(4, 3, 32, 32)
    v_train, v_eval = tr(x, y), ev(x, y)
    assert not torch.equal(bn.running_mean, before)  # batch statistics, running stats updated
    assert not torch.allclose(v_train, v_eval)
    assert not any(p.requires_grad for p in tr.parameters())
    with pytest.raises(InputError, match="loss_net_mode"):
        LossNetwork("vgg16", "relu1_2", weights=None, loss_net_mode="frozen")


def test_l2_pooling_and_input_layer():
    net = LossNetwork("alexnet", "input,relu2", weights=None, pooling="l2")
    x = torch.rand(1, 3, 64, 64)
    out = net(x)
    assert torch.equal(out["input"], x) and out["relu2"].shape[1] == 192
    assert LossNetwork("vgg16", "input", weights=None).body is None
    with pytest.raises(InputError, match="has none"):
        LossNetwork("convnext_tiny", "E", weights=None, pooling="l2")
