"""timm backbones as loss networks (issue #28): ``net="timm:<name>"``.

Independent truth: torchvision's ResNet-50 (the same weights copied into timm's), timm's own
``forward_intermediates`` / ``features_only`` outputs, timm's data configs, and gradcheck.
No weights are downloaded: random init, state dicts saved here, and a Hugging Face cache made here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")

from lossnet import PerceptualLoss, PerceptualMetric  # noqa: E402
from lossnet.errors import LossnetError, UnknownNetworkError, WeightsError  # noqa: E402
from lossnet.models.registry import get_spec, list_models  # noqa: E402
from lossnet.models.timm import describe  # noqa: E402
from lossnet.network import LossNetwork  # noqa: E402
from lossnet.signature import parse_signature  # noqa: E402

DINO = "timm:vit_small_patch14_dinov2"
CLIP = "timm:vit_base_patch16_clip_224"
ROOT = Path(__file__).resolve().parents[2]


def _save(state: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_timm_resnet50_with_torchvision_weights_equals_torchvision_resnet50(tmp_path):
    """Must-show: timm resnet50 holding torchvision's ResNet-50 weights (random, seeded) gives the
    features of lossnet's torchvision resnet50 at E, S, M, L (max abs diff <= 1e-5)."""
    import torchvision

    torch.manual_seed(0)
    tv = torchvision.models.resnet50()
    with torch.no_grad():  # non-trivial BN statistics, so that eval-mode BN is exercised
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = tv.state_dict()
    # the key mapping torchvision -> timm: timm's ResNet uses torchvision's names (conv1, bn1,
    # layer<i>.<j>.conv<k>/bn<k>, downsample.0/1, fc), so it is the identity -- checked, not assumed
    timm_keys = set(timm.create_model("resnet50").state_dict())
    mapping = {k: k for k in state}
    assert set(mapping.values()) == timm_keys
    path = _save({mapping[k]: v for k, v in state.items()}, tmp_path / "tv_resnet50_for_timm.safetensors")
    tv_path = _save(state, tmp_path / "tv_resnet50.safetensors")

    ours = LossNetwork("timm:resnet50", "E,S,M,L", weights=path)
    ref = LossNetwork("resnet50", "E,S,M,L", weights=tv_path)
    assert ours.nodes == ("act1", "layer1", "layer2", "layer4")
    assert ours.normalization == "imagenet"
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 96)
    a, b = ours(x), ref(x)
    diffs = {k: (a[k] - b[k]).abs().max().item() for k in "ESML"}
    print("timm resnet50 vs torchvision resnet50 max abs diff:", diffs)
    assert all(a[k].shape == b[k].shape for k in "ESML")
    assert max(diffs.values()) <= 1e-5


def test_extraction_points_follow_the_stated_rule():
    assert get_spec("timm:resnet50").layers == {"E": "act1", "S": "layer1", "M": "layer2", "L": "layer4"}
    assert get_spec("timm:convnext_tiny").layers == {"E": "stem", "S": "stages.0", "M": "stages.1", "L": "stages.3"}
    assert get_spec("timm:efficientnet_b0").layers == {
        "E": "blocks.0",
        "S": "blocks.1",
        "M": "blocks.2",
        "L": "blocks.6",
    }
    assert get_spec(DINO).layers == {"E": "patch_embed", "S": "blocks.2", "M": "blocks.5", "L": "blocks.11"}
    assert get_spec("timm:vit_large_patch14_dinov2").layers["L"] == "blocks.23"


def test_normalisation_comes_from_the_pretrained_config():
    from timm.data import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    net = LossNetwork(CLIP, "E", weights=None)
    assert torch.allclose(net.mean.flatten(), torch.tensor(OPENAI_CLIP_MEAN))
    assert torch.allclose(net.std.flatten(), torch.tensor(OPENAI_CLIP_STD))
    assert net.normalization.startswith("custom:")
    assert describe(DINO).mean == (0.485, 0.456, 0.406)
    # the label parses back to the very same statistics (heads files and signatures store it)
    again = LossNetwork(CLIP, "E", weights=None, normalize=net.normalization)
    assert torch.equal(again.mean, net.mean) and torch.equal(again.std, net.std)


