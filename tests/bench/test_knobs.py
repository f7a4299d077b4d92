"""Loss-network knobs of the paper presets: googlenet / inception_v3 without transform_input equal the
reference code's slicing (iterating the model's children on ImageNet-normalised input), and the
benchmark configs pass their knobs to the loss network."""

from __future__ import annotations

import pytest
import torch

from lossnet.models.builder import build_backbone
from lossnet.network import LossNetwork

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _reference_slicing(model, x, indices):
    """Children iterated in order, as the reference's loss network does (no _transform_input)."""
    out, children = [], list(model.children())
    for i in range(max(indices) + 1):
        x = children[i](x)
        if i in indices:
            out.append(x)
    return out


@pytest.mark.parametrize("arch, indices, size", [("googlenet", (0, 5, 8, 15), 64), ("inception_v3", (2, 7), 96)])
def test_transform_input_off_equals_reference_slicing(arch, indices, size):
    layers = ("E", "S", "M", "L")[: len(indices)]
    torch.manual_seed(0)
    ours = LossNetwork(arch, layers, weights=None, transform_input=False)
    reference = build_backbone(arch, transform_input=False)
    missing, _ = reference.load_state_dict(ours.body.state_dict(), strict=False)  # same random weights
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        feats = ours(x)
        ref = _reference_slicing(reference, (x - MEAN) / STD, indices)
    for name, r in zip(layers, ref):
        torch.testing.assert_close(feats[name], r, rtol=0, atol=1e-5)
    # torchvision's transform_input (the pretrained default) feeds these nets something else
    with_transform = LossNetwork(arch, layers[:1], weights=None, transform_input=True)
    with_transform.body.load_state_dict(ours.body.state_dict(), strict=False)
    with torch.no_grad():
        assert not torch.allclose(with_transform(x)[layers[0]], feats[layers[0]], atol=1e-3)


def test_paper_configs_pass_their_knobs_to_the_loss(tmp_path):
    from lossnet.bench.base import build_training_loss, loss_network_knobs
    from lossnet.bench.superres import BENCHMARK as superres

    (tmp_path / "tr").mkdir()
    paper = superres.resolve_config(
        {
            "preset": "paper",
            "allow_stand_in": True,
            "train": [str(tmp_path / "tr")],
            "test": {"x": str(tmp_path / "tr")},
            "weights": "none",
            "net": "googlenet",
            "layer": "E",
        }
    )
    paper = superres.config_object(paper)
    assert loss_network_knobs(paper) == {"normalize": "none", "transform_input": False}
    loss = build_training_loss(paper)
    assert loss.network.normalization == "none" and loss.network.transform_input is False
    quick = superres.resolve_config(
        {"preset": "quick", "train": [str(tmp_path / "tr")], "test": {"x": str(tmp_path / "tr")}, "weights": "none"}
    )
    assert loss_network_knobs(superres.config_object(quick)) == {}
