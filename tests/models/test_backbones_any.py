"""Your own module as the loss network (issue #28): ``LossNetwork(model=...)`` and ``model=`` in the
loss, the metric, ``perceptual_distance``, signatures and heads."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from lossnet import PerceptualLoss, PerceptualMetric, perceptual_distance
from lossnet.errors import InputError, LossnetError, UnknownLayerError
from lossnet.network import IMAGENET_MEAN, IMAGENET_STD, LossNetwork
from lossnet.signature import parse_signature

RESNET_POINTS = {"E": "relu", "S": "layer1", "M": "layer2", "L": "layer4"}


def _seeded_resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


def test_user_resnet18_equals_registry_resnet18_at_E_S_M_L():
    """Must-show: torchvision resnet18 passed as model= vs net="resnet18", same random seeded weights."""
    ref = LossNetwork("resnet18", "E,S,M,L", weights=None)
    mine = _seeded_resnet18()
    ref.body.load_state_dict(mine.state_dict(), strict=False)  # the registry net carries the same weights
    net = LossNetwork(model=mine, layers=list(RESNET_POINTS.values()))
    assert net.extraction == "fx"
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 80)
    a, b = ref(x), net(x)
    for key, node in RESNET_POINTS.items():
        assert a[key].shape == b[node].shape
        assert (a[key] - b[node]).abs().max().item() <= 1e-5


def test_user_module_is_frozen_eval_and_truncated():
    mine = _seeded_resnet18()
    mine.train()
    net = LossNetwork(model=mine, layers=["layer1"])
    net.train()
    assert not net.body.training
    assert all(not p.requires_grad for p in net.body.parameters())
    # FX pruned the graph after layer1: the deeper stages' parameters are not kept
    assert not any(k.startswith(("layer2", "layer4", "fc")) for k in net.body.state_dict())
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    net(x)["layer1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


class _Untraceable(nn.Module):
    """Branches on the input's values: FX cannot trace it, so forward hooks take the layers."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 5, 3, padding=1)
        self.c = nn.Conv2d(5, 6, 3, padding=1)
        self.calls = 0

    def forward(self, x):
        if x.mean() > 10:  # data-dependent control flow
            x = x * 2
        y = self.b(torch.relu(self.a(x)))
        self.calls += 1  # reached only when the forward runs past b
        return self.c(y)


def test_untraceable_module_uses_hooks_and_stops_after_the_deepest_layer():
    torch.manual_seed(0)
    m = _Untraceable()
    net = LossNetwork(model=m, layers=["a", "b"], normalize=None)
    assert net.extraction == "hooks"
    x = torch.rand(2, 3, 8, 8)
    out = net(x)
    assert m.calls == 0  # the forward stopped once b had run
    with torch.no_grad():
        assert torch.equal(out["a"], m.a(x))
        assert torch.equal(out["b"], m.b(torch.relu(m.a(x))))
    # the extractor's state dict has the module's own keys
    assert set(net.body.state_dict()) == set(m.state_dict())
    # a deep copy has its own hooks: it records into itself, and the original still works
    import copy

    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin.body.a.weight.add_(1.0)
    assert not torch.equal(twin(x)["a"], out["a"])
    assert torch.equal(net(x)["a"], out["a"])


class _Tokens(nn.Module):
    """A tiny ViT-like module: patch embedding, then (N, k + h*w, C) tokens with k prefix tokens."""

    def __init__(self, prefix: int, patch: int = 4, dim: int = 8) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.prefix_tokens = nn.Parameter(torch.randn(1, prefix, dim)) if prefix else None
        self.block = nn.Linear(dim, dim)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        if self.prefix_tokens is not None:
            t = torch.cat([self.prefix_tokens.expand(t.shape[0], -1, -1), t], dim=1)
        return self.block(t)


@pytest.mark.parametrize("prefix", [0, 1, 5])
@pytest.mark.parametrize("size", [(16, 16), (16, 24)])
def test_token_outputs_become_maps_with_or_without_prefix_tokens(prefix, size):
    torch.manual_seed(0)
    m = _Tokens(prefix)
    net = LossNetwork(model=m, layers=["block"], normalize=None)
    x = torch.rand(2, 3, *size)
    f = net(x)["block"]
    h, w = size[0] // 4, size[1] // 4
    assert f.shape == (2, 8, h, w)
    with torch.no_grad():
        tokens = m(x)
    # the map at (i, j) is the token of patch (i, j): independent truth from the embedding's layout
    assert torch.equal(f[:, :, 1, 2], tokens[:, prefix + 1 * w + 2])


