"""Argument handling of PerceptualLoss / PerceptualMetric / perceptual_distance: explicit values that
contradict a preset or heads file, the VGG-only default layer, non-tensor inputs, layer_weights
validation and the list of presets. Random weights (weights=None): nothing is downloaded."""

from __future__ import annotations

import math

import pytest
import torch

from lossnet.dists_preset import DISTS_PRESET
from lossnet.errors import InputError
from lossnet.loss import PerceptualLoss, PerceptualMetric, perceptual_distance
from lossnet.lpips_presets import PRESETS


def _x():
    torch.manual_seed(0)
    return torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


# -- 1. explicit arguments that equal the class defaults are not dropped next to a preset / heads file


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(preset="lpips-vgg", distance="mse"), "preset 'lpips-vgg' uses the 'spatial' distance, not 'mse'"),
        (dict(preset="lpips-alex", net="vgg16"), "preset 'lpips-alex' uses alexnet, not net='vgg16'"),
        (dict(preset="lpips-vgg", layers=("relu2_2",)), "preset 'lpips-vgg' uses layers"),
        (dict(preset="lpips-vgg", layers="relu2_2"), "preset 'lpips-vgg' uses layers"),
        (dict(preset="dists", distance="mse"), "preset 'dists' uses the 'dists' distance, not 'mse'"),
    ],
)
def test_loss_explicit_defaults_conflicting_with_preset_raise(kwargs, expected):
    with pytest.raises(InputError) as exc:
        PerceptualLoss(weights=None, **kwargs)
    assert _one_line(exc).startswith(expected)
    # the same message as PerceptualMetric gives
    with pytest.raises(InputError) as exc_m:
        PerceptualMetric(weights=None, **kwargs)
    assert str(exc_m.value) == str(exc.value)


def test_loss_explicit_defaults_conflicting_with_heads_file_raise(tmp_path):
    from lossnet.heads import export_lpips_heads

    path = export_lpips_heads("alex", tmp_path / "alex.safetensors")
    for kwargs in (dict(distance="mse"), dict(net="vgg16"), dict(layers="relu1")):
        with pytest.raises(InputError) as exc:
            PerceptualLoss(heads=path, weights=None, **kwargs)
        assert str(path) in _one_line(exc)
    assert PerceptualLoss(heads=path, weights=None).distance.name == "spatial"


def test_loss_defaults_unchanged_with_and_without_preset():
    torch.manual_seed(0)
    default = PerceptualLoss(weights=None)
    torch.manual_seed(0)
    explicit = PerceptualLoss("vgg16", ("relu2_2",), "mse", weights=None)
    assert (default.net, default.layers, default.distance.name) == ("vgg16", ("relu2_2",), "mse")
    assert default.signature == explicit.signature
    p = PerceptualLoss(preset="lpips-vgg", weights=None)
    assert (p.net, p.layers, p.distance.name) == ("vgg16", PRESETS["lpips-vgg"].layers, "spatial")
    # agreeing explicit values are fine
    q = PerceptualLoss(preset="lpips-vgg", net="vgg16", distance="spatial", weights=None)
    assert (q.net, q.layers, q.distance.name) == (p.net, p.layers, p.distance.name)


# -- 2. the default layer relu2_2 exists only in VGG16/VGG19

_BUILDERS = {
    "loss": lambda **kw: PerceptualLoss(weights=None, **kw),
    "metric": lambda **kw: PerceptualMetric(weights=None, **kw),
    "function": lambda **kw: perceptual_distance(*_x(), weights=None, **kw),
}


@pytest.mark.parametrize("api", list(_BUILDERS))
@pytest.mark.parametrize("net", ["alexnet", "resnet18", "vgg11"])
def test_non_vgg16_net_without_layers_says_no_layers_given(api, net):
    with pytest.raises(InputError) as exc:
        _BUILDERS[api](net=net)
    msg = _one_line(exc)
    assert f"no layers given for net={net!r}" in msg and "relu2_2" in msg and "VGG" in msg
    assert "layers='E'/'S'/'M'/'L'" in msg and f"lossnet nets show {net}" in msg
    assert "unknown layer" not in msg


