"""LossNetwork, registry, weights and the torchvision shim, against torchvision itself."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lossnet.errors import InputError, UnknownLayerError, WeightsError
from lossnet.models.layers import resolve_layer
from lossnet.models.registry import PAPER_ARCHS, paper_layers
from lossnet.network import LossNetwork

# Output channels of E/S/M/L, read off torchvision's architecture definitions (not off our code).
EXPECTED_CHANNELS = {
    "alexnet": (64, 192, 384, 256),
    "vgg11": (64, 128, 256, 512),
    "vgg16": (64, 128, 256, 512),
    "vgg16_bn": (64, 128, 256, 512),
    "vgg19": (64, 128, 256, 512),
    "resnet18": (64, 64, 128, 512),
    "resnet50": (64, 256, 512, 2048),
    "resnext50_32x4d": (64, 256, 512, 2048),
    "googlenet": (64, 256, 512, 1024),
    "inception_v3": (64, 256, 288, 768),
    "efficientnet_b0": (32, 16, 80, 320),
    "efficientnet_b7": (64, 32, 160, 640),
    "densenet121": (64, 256, 512, 1024),
    "squeezenet1_1": (64, 128, 256, 512),
}


@pytest.mark.parametrize("arch", PAPER_ARCHS)
def test_all_paper_layers_build_with_random_weights(arch):
    net = LossNetwork(arch, layers=("E", "S", "M", "L"), weights=None)
    size = 96 if arch == "inception_v3" else 64
    out = net(torch.rand(1, 3, size, size))
    assert tuple(v.shape[1] for v in out.values()) == EXPECTED_CHANNELS[arch]
    assert list(out) == ["E", "S", "M", "L"]


def test_vgg16_spatial_sizes_and_aliases():
    net = LossNetwork("vgg16", layers=("relu1_2", "relu2_2", "relu3_3", "relu5_3"), weights=None)
    shapes = [tuple(v.shape[1:]) for v in net(torch.rand(2, 3, 64, 64)).values()]
    assert shapes == [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 4, 4)]
    assert [resolve_layer("vgg16", k) for k in "ESML"] == list(paper_layers("vgg16").values())
    assert net.nodes == tuple(paper_layers("vgg16").values())


@pytest.mark.parametrize("arch,prefix_len", [("alexnet", 12), ("vgg16", 30)])
def test_shared_weights_equal_torchvision_prefix(arch, prefix_len, shared_weights_dir):
    from safetensors.torch import load_file
    from torchvision.models import get_model

    state = load_file(str(next(shared_weights_dir.glob(f"{arch}-imagenet1k-v1*.safetensors"))))
    tv = get_model(arch, weights=None).eval()
    tv.load_state_dict(state, strict=False)
    net = LossNetwork(arch, layers=("E", "S", "M", "L"), weights_dir=shared_weights_dir)
    x = torch.rand(2, 3, 64, 64)
    ours = net(x)
    z = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        for key, node in paper_layers(arch).items():
            idx = int(node.split(".")[1])
            ref = tv.features[: idx + 1](z)
            assert (ours[key] - ref).abs().max().item() <= 1e-6


def test_truncation_runs_only_first_four_convs():
    from torch.utils.flop_counter import FlopCounterMode

    net = LossNetwork("vgg16", layers="relu2_2", weights=None)
    convs = [m for m in net.body.modules() if isinstance(m, torch.nn.Conv2d)]
    calls = []
    for m in convs:
        m.register_forward_hook(lambda mod, i, o: calls.append(mod))
    with FlopCounterMode(display=False) as counter:
        net(torch.rand(1, 3, 64, 64))
    assert len(convs) == 4 and len(calls) == 4
    # 2*H*W*Cout*Cin*9 per conv, closed form for the first four VGG16 convs
    expected = 2 * 9 * (64 * 64 * (64 * 3 + 64 * 64) + 32 * 32 * (128 * 64 + 128 * 128))
    assert counter.get_total_flops() == expected


def test_trimmed_weights_round_trip_and_missing_key(tmp_path, shared_weights_dir):
    from safetensors.torch import load_file, save_file

    from lossnet.cli.main import main

    out = tmp_path / "vgg16-relu2_2.safetensors"
    assert (
        main(
            ["weights", "trim", "vgg16", "--layer", "relu2_2", "--weights-dir", str(shared_weights_dir), "-o", str(out)]
        )
        == 0
    )
    full = LossNetwork("vgg16", layers="relu2_2", weights_dir=shared_weights_dir)
    trimmed = LossNetwork("vgg16", layers="relu2_2", weights=out)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(full(x)["relu2_2"], trimmed(x)["relu2_2"])
    state = load_file(str(out))
    assert sorted(state) == sorted(f"features.{i}.{p}" for i in (0, 2, 5, 7) for p in ("weight", "bias"))
    del state["features.5.weight"]
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    with pytest.raises(WeightsError, match="features.5.weight"):
        LossNetwork("vgg16", layers="relu2_2", weights=bad)


def test_frozen_eval_gradients_and_input_checks():
    net = LossNetwork("resnet18", layers="layer1", weights=None)
    parent = torch.nn.Sequential(net)
    parent.train()
    assert not net.body.training
    assert all(not p.requires_grad for p in net.parameters())
    x = torch.rand(1, 1, 32, 32, requires_grad=True)  # greyscale is repeated to RGB
    net(x)["layer1"].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for dtype in (torch.float16, torch.bfloat16):
        assert net(torch.rand(1, 3, 32, 32, dtype=dtype))["layer1"].shape == (1, 64, 8, 8)
    with pytest.raises(InputError, match="channels"):
        net(torch.rand(1, 4, 32, 32))
    with pytest.raises(InputError, match="float"):
        net(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(InputError, match="minimum is 16x16"):
        LossNetwork("vgg16", layers="L", weights=None)(torch.rand(1, 3, 8, 8))
    with pytest.raises(UnknownLayerError, match="relu5_3"):
        LossNetwork("vgg16", layers="relu5_9", weights=None)


def test_missing_weights_error_says_what_to_do(tmp_path, monkeypatch):
    import lossnet.weights as W

    def no_network(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr("torch.hub.load_state_dict_from_url", no_network)
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", no_network, raising=False)
    with pytest.raises(WeightsError, match="weights-dir"):
        W.imagenet_state_dict("squeezenet1_1", tmp_path)


def test_torchvision_shim_only_when_extension_fails():
    code = "import lossnet, lossnet._torchvision_compat as c, torchvision, torch; print(c.PATCHED, torch.ops.torchvision.nms is not None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from lossnet._torchvision_compat import extension_loads

    # PATCHED iff the extension cannot be loaded; torchvision imports either way.
    assert out[0] == str(not extension_loads())
    assert out[1] == "True"


def test_cli_nets_and_bad_input(capsys):
    from lossnet.cli.main import main

    assert main(["nets", "list"]) == 0
    assert "features.29" in capsys.readouterr().out
    assert main(["nets", "show", "resnet18", "--nodes"]) == 0
    assert "layer1.0.conv1" in capsys.readouterr().out
    assert main(["nets", "show", "vgg17"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vgg17" in err


def test_atomic_write_keeps_old_file_on_error_and_normal_permissions(tmp_path):
    import os

    from lossnet.atomic import atomic_path, atomic_write_text

    target = tmp_path / "result.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["result.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