@pytest.mark.parametrize("arch", [DINO, CLIP])
def test_vit_maps_equal_timms_forward_intermediates(arch):
    torch.manual_seed(0)
    net = LossNetwork(arch, "E,S,M,L", weights=None, normalize="none")
    assert net.extraction == "hooks"  # timm's dynamic-size ViTs branch on the input shape: no FX
    info = describe(arch)
    model = timm.create_model(info.name, **info.kwargs).eval()
    result = model.load_state_dict(net.body.state_dict(), strict=False)
    assert not result.unexpected_keys  # the body holds blocks 0..11 and the embeddings, nothing else
    assert {k.split(".")[0] for k in result.missing_keys} <= {"norm", "fc_norm", "head", "attn_pool"}
    x = torch.rand(2, 3, 64, 80)  # 64 and 80 are not multiples of 14: timm pads (documented)
    out = net(x)
    p = info.patch
    grid = (-(-64 // p), -(-80 // p))
    s, m, l_ = (int(net.nodes[i].split(".")[1]) for i in (1, 2, 3))
    with torch.no_grad():
        ref = model.forward_intermediates(x, indices=[s, m, l_], output_fmt="NCHW", intermediates_only=True)
    for key, r in zip("SML", ref):
        assert out[key].shape == (2, model.embed_dim, *grid)
        assert torch.equal(out[key], r)
    assert out["E"].shape == (2, model.embed_dim, *grid)


@pytest.mark.parametrize("arch", ["timm:convnext_tiny", "timm:efficientnet_b0"])
def test_cnn_maps_equal_timms_forward_intermediates(arch):
    torch.manual_seed(0)
    net = LossNetwork(arch, "S,M,L", weights=None, normalize="none")
    assert net.extraction == "fx"
    info = describe(arch)
    full = timm.create_model(info.name, pretrained=False).eval()
    result = full.load_state_dict(net.body.state_dict(), strict=False)
    assert not result.unexpected_keys and result.missing_keys  # the body is cut: the head is not kept
    fi = [f["module"] for f in full.feature_info]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = full.forward_intermediates(x, indices=[fi.index(n) for n in net.nodes], intermediates_only=True)
    for key, r in zip("SML", ref):
        assert torch.allclose(net(x)[key], r, atol=1e-6)


@pytest.mark.parametrize("arch", [DINO, CLIP])
def test_vit_loss_zero_on_identical_inputs_and_gradcheck(arch):
    """Must-show: random-init DINOv2 / CLIP ViT at E/S/M/L: identical inputs give 0, gradcheck passes."""
    torch.manual_seed(0)
    loss = PerceptualLoss(arch, "E,S,M,L", weights=None, distance="mse").double()
    x = torch.rand(1, 3, 20, 20, dtype=torch.float64)
    assert loss(x, x).item() == 0.0
    y = torch.rand(1, 3, 20, 20, dtype=torch.float64)
    assert loss(x, y).item() > 0
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: loss(a, y), (xg,), fast_mode=True, eps=1e-6, atol=1e-5)


def test_metric_signature_names_timm():
    sig = parse_signature(PerceptualMetric(DINO, "E,S", weights=None).signature)
    assert sig["arch"] == DINO and sig["layers"] == "E+S"
    assert sig["timm"] == timm.__version__.split("+")[0]
    assert sig["w"].startswith("none:sha256:")


def test_weights_file_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", **describe(DINO).kwargs)
    path = _save(model.state_dict(), tmp_path / "dino.safetensors")
    net = LossNetwork(DINO, "S", weights=path)
    assert torch.equal(
        net.body.state_dict()["blocks.0.attn.qkv.weight"], model.state_dict()["blocks.0.attn.qkv.weight"]
    )
    assert net.weights_source == str(path)
    pth = tmp_path / "dino.pth"
    torch.save(model.state_dict(), pth)
    assert torch.equal(
        LossNetwork(DINO, "S", weights=pth).body.state_dict()["pos_embed"], model.state_dict()["pos_embed"]
    )
    # a trimmed file (patch embedding + blocks 0..2) fits a network cut at S = blocks.2
    trimmed = {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith(("blocks.", "norm", "head")) or (k.startswith("blocks.") and int(k.split(".")[1]) <= 2)
    }
    cut = LossNetwork(DINO, "S", weights=_save(trimmed, tmp_path / "trimmed.safetensors"))
    assert not any(k.startswith("blocks.3") for k in cut.body.state_dict())
    x = torch.rand(1, 3, 28, 28)
    assert torch.equal(cut(x)["S"], net(x)["S"])
    bad = _save({"pos_embed": torch.zeros(1)}, tmp_path / "bad.safetensors")
    with pytest.raises(WeightsError, match="lack"):
        LossNetwork(DINO, "S", weights=bad)


def test_unknown_name_and_missing_extra_are_one_line(monkeypatch):
    with pytest.raises(UnknownNetworkError, match="vit_small_patch14_dinov2") as info:
        LossNetwork("timm:vit_smal_patch14_dinov2", "E", weights=None)
    assert "\n" not in str(info.value)
    import lossnet.extras as extras

    describe.cache_clear()
    get_spec.cache_clear()
    monkeypatch.setitem(extras.EXTRAS, "timm", ("timm_is_not_installed_here",))
    try:
        with pytest.raises(extras.MissingExtraError, match=r'pip install "lossnet\[timm\]"'):
            LossNetwork("timm:resnet18", "E", weights=None)
    finally:
        describe.cache_clear()
        get_spec.cache_clear()


def test_list_models_from_timm():
    names = list_models("*dinov2*", source="timm")
    assert DINO in names and all(n.startswith("timm:") for n in names)
    assert "vgg16" in list_models("vgg16*", source="all")


_HF_SCRIPT = """
import os, sys, torch
import lossnet, timm
from safetensors.torch import save_file
cache = os.environ["HF_HUB_CACHE"]
torch.manual_seed(3)
m = timm.create_model("resnet18")
repo = os.path.join(cache, "models--timm--resnet18.a1_in1k")
snap = os.path.join(repo, "snapshots", "0" * 40)
os.makedirs(snap); os.makedirs(os.path.join(repo, "refs"))
open(os.path.join(repo, "refs", "main"), "w").write("0" * 40)
save_file({k: v.contiguous() for k, v in m.state_dict().items()}, os.path.join(snap, "model.safetensors"))
from lossnet.network import LossNetwork
n = LossNetwork("timm:resnet18", "E,L")
assert torch.equal(n.body.state_dict()["layer4.1.conv2.weight"], m.state_dict()["layer4.1.conv2.weight"])
print(n.weights_source)
try:
    LossNetwork("timm:resnet34", "E")
except lossnet.errors.WeightsError as e:
    print("ERR", str(e).count(chr(10)), e)
"""


@pytest.mark.slow
def test_pretrained_weights_come_from_the_hugging_face_cache_offline(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), PYTHONPATH=str(ROOT / "src"))
    r = subprocess.run([sys.executable, "-c", _HF_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "timm pretrained: timm/resnet18.a1_in1k"
    assert lines[1].startswith("ERR 0 no pretrained weights for timm:resnet34")


def test_nets_cli_show_and_list(capsys):
    from lossnet.cli.main import main

    assert main(["nets", "show", "timm:resnet50"]) == 0
    out = capsys.readouterr().out
    for node in ("act1", "layer1", "layer2", "layer4"):
        assert node in out
    assert main(["nets", "list", "--source", "timm", "--pattern", "*dinov2*"]) == 0
    out = capsys.readouterr().out
    assert DINO in out and "vgg16" not in out


def test_errors_reach_the_user_as_lossnet_errors():
    with pytest.raises(LossnetError):
        PerceptualLoss("timm:resnet50", ["nope"], weights=None)


# --- the application: benchmarks, heads, sweep (need lossnet[bench]) ---------------------------------


@pytest.fixture(scope="module")
def bapps(tmp_path_factory):
    pytest.importorskip("scipy")
    from lossnet.bench.similarity.synthetic import write_synthetic_bapps

    root = tmp_path_factory.mktemp("timm_bapps")
    write_synthetic_bapps(root / "val", n_2afc=4, n_jnd=4, subsets_2afc=("cnn",), subsets_jnd=("cnn",), seed=7)
    write_synthetic_bapps(root / "train", n_2afc=6, n_jnd=0, subsets_2afc=("cnn",), split="train", seed=8)
    return root


@pytest.mark.parametrize("arch", [DINO, CLIP])
def test_bench_similarity_with_a_timm_vit_finishes_done(bapps, tmp_path, arch):
    import json

    from lossnet.cli.main import main

    out = tmp_path / "sim.json"
    argv = [
        "bench",
        "similarity",
        "--data",
        str(bapps / "val"),
        "--net",
        arch,
        "--layer",
        "E,S,M,L",
        "--weights",
        "none",
        "--subsets",
        "cnn",
        "--jnd-subsets",
        "cnn",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(tmp_path / "o"),
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 4 and all(r["status"] == "done" for r in runs.values())
    assert all(0 <= r["metrics"]["bapps.cnn/2afc"] <= 1 for r in runs.values())


def test_heads_fit_on_a_timm_net_writes_heads_that_load_and_score(bapps, tmp_path):
    from lossnet.cli.main import main
    from lossnet.heads.file import load_heads

    out = tmp_path / "dino_heads.safetensors"
    argv = [
        "heads",
        "fit",
        "--net",
        DINO,
        "--layers",
        "E,S,M,L",
        "--data",
        str(bapps / "train"),
        "--epochs",
        "1",
        "--decay-epochs",
        "0",
        "--weights",
        "none",
        "--batch-size",
        "4",
        "--size",
        "28",
        "--val",
        "none",
        "-o",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    h = load_heads(out)
    assert h.net == DINO and h.layers == ["patch_embed", "blocks.2", "blocks.5", "blocks.11"]
    assert [tuple(w.shape) for w in h.weights] == [(384,)] * 4
    torch.manual_seed(0)  # random init: the same seed gives both metrics the same network
    metric = PerceptualMetric(heads=out, weights=None)
    torch.manual_seed(0)
    plain = PerceptualMetric(DINO, "E,S,M,L", weights=None, channel_weights=h.weights)
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    d = metric(a, b)
    assert torch.allclose(d, plain(a, b)) and bool((d > 0).all())
    assert torch.equal(metric(a, a), torch.zeros(2))


def test_heads_fit_with_a_users_module(bapps, tmp_path):
    import torchvision

    from lossnet.bench.heads.fit import fit_heads

    torch.manual_seed(0)
    m = torchvision.models.resnet18().eval()
    res = fit_heads(
        dict(
            data=str(bapps / "train"),
            net="ignored",
            layers="relu,layer1",
            epochs=1,
            decay_epochs=0,
            batch_size=4,
            size=32,
            val="none",
        ),
        tmp_path / "h.safetensors",
        progress=False,
        model=m,
    )
    assert res.status == "done"
    metric = PerceptualMetric(model=m, heads=res.path)
    assert metric.net == "module:ResNet"
    assert metric(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)).item() > 0


def test_sweep_grid_with_a_timm_arch_plans_and_runs(bapps, tmp_path):
    from lossnet.cli.main import main

    grid = tmp_path / "g.toml"
    grid.write_text(f"""
[sweep]
archs = ["{DINO}", "vgg16"]
layers = ["E"]
seeds = [0]
preset = "quick"
weights = "none"

[benchmarks.similarity]
data = "{bapps / "val"}"
subsets_2afc = ["cnn"]
subsets_jnd = ["cnn"]
""")
    assert main(["sweep", "plan", str(grid)]) == 0
    store = tmp_path / "r.db"
    assert (
        main(["sweep", "run", str(grid), "--store", str(store), "--runs-dir", str(tmp_path / "runs"), "--workers", "1"])
        == 0
    )
    import sqlite3

    with sqlite3.connect(store) as db:
        rows = db.execute("select * from runs").fetchall()
    assert len(rows) == 2
    text = repr(rows)
    assert DINO in text and "'done'" in text and "failed" not in text


@pytest.mark.slow
def test_bench_superres_quick_with_a_clip_vit_finishes_done(tmp_path, shared_dir):
    import json

    from lossnet.cli.main import main

    sr = shared_dir / "data" / "sr"
    if not (sr / "t91").is_dir():
        pytest.skip("no ../shared/data/sr")
    out = tmp_path / "sr.json"
    argv = [
        "bench",
        "superres",
        "--preset",
        "quick",
        "--scale",
        "4",
        "--net",
        CLIP,
        "--layer",
        "S",
        "--weights",
        "none",
        "--train",
        str(sr / "t91"),
        "--test",
        f"set5={sr / 'set5'}",
        "--epochs",
        "1",
        "--iters-per-epoch",
        "5",
        "--val-images",
        "2",
        "--out",
        str(tmp_path / "o"),
        "--json",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    runs = json.loads(out.read_text())["runs"]
    assert [r["status"] for r in runs.values()] == ["done"]


def test_modern_backbones_example_grid_plans_80_runs():
    pytest.importorskip("scipy")
    from lossnet.runs.plan import expand_grid, load_grid

    points = expand_grid(load_grid(ROOT / "examples" / "sweeps" / "modern_backbones.toml"))
    assert len(points) == 5 * 4 * 4
    assert {p["net"] for p in points} == {"vgg16", "resnet50", "timm:convnext_tiny", DINO, CLIP}
    assert {p["benchmark"] for p in points} == {"similarity", "superres", "roads", "autoencoder"}
    for net in {p["net"] for p in points}:  # every name resolves, E/S/M/L included
        assert set(get_spec(net).layers) == set("ESML")


def test_sweep_estimate_times_a_timm_net_with_random_weights_and_downloads_nothing(tmp_path, monkeypatch):
    pytest.importorskip("scipy")
    import lossnet.runs.estimate as E

    monkeypatch.setitem(E.REAL_SIZES, "bapps", {"2afc/cnn": 16})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    grid = tmp_path / "g.toml"
    grid.write_text(
        f'[sweep]\narchs = ["{DINO}"]\nlayers = ["L"]\npreset = "paper"\nweights = "imagenet"\n'
        '[benchmarks.similarity]\nsubsets_2afc = ["cnn"]\nsubsets_jnd = []\nbatch_size = 8\n'
    )
    est = E.estimate_grid(grid, device="cpu", steps=1, progress=False, synthetic_root=tmp_path / "synth")
    (p,) = est.points
    assert p.steps_per_run == 16 // 8 and p.step_s > 0
    assert any("random weights" in n for n in est.notes)


def test_fx_traced_vit_dinov3_follows_the_input_size_and_loads_its_weight_file(tmp_path):
    """timm's DINOv3 (RoPE) traces with FX; the traced graph must not bake the trace-time size in,
    and the constants FX lifts out (RoPE periods) must not be required from a weight file."""
    arch = "timm:vit_small_patch16_dinov3"
    info = describe(arch)
    torch.manual_seed(0)
    model = timm.create_model(info.name, **info.kwargs).eval()
    path = _save(model.state_dict(), tmp_path / "dinov3.safetensors")
    net = LossNetwork(arch, "S,M,L", weights=path, normalize="none")
    assert net.extraction == "fx"
    assert not any("_tensor_constant" in k for k in net.body.state_dict())
    for size in ((64, 48), (96, 80)):
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            ref = model.forward_intermediates(x, indices=[2, 5, 11], output_fmt="NCHW", intermediates_only=True)
        out = net(x)
        for key, r in zip("SML", ref):
            assert out[key].shape == r.shape == (1, 384, size[0] // 16, size[1] // 16)
            assert torch.equal(out[key], r)


def test_a_timm_size_check_is_a_one_line_input_error():
    from lossnet.errors import InputError

    net = LossNetwork("timm:swin_tiny_patch4_window7_224", "S", weights=None)
    with pytest.raises(InputError, match=r"rejects input \(64, 64\)") as info:
        net(torch.rand(1, 3, 64, 64))
    assert "\n" not in str(info.value)
    assert net(torch.rand(1, 3, 224, 224))["S"].shape == (1, 96, 56, 56)  # NHWC stage output laid out NCHW
