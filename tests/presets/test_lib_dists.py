"""The DISTS preset against the ``dists-pytorch`` package itself (same VGG16 weights), with gradients."""

from __future__ import annotations

import pytest
import torch

from lossnet.distances import compute_distance
from lossnet.dists_preset import DISTS_CHANNELS, DISTS_LAYERS, dists_channel_weights
from lossnet.errors import InputError
from lossnet.imageio import load_image
from lossnet.loss import PerceptualLoss, PerceptualMetric

DISTS_pt = pytest.importorskip("DISTS_pytorch.DISTS_pt")


@pytest.fixture(scope="module")
def vgg_path(shared_weights_dir):
    return shared_weights_dir / "vgg16-imagenet1k-v1-features.safetensors"


@pytest.fixture(scope="module")
def reference(vgg_path):
    """``DISTS_pytorch.DISTS()`` with its ``vgg16(pretrained=True)`` download replaced by the same
    torchvision VGG16 weights from ../shared (nothing else of the package is touched)."""
    from safetensors.torch import load_file
    from torchvision.models import vgg16

    def pretrained_vgg16(*args, **kwargs):
        model = vgg16(weights=None)
        model.load_state_dict(load_file(str(vgg_path)), strict=False)
        return model

    original = DISTS_pt.models.vgg16
    DISTS_pt.models.vgg16 = pretrained_vgg16
    try:
        ref = DISTS_pt.DISTS().eval()
    finally:
        DISTS_pt.models.vgg16 = original
    return ref


@pytest.fixture(scope="module")
def ours(vgg_path):
    return PerceptualMetric(preset="dists", weights=vgg_path)


def test_alpha_beta_are_the_package_weights(reference):
    ws = dists_channel_weights()
    assert [w.shape for w in ws] == [(2, c) for c in DISTS_CHANNELS]
    w_sum = reference.alpha.sum() + reference.beta.sum()
    alpha = torch.split(reference.alpha / w_sum, list(DISTS_CHANNELS), dim=1)
    beta = torch.split(reference.beta / w_sum, list(DISTS_CHANNELS), dim=1)
    for w, a, b in zip(ws, alpha, beta):
        torch.testing.assert_close(w[0], a.reshape(-1), atol=0, rtol=0)
        torch.testing.assert_close(w[1], b.reshape(-1), atol=0, rtol=0)
    assert abs(sum(float(w.sum()) for w in ws) - 1.0) < 1e-6


def test_equals_dists_on_example_images(reference, ours, lpips_examples):
    img = {k: load_image(lpips_examples / f"ex_{k}.png").unsqueeze(0) for k in ("ref", "p0", "p1")}
    for k in ("p0", "p1"):
        with torch.no_grad():
            theirs = reference(img["ref"], img[k])
        mine = ours(img["ref"], img[k])
        assert mine.shape == (1,)
        assert abs(float(mine) - float(theirs)) <= 1e-5, (k, float(mine), float(theirs))


def test_equals_dists_on_100_random_pairs(reference, ours):
    g = torch.Generator().manual_seed(11)
    a = torch.rand(100, 3, 32, 32, generator=g)
    b = torch.where(
        torch.arange(100).view(-1, 1, 1, 1) % 2 == 0,
        torch.rand(100, 3, 32, 32, generator=g),
        (a + 0.05 * torch.randn(100, 3, 32, 32, generator=g)).clamp(0, 1),
    )
    with torch.no_grad():
        theirs = torch.cat([reference(a[i : i + 25], b[i : i + 25]).reshape(-1) for i in range(0, 100, 25)])
    mine = torch.cat([ours(a[i : i + 25], b[i : i + 25]) for i in range(0, 100, 25)])
    assert (mine - theirs).abs().max().item() <= 1e-5


def test_loss_gradients_equal_dists(reference, vgg_path):
    g = torch.Generator().manual_seed(12)
    a = torch.rand(4, 3, 32, 32, generator=g)
    b = (a + 0.1 * torch.randn(4, 3, 32, 32, generator=g)).clamp(0, 1)
    x_ref = a.clone().requires_grad_()
    theirs = reference(x_ref, b, require_grad=True, batch_average=True)
    theirs.backward()
    loss = PerceptualLoss(preset="dists", weights=vgg_path)
    x = a.clone().requires_grad_()
    mine = loss(x, b)
    mine.backward()
    assert abs(mine.item() - theirs.item()) <= 1e-5
    scale = x_ref.grad.abs().max().item()
    assert (x.grad - x_ref.grad).abs().max().item() <= 1e-6
    assert (x.grad - x_ref.grad).abs().max().item() <= 1e-4 * scale  # relative to the largest gradient entry


def test_identical_is_zero_and_layer_terms_sum(ours):
    a = torch.rand(2, 3, 32, 32)
    assert torch.equal(ours(a, a.clone()), torch.zeros(2))
    b = torch.rand(2, 3, 32, 32)
    per = ours(a, b, per_layer=True)
    assert per.shape == (2, len(DISTS_LAYERS)) and (per > 0).all()
    torch.testing.assert_close(per.sum(1), ours(a, b))


def test_preset_layers_pooling_and_conflicts(ours):
    assert ours.network.pooling == "l2" and ours.layers == DISTS_LAYERS
    assert not ours.channels_last  # NCHW, as dists-pytorch (see PerceptualLoss's channels_last)
    assert ours.signature.split("|")[1] == "vgg16:l2pool" and "heads=dists-0.1" in ours.signature
    with pytest.raises(InputError, match="no spatial map"):
        ours.spatial_map(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    with pytest.raises(InputError, match="'dists' distance"):
        PerceptualMetric(preset="dists", distance="spatial", weights=None)
    with pytest.raises(InputError, match="vgg16"):
        PerceptualMetric(preset="dists", net="alexnet", weights=None)


def test_unweighted_dists_closed_form():
    # one channel, 2 positions: a = (1, 3), b = (2, 2): means 2, 2 -> l = 1; var_a = 1, var_b = 0, cov = 0
    a = torch.tensor([1.0, 3.0], dtype=torch.float64).reshape(1, 1, 1, 2)
    b = torch.tensor([2.0, 2.0], dtype=torch.float64).reshape(1, 1, 1, 2)
    s = (0 + 1e-6) / (1 + 0 + 1e-6)
    expected = 1.0 - 0.5 * (1.0 + s)
    assert compute_distance("dists", [a], [b]).item() == pytest.approx(expected, abs=1e-12)
