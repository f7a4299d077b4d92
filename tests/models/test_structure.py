"""Structural attributes against facts of the architectures (closed-form counts)."""

import pytest

from lossnet.structure import arch_attributes, layer_stats


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSNET_CACHE", str(tmp_path))


@pytest.mark.parametrize(
    "arch,skip,branch,one,bn",
    [
        ("vgg16", False, False, False, False),
        ("resnet18", True, True, True, True),
        ("googlenet", False, True, True, True),
        ("squeezenet1_1", False, True, True, False),
        ("densenet121", True, False, True, True),
    ],
)
def test_arch_attributes(arch, skip, branch, one, bn):
    a = arch_attributes(arch)
    assert (a["skip_connections"], a["branching"], a["conv1x1"], a["batch_norm"]) == (skip, branch, one, bn)


def test_layer_stats_vgg16_relu2_2_closed_form():
    s = layer_stats("vgg16", "S")
    assert s["params"] == 1792 + 36928 + 73856 + 147584
    assert s["depth"] == 4 and (s["channels"], s["height"], s["width"]) == (128, 32, 32)
    assert s["mflops"] == pytest.approx(2 * 9 * (64 * 64 * (64 * 3 + 64 * 64) + 32 * 32 * (128 * 64 + 128 * 128)) / 1e6)
    assert layer_stats("vgg16", "L")["depth"] == 13 and layer_stats("resnet18", "L")["depth"] == 17
