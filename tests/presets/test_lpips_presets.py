"""LPIPS presets against the ``lpips`` package itself, with identical backbone weights."""

from __future__ import annotations

import warnings

import pytest
import torch

from lossnet.errors import InputError
from lossnet.imageio import load_image
from lossnet.loss import PerceptualMetric
from lossnet.lpips_presets import PRESETS, lpips_heads, lpips_version

lpips = pytest.importorskip("lpips")

LPIPS_NET = {"lpips-alex": "alex", "lpips-vgg": "vgg", "lpips-squeeze": "squeeze"}


def _reference(preset: str, linear: bool, backbone_state: dict | None, seed: int = 0) -> "lpips.LPIPS":
    """``lpips.LPIPS`` with its trunk replaced by ``backbone_state`` (torchvision ``features.*`` keys),
    or random weights (seeded) when None. ``pnet_rand=True`` so nothing is downloaded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        ref = lpips.LPIPS(net=LPIPS_NET[preset], lpips=linear, pnet_rand=True, verbose=False).eval()
    if backbone_state is not None:
        for slice_name, sl in ref.net.named_children():
            if not slice_name.startswith("slice"):
                continue
            for idx, module in sl.named_children():
                own = {k.split(".", 2)[2]: v for k, v in backbone_state.items() if k.startswith(f"features.{idx}.")}
                if own:
                    module.load_state_dict(own)
    return ref


def _backbone_state_from_lpips(ref) -> dict:
    """The random trunk of an lpips model, as a torchvision ``features.*`` state dict."""
    out = {}
    for slice_name, sl in ref.net.named_children():
        if slice_name.startswith("slice"):
            for idx, module in sl.named_children():
                for k, v in module.state_dict().items():
                    out[f"features.{idx}.{k}"] = v.clone()
    return out


def _ours(preset: str, linear: bool, weights_path, tmp_path=None) -> PerceptualMetric:
    p = PRESETS[preset]
    if linear:
        return PerceptualMetric(preset=preset, weights=weights_path)
    return PerceptualMetric(net=p.arch, layers=p.layers, distance="spatial", weights=weights_path)


def _shared_weights(shared_weights_dir, arch):
    return shared_weights_dir / f"{arch}-imagenet1k-v1-features.safetensors"


def test_scaling_layer_equals_imagenet_normalisation():
    from lossnet.network import IMAGENET_MEAN, IMAGENET_STD

    x = torch.rand(2, 3, 8, 8)
    scaled = lpips.lpips.ScalingLayer()(x * 2 - 1)
    ours = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(scaled, ours, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("preset", ["lpips-alex", "lpips-vgg", "lpips-squeeze"])
def test_heads_are_the_lpips_package_heads(preset):
    ref = _reference(preset, True, None)
    heads = lpips_heads(preset)
    assert len(heads) == len(ref.lins) == len(PRESETS[preset].layers)
    for h, lin in zip(heads, ref.lins):
        torch.testing.assert_close(h, lin.model[1].weight.detach().reshape(-1), atol=0, rtol=0)
    assert lpips_version()


@pytest.mark.parametrize("preset,arch", [("lpips-alex", "alexnet"), ("lpips-vgg", "vgg16")])
@pytest.mark.parametrize("linear", [True, False])
def test_equals_lpips_on_example_triplet(preset, arch, linear, shared_weights_dir, lpips_examples):
    from safetensors.torch import load_file

    wpath = _shared_weights(shared_weights_dir, arch)
    ref = _reference(preset, linear, load_file(str(wpath)))
    ours = _ours(preset, linear, wpath)
    img = {k: load_image(lpips_examples / f"ex_{k}.png").unsqueeze(0) for k in ("ref", "p0", "p1")}
    with torch.no_grad():
        for k in ("p0", "p1"):
            theirs = ref(img["ref"], img[k], normalize=True).reshape(-1)
            mine = ours(img["ref"], img[k])
            assert mine.shape == (1,)
            assert abs(float(mine) - float(theirs)) <= 1e-5, (k, float(mine), float(theirs))


@pytest.mark.parametrize("preset,arch", [("lpips-alex", "alexnet"), ("lpips-vgg", "vgg16")])
@pytest.mark.parametrize("linear", [True, False])
def test_equals_lpips_on_100_random_pairs(preset, arch, linear, shared_weights_dir):
    from safetensors.torch import load_file

    wpath = _shared_weights(shared_weights_dir, arch)
    ref = _reference(preset, linear, load_file(str(wpath)))
    ours = _ours(preset, linear, wpath)
    g = torch.Generator().manual_seed(1)
    size = 32 if arch == "alexnet" else 24
    a = torch.rand(100, 3, size, size, generator=g)
    # a mix of unrelated and slightly perturbed pairs, so both small and large distances are covered
    b = torch.where(
        torch.arange(100).view(-1, 1, 1, 1) % 2 == 0,
        torch.rand(100, 3, size, size, generator=g),
        (a + 0.05 * torch.randn(100, 3, size, size, generator=g)).clamp(0, 1),
    )
    with torch.no_grad():
        theirs = torch.cat([ref(a[i : i + 25], b[i : i + 25], normalize=True).reshape(-1) for i in range(0, 100, 25)])
        mine = torch.cat([ours(a[i : i + 25], b[i : i + 25]) for i in range(0, 100, 25)])
    assert (mine - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("linear", [True, False])
def test_squeeze_equals_lpips_with_copied_random_weights(linear, tmp_path):
    from safetensors.torch import save_file

    ref = _reference("lpips-squeeze", linear, None, seed=3)
    wpath = tmp_path / "squeeze-random.safetensors"
    save_file(_backbone_state_from_lpips(ref), str(wpath))
    ours = _ours("lpips-squeeze", linear, wpath)
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(20, 3, 48, 48, generator=g), torch.rand(20, 3, 48, 48, generator=g)
    with torch.no_grad():
        theirs = ref(a, b, normalize=True).reshape(-1)
    mine = ours(a, b)
    assert (mine - theirs).abs().max().item() <= 1e-5


def test_input_range_minus_one_one_matches_lpips_default(shared_weights_dir):
    from safetensors.torch import load_file

    wpath = _shared_weights(shared_weights_dir, "alexnet")
    ref = _reference("lpips-alex", True, load_file(str(wpath)))
    ours = PerceptualMetric(preset="lpips-alex", weights=wpath, input_range=(-1, 1))
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1, torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        theirs = ref(a, b).reshape(-1)  # lpips's own convention: [-1, 1]
    assert (ours(a, b) - theirs).abs().max().item() <= 1e-5
    with pytest.raises(InputError, match=r"input_range=\(-1, 1\)"):
        PerceptualMetric(preset="lpips-alex", weights=wpath)(a, b)


def test_lpips_gradient_nan_where_ours_is_finite():
    """lpips's ``x / (sqrt(sum x^2) + eps)`` gives a NaN gradient where a feature vector is all zero
    (sqrt'(0) is infinite), e.g. for identical inputs with a dead position; our spatial distance
    puts eps under the root and stays finite.

    (Through lpips's own ReLU trunks the NaN is masked by ReLU's backward -- a zero vector at a ReLU
    output has all pre-activations <= 0 -- so it bites on non-ReLU taps and feature-level use.)"""
    from lossnet.distances import spatial

    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 8, 4, 4, generator=g, dtype=torch.float64)
    f[:, :, 1, 2] = 0.0  # one all-zero feature vector per sample
    w = torch.rand(8, generator=g, dtype=torch.float64)

    fa, fb = f.clone().requires_grad_(), f.clone()
    theirs = ((lpips.normalize_tensor(fa) - lpips.normalize_tensor(fb)) ** 2 * w.view(1, -1, 1, 1)).sum(1).mean((1, 2))
    theirs.sum().backward()
    assert torch.isnan(fa.grad).any()

    ga = f.clone().requires_grad_()
    ours = spatial([ga], [f.clone()], channel_weights=[w])
    ours.sum().backward()
    torch.testing.assert_close(ours, theirs.detach(), atol=0, rtol=0)  # both exactly 0
    assert torch.isfinite(ga.grad).all()


def test_preset_conflicts_are_errors():
    with pytest.raises(InputError, match="alexnet"):
        PerceptualMetric(net="vgg16", preset="lpips-alex", weights=None)
    with pytest.raises(InputError, match="spatial"):
        PerceptualMetric(preset="lpips-alex", distance="mse", weights=None)
    with pytest.raises(InputError, match="unknown preset"):
        PerceptualMetric(preset="lpips-resnet", weights=None)
