"""Exact tiled evaluation (``PerceptualMetric(..., tile=T)``, :mod:`lossnet.loss.tiled`): the
tiled value equals the whole-image value, and tiling is refused where it cannot be exact."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from lossnet.errors import InputError
from lossnet.loss import PerceptualMetric
from lossnet.loss.tiled import TilingError, tiled_distance


def _pair(seed=0, size=(150, 230), n=(2, 1)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n[0], 3, *size, generator=g), torch.rand(n[1], 3, *size, generator=g)


def _twins(tile, **kw):
    whole = PerceptualMetric(weights=None, **kw)
    tiled = PerceptualMetric(weights=None, tile=tile, **kw)
    tiled.load_state_dict(whole.state_dict())
    return whole, tiled


CONFIGS = {
    "lpips-vgg": dict(preset="lpips-vgg"),
    "lpips-alex": dict(preset="lpips-alex"),
    "lpips-squeeze": dict(preset="lpips-squeeze"),  # ceil_mode pooling, channel concatenation
    "dists": dict(preset="dists"),  # L2 pooling, the image itself as a layer, moment statistics
    "vgg16-spatial-multi": dict(net="vgg16", layers=["relu1_2", "relu3_3", "relu5_3"], distance="spatial"),
    "vgg16-L-mse": dict(net="vgg16", layers="L", distance="mse"),
    "vgg16-M-gram": dict(net="vgg16", layers="M", distance="gram"),
    "vgg16-M-meanpool": dict(net="vgg16", layers="M", distance="meanpool"),
    "resnet18-l1": dict(net="resnet18", layers=["layer2"], distance="l1"),  # BN (eval) and residual sums
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_tiled_equals_whole_image(name):
    # a size that is not a multiple of the tile or the stride: partial last tiles, border padding
    whole, tiled = _twins(64, **CONFIGS[name])
    a, b = _pair()
    want, got = whole(a, b), tiled(a, b)
    assert got.shape == want.shape == (2,)
    assert torch.allclose(got, want, rtol=0, atol=1e-6 * max(1.0, float(want.abs().max()))), (got, want)
    assert float(want.min()) > 0  # not a trivial 0 == 0


def test_per_layer_terms_and_weights():
    whole, tiled = _twins(64, net="vgg16", layers=["relu2_2", "relu4_3"], distance="spatial", layer_weights=[0.3, 2.0])
    a, b = _pair(1, size=(97, 131))
    assert torch.allclose(tiled(a, b, per_layer=True), whole(a, b, per_layer=True), atol=1e-6)


def test_image_smaller_than_tile_is_one_tile():
    whole, tiled = _twins(256, preset="lpips-alex")
    a, b = _pair(2, size=(64, 64))
    assert torch.allclose(tiled(a, b), whole(a, b), atol=1e-7)


def test_a_sliver_at_the_end_joins_the_previous_tile():
    # AlexNet relu1 (11x11, stride 4): halo 4 before, 8 after; a 1-pixel last tile alone would give
    # a 5-pixel crop, smaller than the kernel
    whole, tiled = _twins(32, net="alexnet", layers=["relu1"], distance="spatial")
    a, b = _pair(7, size=(65, 97))
    assert torch.allclose(tiled(a, b), whole(a, b), atol=1e-6)


def test_without_the_halo_the_value_differs():
    # the test can fail: drop the halo and the interior tile edges see zero padding
    whole, tiled = _twins(64, net="vgg16", layers="L", distance="spatial")
    a, b = _pair(3)
    bad = dataclasses.replace(tiled._tile_plan, halo_before=(0, 0), halo_after=(0, 0))
    with torch.inference_mode():
        wrong = tiled_distance(tiled, a, b, bad)
    assert float((wrong - whole(a, b)).abs().max()) > 1e-3
    assert torch.allclose(tiled(a, b), whole(a, b), atol=1e-6)


def test_halo_is_the_receptive_field_on_the_stride_grid():
    _, tiled = _twins(64, net="vgg16", layers=["relu1_2"], distance="mse")
    plan = tiled._tile_plan
    # relu1_2: two 3x3 convolutions, padding 1: one position depends on pixels i-2 .. i+2
    assert plan.grid == 1 and plan.halo_before == (2, 2) and plan.halo_after == (2, 2)
    _, tiled = _twins(64, net="vgg16", layers=["relu2_2"], distance="mse")
    # by hand: conv, conv -> [i-2, i+2]; 2x2 max pool, stride 2 -> [2i-2, 2i+1+2]; two more 3x3
    # convolutions at stride 2 add 2*1 each side twice -> [2i-6, 2i+7]; 6 is on the stride-2 grid
    plan = tiled._tile_plan
    assert plan.grid == 2 and plan.halo_before == (6, 6) and plan.halo_after == (7, 7)


def test_refused_with_a_reason():
    with pytest.raises(TilingError, match="BatchNorm2d.*train mode"):
        PerceptualMetric(net="resnet18", layers=["layer1"], weights=None, loss_net_mode="train", tile=64)
    with pytest.raises(TilingError, match="global pooling"):
        PerceptualMetric(net="resnet18", layers=["avgpool"], distance="mse", weights=None, tile=64)
    with pytest.raises(TilingError, match="vision transformer|attention"):
        PerceptualMetric(
            net="vit_b_16", layers=["encoder.layers.encoder_layer_1"], distance="mse", weights=None, tile=64
        )
    with pytest.raises(InputError, match="multiple of .*stride 16"):
        PerceptualMetric(preset="lpips-vgg", weights=None, tile=100)
    with pytest.raises(InputError, match="positive integer"):
        PerceptualMetric(preset="lpips-vgg", weights=None, tile=0)
    m = PerceptualMetric(preset="lpips-alex", weights=None, tile=64)
    a, b = _pair(4, size=(64, 64))
    with pytest.raises(InputError, match="mask"):
        m(a, b, mask=torch.ones(1, 1, 64, 64))


def test_cli_tile_equals_whole(tmp_path, capsys):
    from lossnet.cli import main as cli_main

    rng = np.random.default_rng(5)
    paths = []
    for i in range(2):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(120, 200, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    common = [
        "similarity",
        *paths,
        "--net",
        "alexnet",
        "--layer",
        "relu2,relu5",
        "--distance",
        "spatial",
        "--weights",
        "none",
    ]
    torch.manual_seed(0)
    assert cli_main.main(common) == 0
    whole = float(capsys.readouterr().out)
    torch.manual_seed(0)
    assert cli_main.main([*common, "--tile", "64"]) == 0
    assert abs(float(capsys.readouterr().out) - whole) < 2e-6
    assert cli_main.main([*common, "--tile", "60"]) != 0
    assert "multiple" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    "kw",
    [dict(preset="lpips-vgg"), dict(net="vgg16", layers="L", distance="spatial"), dict(preset="dists")],
    ids=["lpips-vgg", "vgg16-L-spatial", "dists"],
)
def test_1024_real_weights(kw, shared_weights_dir):
    # the must-show: a 1024x1024 pair, ImageNet VGG16, tiles of 256
    whole = PerceptualMetric(weights_dir=shared_weights_dir, **kw)
    tiled = PerceptualMetric(weights_dir=shared_weights_dir, tile=256, **kw)
    a, b = _pair(6, size=(1024, 1024), n=(1, 1))
    b = 0.7 * a + 0.3 * b  # a distorted copy, a realistic distance
    assert abs(float(tiled(a, b)[0]) - float(whole(a, b)[0])) <= 1e-5