def test_normalize_pair_and_none():
    m = _seeded_resnet18()
    x = torch.rand(1, 3, 32, 32)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    net = LossNetwork(model=m, layers=["conv1"], normalize=(mean, std))
    plain = LossNetwork(model=m, layers=["conv1"], normalize=None)
    z = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(net(x)["conv1"], plain(z)["conv1"], atol=1e-6)
    assert net.normalization.startswith("custom:")
    default = LossNetwork(model=m, layers=["conv1"])
    zi = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(default(x)["conv1"], plain(zi)["conv1"], atol=1e-6)
    with pytest.raises(InputError, match="normalize"):
        LossNetwork(model=m, layers=["conv1"], normalize=((0, 0), (1, 1)))


def test_argument_errors_are_one_line():
    m = _seeded_resnet18()
    for kwargs, match in [
        (dict(model=m), "layers"),
        (dict(arch="vgg16", model=m, layers=["relu"]), "not both"),
        (dict(model="resnet", layers=["relu"]), "nn.Module"),
        (dict(model=m, layers=["nope"]), "nope"),
    ]:
        with pytest.raises(LossnetError, match=match) as info:
            LossNetwork(**kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(UnknownLayerError):
        LossNetwork(model=_Untraceable(), layers=["zz"])


def test_loss_metric_and_distance_accept_model():
    m = _seeded_resnet18()
    ref_metric = PerceptualMetric("resnet18", ["E", "S"], weights=None)
    ref_metric.network.body.load_state_dict(m.state_dict(), strict=False)
    metric = PerceptualMetric(model=m, layers=["relu", "layer1"])
    loss = PerceptualLoss(model=m, layers=["relu", "layer1"])
    ref_loss = PerceptualLoss("resnet18", ["E", "S"], weights=None)
    ref_loss.network.body.load_state_dict(m.state_dict(), strict=False)
    torch.manual_seed(2)
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert torch.allclose(metric(a, b), ref_metric(a, b), atol=1e-6)
    assert torch.allclose(loss(a, b), ref_loss(a, b), atol=1e-6)
    d = perceptual_distance(a, b, model=m, layers=["relu", "layer1"])
    assert torch.allclose(d, ref_metric(a, b), atol=1e-6)
    assert torch.equal(metric(a, a), torch.zeros(2))
    with pytest.raises(InputError, match="not both"):
        PerceptualLoss("vgg16", ["relu1_2"], model=m)


def test_signature_records_module_and_state_digest():
    m = _seeded_resnet18()
    sig = parse_signature(PerceptualMetric(model=m, layers=["relu", "layer1"]).signature)
    assert sig["arch"] == "module:ResNet"
    assert sig["layers"] == "relu+layer1"
    assert sig["w"].startswith("module:sha256:")
    # other weights -> another digest; the same weights -> the same signature
    other = _seeded_resnet18()
    with torch.no_grad():
        other.conv1.weight.add_(1.0)
    assert parse_signature(PerceptualMetric(model=other, layers=["relu", "layer1"]).signature)["w"] != sig["w"]
    assert parse_signature(PerceptualMetric(model=_seeded_resnet18(), layers=["relu", "layer1"]).signature) == sig


def test_heads_file_for_a_module_needs_the_module(tmp_path):
    from lossnet.heads.file import Heads, save_heads

    m = _seeded_resnet18()
    w = [torch.rand(64), torch.rand(64)]
    path = tmp_path / "h.safetensors"
    save_heads(path, Heads("module:ResNet", ["relu", "layer1"], w, "imagenet"))
    metric = PerceptualMetric(model=m, heads=path)
    plain = PerceptualMetric(model=m, layers=["relu", "layer1"], channel_weights=w)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert torch.allclose(metric(a, b), plain(a, b))
    with pytest.raises(InputError, match="model="):
        PerceptualMetric(heads=path)
