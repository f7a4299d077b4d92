"""Transformer and modern backbones (ViT, Swin, ConvNeXt) as loss networks, against torchvision itself."""

from __future__ import annotations

import pytest
import torch

from lossnet.distances import DISTANCES, compute_distance, unit_normalize
from lossnet.errors import InputError, UnknownLayerError
from lossnet.loss import PerceptualLoss
from lossnet.models.layers import resolve_layer
from lossnet.models.registry import EXTRA_LAYERS, PAPER_ARCHS, get_spec
from lossnet.network import IMAGENET_MEAN, IMAGENET_STD, LossNetwork

ARCHS = ("vit_b_16", "swin_t", "convnext_tiny")
# (C, H, W) of E/S/M/L at a 64x64 input, read off torchvision's definitions: ViT-B/16 has 768-d
# tokens on a 4x4 patch grid everywhere; Swin-T / ConvNeXt-T stages have 96/192/384/768 channels
# at strides 4/8/16/32 (E = stem, S = stage 1, M = stage 2, L = stage 4).
EXPECTED = {
    "vit_b_16": [(768, 4, 4)] * 4,
    "swin_t": [(96, 16, 16), (96, 16, 16), (192, 8, 8), (768, 2, 2)],
    "convnext_tiny": [(96, 16, 16), (96, 16, 16), (192, 8, 8), (768, 2, 2)],
}


def _normalise(x):
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _torchvision(arch, seed=0):
    from torchvision.models import get_model

    torch.manual_seed(seed)
    return get_model(arch, weights=None).eval()


def _ours_from(model, arch, layers, tmp_path):
    """Our LossNetwork with exactly the weights of the torchvision ``model``."""
    from safetensors.torch import save_file

    path = tmp_path / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return LossNetwork(arch, layers, weights=path)