def test_net_without_extraction_points_suggests_node_names():
    with pytest.raises(InputError) as exc:
        PerceptualLoss(net="vgg13", weights=None)
    msg = _one_line(exc)
    assert "no layers given" in msg and "'E'" not in msg and "layers=<node name>" in msg


def test_default_layer_works_where_it_exists_and_explicit_layers_work_elsewhere():
    assert PerceptualMetric(net="vgg19", weights=None).layers == ("relu2_2",)
    assert PerceptualLoss(weights=None).layers == ("relu2_2",)
    x, y = _x()
    assert perceptual_distance(x, y, net="alexnet", layers="E", weights=None).shape == (2,)


# -- 3. non-tensor inputs: one-line InputError naming the argument


def test_loss_non_tensor_inputs():
    x, y = _x()
    loss = PerceptualLoss(weights=None)
    cases = [
        ((x, y.numpy()), "target: expected a torch.Tensor (or its features from target_features), got ndarray"),
        ((x.tolist(), y), "pred: expected a torch.Tensor, got list"),
        ((x.numpy(), y), "pred: expected a torch.Tensor, got ndarray"),
        ((x, y.tolist()), "target: expected a torch.Tensor (or its features from target_features), got list of list"),
    ]
    for args, expected in cases:
        for fn in (loss, loss.spatial_map):
            with pytest.raises(InputError) as exc:
                fn(*args)
            assert _one_line(exc) == expected
    # precomputed target features (list or dict) still work
    ft = loss.target_features(y)
    ref = loss(x, y)
    assert torch.equal(loss(x, ft), ref) and torch.equal(loss(x, dict(zip(loss.layers, ft))), ref)


def test_functional_and_metric_non_tensor_inputs():
    x, y = _x()
    for args, expected in [
        ((x.tolist(), y.tolist()), "a: expected a torch.Tensor, got list"),
        ((x, y.numpy()), "b: expected a torch.Tensor, got ndarray"),
    ]:
        with pytest.raises(InputError) as exc:
            perceptual_distance(*args, weights=None)
        assert _one_line(exc) == expected
        with pytest.raises(InputError) as exc:
            PerceptualMetric(weights=None)(*args)
        assert _one_line(exc) == expected


# -- 4. layer_weights: finite, >= 0, one per layer, at construction


@pytest.mark.parametrize("api", list(_BUILDERS))
@pytest.mark.parametrize(
    "layer_weights, expected",
    [
        ([float("nan")], "finite and >= 0"),
        ([math.inf], "finite and >= 0"),
        ([-1.0], "finite and >= 0"),
        ([1.0, 2.0], "2 layer weights for 1 layers"),
        ([None], "must be numbers"),
        (0.5, "sequence of numbers"),
    ],
)
def test_bad_layer_weights_are_refused(api, layer_weights, expected):
    with pytest.raises(InputError, match=expected) as exc:
        _BUILDERS[api](layer_weights=layer_weights)
    _one_line(exc)


def test_good_layer_weights_are_used():
    x, y = _x()
    loss = PerceptualLoss(layer_weights=[2.0], weights=None)
    base = PerceptualLoss(weights=None)
    base.load_state_dict(loss.state_dict())
    torch.testing.assert_close(loss(x, y), 2 * base(x, y))
    assert PerceptualLoss(layer_weights=[0.0], weights=None)(x, y).item() == 0.0


# -- 5. an unknown preset lists every accepted preset, dists included


@pytest.mark.parametrize("api", list(_BUILDERS))
def test_unknown_preset_lists_every_preset(api):
    with pytest.raises(InputError) as exc:
        _BUILDERS[api](preset="lpips-resnet")
    msg = _one_line(exc)
    assert msg.startswith("unknown preset 'lpips-resnet'")
    for name in [*PRESETS, DISTS_PRESET]:
        assert name in msg
