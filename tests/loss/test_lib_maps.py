"""Spatial maps, per-layer values and masks, against lpips (``spatial=True``, ``retPerLayer``) and
hand-computed feature statistics."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from lossnet.distances import DISTANCES, MAP_DISTANCES, compute_distance, distance_map
from lossnet.errors import InputError
from lossnet.imageio import load_image
from lossnet.loss import PerceptualLoss, PerceptualMetric, perceptual_distance

LPIPS_NET = {"lpips-alex": "alex", "lpips-vgg": "vgg"}
ARCH = {"lpips-alex": "alexnet", "lpips-vgg": "vgg16"}


def _lpips(preset: str, linear: bool, state: dict, spatial: bool):
    lpips = pytest.importorskip("lpips")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net=LPIPS_NET[preset], lpips=linear, spatial=spatial, pnet_rand=True, verbose=False).eval()
    for name, sl in ref.net.named_children():
        if name.startswith("slice"):
            for idx, module in sl.named_children():
                own = {k.split(".", 2)[2]: v for k, v in state.items() if k.startswith(f"features.{idx}.")}
                if own:
                    module.load_state_dict(own)
    return ref


def _ours(preset: str, linear: bool, wpath) -> PerceptualMetric:
    if linear:
        return PerceptualMetric(preset=preset, weights=wpath)
    from lossnet.lpips_presets import PRESETS

    return PerceptualMetric(net=ARCH[preset], layers=PRESETS[preset].layers, distance="spatial", weights=wpath)


@pytest.fixture(scope="module")
def triplet(lpips_examples):
    return {k: load_image(lpips_examples / f"ex_{k}.png").unsqueeze(0) for k in ("ref", "p0", "p1")}


@pytest.mark.parametrize("preset", ["lpips-alex", "lpips-vgg"])
@pytest.mark.parametrize("linear", [True, False])
def test_maps_and_per_layer_equal_lpips(preset, linear, shared_weights_dir, triplet):
    from safetensors.torch import load_file

    wpath = shared_weights_dir / f"{ARCH[preset]}-imagenet1k-v1-features.safetensors"
    state = load_file(str(wpath))
    ref_map, ref_val = _lpips(preset, linear, state, True), _lpips(preset, linear, state, False)
    ours = _ours(preset, linear, wpath)
    g = torch.Generator().manual_seed(7)
    a = torch.cat([triplet["ref"], triplet["ref"], torch.rand(3, 3, 64, 64, generator=g)])
    b = torch.cat([triplet["p0"], triplet["p1"], torch.rand(3, 3, 64, 64, generator=g)])
    with torch.no_grad():
        theirs, theirs_layers = ref_map(a, b, retPerLayer=True, normalize=True)
        theirs_val, theirs_val_layers = ref_val(a, b, retPerLayer=True, normalize=True)
    mine = ours.spatial_map(a, b)
    assert mine.shape == theirs.shape == (5, 1, 64, 64)
    assert (mine - theirs).abs().max().item() <= 1e-5
    mine_layers = ours.spatial_map(a, b, per_layer=True)
    assert mine_layers.shape == (5, len(theirs_layers), 64, 64)
    for i, t in enumerate(theirs_layers):
        assert (mine_layers[:, i : i + 1] - t).abs().max().item() <= 1e-5
    per_layer = ours(a, b, per_layer=True)
    assert per_layer.shape == (5, len(theirs_val_layers))
    assert (per_layer - torch.cat([t.reshape(-1, 1) for t in theirs_val_layers], 1)).abs().max().item() <= 1e-5
    torch.testing.assert_close(per_layer.sum(1), ours(a, b), rtol=1e-6, atol=1e-7)
    assert (ours(a, b) - theirs_val.reshape(-1)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("distance", MAP_DISTANCES)
def test_full_resolution_map_mean_is_the_distance(distance):
    """At a layer with the input's resolution (VGG relu1_2) the map needs no upsampling: its
    spatial mean is the distance itself."""
    torch.manual_seed(0)
    m = PerceptualMetric(net="vgg16", layers=["relu1_2"], distance=distance, weights=None)
    a, b = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    mp = m.spatial_map(a, b)
    assert mp.shape == (2, 1, 24, 24) and (mp >= 0).all()
    torch.testing.assert_close(mp.mean((1, 2, 3)), m(a, b), rtol=1e-5, atol=1e-7)


def test_map_layer_weights_and_closed_form():
    # one layer 2x2 -> upsampled to 4x4; spatial per-position values hand-computed: (3,4)v(3,4) -> 0, (1,0)v(0,2) -> 2
    a = torch.tensor([3.0, 1.0, 3.0, 1.0, 4.0, 0.0, 4.0, 0.0], dtype=torch.float64).reshape(1, 2, 2, 2)
    b = torch.tensor([3.0, 0.0, 3.0, 0.0, 4.0, 2.0, 4.0, 2.0], dtype=torch.float64).reshape(1, 2, 2, 2)
    mp = distance_map("spatial", [a], [b], size=(2, 2))
    torch.testing.assert_close(mp[0, 0], torch.tensor([[0.0, 2.0], [0.0, 2.0]], dtype=torch.float64))
    up = distance_map("spatial", [a], [b], layer_weights=[3.0], size=(4, 4))
    expected = 3.0 * F.interpolate(mp, size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(up, expected)


@pytest.mark.parametrize("name", sorted(set(DISTANCES) - set(MAP_DISTANCES)))
def test_global_distances_have_no_map(name):
    a = torch.rand(1, 3, 4, 4)
    with pytest.raises(InputError, match="no spatial map"):
        distance_map(name, [a], [a])


def test_loss_map_has_gradient():
    torch.manual_seed(0)
    fn = PerceptualLoss("alexnet", ["relu1", "relu2"], distance="spatial", weights=None)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    mp = fn.spatial_map(x, torch.rand(2, 3, 32, 32))
    assert mp.shape == (2, 1, 32, 32)
    mp[:, :, :8, :8].sum().backward()
    assert x.grad.abs().sum() > 0
    assert fn.spatial_map(x, torch.rand(2, 3, 32, 32), per_layer=True).shape == (2, 2, 32, 32)


# ---- masks ----------------------------------------------------------------------------------------

#: A-DISTS refuses masks (sliding-window statistics; tests/distances/test_adists.py checks the refusal).
MASKABLE = [n for n in DISTANCES if n != "adists"]


@pytest.mark.parametrize("name", MASKABLE)
def test_mask_of_ones_equals_unmasked(name):
    g = torch.Generator().manual_seed(3)
    fa = [
        torch.rand(2, 4, 6, 6, generator=g, dtype=torch.float64),
        torch.rand(2, 5, 3, 3, generator=g, dtype=torch.float64),
    ]
    fb = [
        torch.rand(2, 4, 6, 6, generator=g, dtype=torch.float64),
        torch.rand(2, 5, 3, 3, generator=g, dtype=torch.float64),
    ]
    ones = torch.ones(2, 1, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(compute_distance(name, fa, fb, masks=ones), compute_distance(name, fa, fb))
    # constant scale does not matter (weights are normalised)
    torch.testing.assert_close(compute_distance(name, fa, fb, masks=0.3 * ones), compute_distance(name, fa, fb))


@pytest.mark.parametrize("name", MASKABLE)
def test_binary_mask_equals_distance_on_the_region(name):
    """A mask that is 1 on a block of whole feature positions gives the distance of that crop
    (for every distance: masked means, Gram matrices, variances are the crop's)."""
    g = torch.Generator().manual_seed(4)
    a = torch.rand(3, 4, 8, 8, generator=g, dtype=torch.float64)
    b = torch.rand(3, 4, 8, 8, generator=g, dtype=torch.float64)
    mask = torch.zeros(3, 1, 16, 16, dtype=torch.float64)
    mask[:, :, 4:12, 0:8] = 1.0  # input pixels 4..11 x 0..7 -> feature positions 2..5 x 0..3
    masked = compute_distance(name, [a], [b], masks=mask)
    crop = compute_distance(name, [a[:, :, 2:6, 0:4]], [b[:, :, 2:6, 0:4]])
    torch.testing.assert_close(masked, crop)


def test_masked_metric_and_loss():
    torch.manual_seed(0)
    m = PerceptualMetric(net="vgg16", layers=["relu1_2", "relu2_2"], distance="mse", weights=None)
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    b[:, :, :, 16:] = a[:, :, :, 16:]  # right half identical
    left = torch.zeros(1, 1, 32, 32)
    left[..., :16] = 1
    right = 1 - left
    # masked value = hand-computed: mean over the masked positions of the per-position mean squared diff
    fa, fb = m.features(a), m.features(b)
    by_hand = sum(((x - y) ** 2).mean(1)[:, :, : x.shape[-1] // 2].mean((1, 2)) for x, y in zip(fa, fb))
    torch.testing.assert_close(m(a, b, mask=left), by_hand, rtol=1e-5, atol=1e-7)
    assert (m(a, b, mask=right) < 0.2 * m(a, b, mask=left)).all()  # only boundary effects on the identical half
    torch.manual_seed(0)
    fn = PerceptualLoss("vgg16", ["relu1_2", "relu2_2"], distance="mse", weights=None, reduction="none")
    x = a.clone().requires_grad_()
    torch.testing.assert_close(fn(x, b, mask=left), m(a, b, mask=left), rtol=1e-5, atol=1e-7)
    fn(x, b, mask=left).sum().backward()
    assert x.grad[..., 24:].abs().max() == 0  # beyond the receptive field of the masked half: no gradient
    torch.testing.assert_close(
        perceptual_distance(
            a, b, net="vgg16", layers=["relu1_2", "relu2_2"], distance="mse", weights=None, mask=left
        ).shape,
        torch.Size([2]),
    )


def test_mask_errors():
    a = torch.rand(2, 3, 4, 4)
    with pytest.raises(InputError, match="non-negative"):
        compute_distance("mse", [a], [a], masks=-torch.ones(2, 1, 4, 4))
    with pytest.raises(InputError, match=r"\(N, 1, H, W\)"):
        compute_distance("mse", [a], [a], masks=torch.ones(2, 3, 4, 4))
    with pytest.raises(InputError, match="batch size"):
        compute_distance("mse", [a], [a], masks=torch.ones(3, 1, 4, 4))


def test_functional_form_maps_and_per_layer(monkeypatch):
    from lossnet.loss import functional as loss_mod

    monkeypatch.setattr(loss_mod, "_CACHE", {})
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    kw = dict(net="alexnet", layers=["relu1", "relu2"], distance="spatial", weights=None)
    torch.manual_seed(0)
    value = perceptual_distance(a, b, **kw)
    m = loss_mod._CACHE[next(iter(loss_mod._CACHE))]
    torch.testing.assert_close(perceptual_distance(a, b, **kw, per_layer=True).sum(1), value)
    torch.testing.assert_close(perceptual_distance(a, b, **kw, spatial=True), m.spatial_map(a, b))
    assert len(loss_mod._CACHE) == 1