def test_registry_points():
    for arch in ARCHS:
        spec = get_spec(arch)
        assert set(spec.layers) == set("ESML") and not spec.in_paper and arch not in PAPER_ARCHS
        assert [resolve_layer(arch, k) for k in "ESML"] == list(EXTRA_LAYERS[arch].values())
    assert EXTRA_LAYERS["vit_b_16"] == {
        "E": "conv_proj",
        "S": "encoder.layers.encoder_layer_2",
        "M": "encoder.layers.encoder_layer_5",
        "L": "encoder.layers.encoder_layer_11",
    }
    assert (
        resolve_layer("swin_t", "stage4") == "features.7"
        and resolve_layer("vit_b_16", "block12") == EXTRA_LAYERS["vit_b_16"]["L"]
    )
    with pytest.raises(UnknownLayerError, match="no E/S/M/L"):
        resolve_layer("mobilenet_v2", "E")


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_identical_zero_every_distance(arch):
    net = LossNetwork(arch, "E,S,M,L", weights=None)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    fx, fy = list(net(x).values()), list(net(y).values())
    assert [tuple(f.shape[1:]) for f in fx] == EXPECTED[arch]
    for name in DISTANCES:
        if name == "adists":  # needs the six DISTS layers (tests/distances/test_adists.py)
            continue
        same = compute_distance(name, fx, [f.clone() for f in fx])
        assert torch.equal(same, torch.zeros(2)), (arch, name, same)
        diff = compute_distance(name, fx, fy)
        assert torch.isfinite(diff).all() and (diff > 0).all(), (arch, name)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradcheck(arch):
    """Analytic vs numerical gradient of the loss w.r.t. the image (float64, random projections)."""
    torch.manual_seed(0)
    fn = PerceptualLoss(arch, "E,S,M,L", distance="spatial", weights=None).double()
    target = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    x = (0.1 + 0.8 * torch.rand(1, 3, 32, 32, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: fn(x, target), (x,), fast_mode=True, eps=1e-6, atol=1e-6, rtol=1e-3)


def test_swin_features_are_nchw_and_normalised_over_channels(tmp_path):
    """Swin stages are NHWC in torchvision; a distance that normalises "dim 1" of the raw tensor
    would normalise over the image height. Our features are the NHWC tensors permuted, and the
    spatial distance equals the channel-normalised one computed on the raw NHWC output."""
    model = _torchvision("swin_t")
    net = _ours_from(model, "swin_t", ["S", "M"], tmp_path)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    ours_x, ours_y = list(net(x).values()), list(net(y).values())
    with torch.no_grad():
        raw_x = [model.features[:2](_normalise(x)), model.features[:4](_normalise(x))]  # NHWC
        raw_y = [model.features[:2](_normalise(y)), model.features[:4](_normalise(y))]
    for o, r in zip(ours_x, raw_x):
        assert o.shape == r.permute(0, 3, 1, 2).shape
        assert (o - r.permute(0, 3, 1, 2)).abs().max().item() <= 1e-5
    # the truth, on the raw NHWC tensors: unit-normalise over the LAST axis (channels)
    truth = sum(
        ((unit_normalize(a, dim=3) - unit_normalize(b, dim=3)) ** 2).sum(3).mean((1, 2)) for a, b in zip(raw_x, raw_y)
    )
    ours = compute_distance("spatial", ours_x, ours_y)
    torch.testing.assert_close(ours, truth, rtol=1e-4, atol=1e-6)
    # normalising the NHWC tensor over dim 1 (its height) gives another number, 10x outside the tolerance above
    wrong = compute_distance("spatial", [r for r in raw_x], [r for r in raw_y])
    assert ((wrong - truth).abs() > 1e-3 * truth).all()


def test_vit_tokens_to_grid_equal_torchvision_at_224(tmp_path):
    """At 224 px our ViT is torchvision's: block outputs are torchvision's tokens, class token
    dropped, laid out on the 14x14 patch grid (token 1 + r*14 + c -> position (r, c))."""
    from torchvision.models.vision_transformer import VisionTransformer

    model = _torchvision("vit_b_16")
    assert type(model) is VisionTransformer
    net = _ours_from(model, "vit_b_16", ["E", "S"], tmp_path)
    x = torch.rand(1, 3, 224, 224)
    captured = {}
    model.encoder.layers.encoder_layer_2.register_forward_hook(lambda m, i, o: captured.setdefault("S", o))
    model.conv_proj.register_forward_hook(lambda m, i, o: captured.setdefault("E", o))
    with torch.no_grad():
        model(_normalise(x))
    ours = net(x)
    assert ours["S"].shape == (1, 768, 14, 14)
    tokens = captured["S"]
    assert tokens.shape == (1, 197, 768)
    assert torch.equal(ours["S"][0, :, 3, 5], tokens[0, 1 + 3 * 14 + 5])
    assert (ours["S"] - tokens[:, 1:].reshape(1, 14, 14, 768).permute(0, 3, 1, 2)).abs().max().item() <= 1e-5
    assert (ours["E"] - captured["E"]).abs().max().item() <= 1e-5


def test_vit_other_sizes():
    net = LossNetwork("vit_b_16", ["M"], weights=None)
    assert net(torch.rand(1, 3, 48, 80))["M"].shape == (1, 768, 3, 5)  # position embeddings resized
    with pytest.raises(InputError, match="multiples of its patch size 16"):
        net(torch.rand(1, 3, 50, 64))


def test_convnext_equals_torchvision_stages(tmp_path):
    model = _torchvision("convnext_tiny")
    net = _ours_from(model, "convnext_tiny", ["E", "M"], tmp_path)
    x = torch.rand(2, 3, 64, 64)
    ours = net(x)
    with torch.no_grad():
        assert (ours["E"] - model.features[:1](_normalise(x))).abs().max().item() <= 1e-5
        assert (ours["M"] - model.features[:4](_normalise(x))).abs().max().item() <= 1e-5


def test_cli_nets_show_extra_points(capsys):
    from lossnet.cli.main import main

    assert main(["nets", "show", "vit_b_16", "--no-structure"]) == 0
    out = capsys.readouterr().out
    assert "encoder.layers.encoder_layer_11" in out and "lossnet's choice" in out
