"""The package face: public names on ``lossnet``, lazy import (no torch at ``import lossnet``),
the torchvision hook, a torch-free CLI parser, ``--debug`` anywhere, and ``WeightsSpec``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lossnet
from lossnet.errors import LossnetError, UnknownNetworkError, WeightsError
from lossnet.weights import WeightsSpec

SRC = Path(__file__).resolve().parents[2] / "src"

# CLI modules that must build their parsers without torch (cli/bench, sweep, runs, report are
# checked by their owners; the timing test below only reports their cost).
LIGHT_CLI_MODULES = (
    "lossnet.cli.main",
    "lossnet.cli.common",
    "lossnet.cli.demo",
    "lossnet.cli.nets",
    "lossnet.cli.weights",
    "lossnet.cli.similarity",
)
HEAVY = ("torch", "torchvision", "numpy")


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, *args, "-c", code], capture_output=True, text=True, env=env, check=True)


# --- public names -------------------------------------------------------------------------------

#: The face (issue #27): the loss, metric and network, the registry, weights, presets and heads
#: files, signatures and the base error; everything else is reachable from its module.
FACE = {
    "__version__",
    "LossNetwork",
    "PerceptualLoss",
    "PerceptualMetric",
    "perceptual_distance",
    "check_range",
    "DISTANCES",
    "distance_map",
    "list_models",
    "get_spec",
    "list_nodes",
    "build_feature_extractor",
    "WeightsSpec",
    "PRESETS",
    "Heads",
    "load_heads",
    "save_heads",
    "parse_signature",
    "LossnetError",
    "recommend",
}


def test_public_api_names_are_the_real_objects():
    import importlib

    from lossnet import errors, loss, network
    from lossnet.models import layers, registry

    assert set(lossnet.__all__) == FACE and len(FACE) <= 20
    for name, module in lossnet._LAZY.items():  # each name is its module's object, not a copy
        assert getattr(lossnet, name) is getattr(importlib.import_module(module), name), name
    assert lossnet.LossNetwork is network.LossNetwork
    assert lossnet.PerceptualLoss is loss.PerceptualLoss
    assert lossnet.perceptual_distance is loss.perceptual_distance
    assert lossnet.list_nodes is layers.list_nodes and lossnet.get_spec is registry.get_spec
    assert lossnet.LossnetError is errors.LossnetError
    assert lossnet.WeightsSpec is WeightsSpec
    assert isinstance(lossnet.__version__, str)
    for tuning_constant in ("EPS", "DISTS_C1", "DISTS_C2", "fit_heads"):  # reachable from their modules only
        assert tuning_constant not in lossnet.__all__


def test_all_and_dir_and_star_import():
    for name in lossnet.__all__:
        assert hasattr(lossnet, name), name
    assert set(lossnet.__all__) <= set(dir(lossnet))
    assert "PerceptualLoss" in dir(lossnet) and "loss" in dir(lossnet)
    namespace: dict = {}
    exec("from lossnet import *", namespace)
    assert namespace["PerceptualMetric"] is lossnet.PerceptualMetric
    with pytest.raises(AttributeError, match="no_such_name"):
        lossnet.no_such_name  # noqa: B018


def test_submodules_reachable_as_attributes():
    out = _python(
        "import lossnet; print(lossnet.models.registry.get_spec('vgg16').name, lossnet.errors.WeightsError.__name__)"
    )
    assert out.stdout.split() == ["vgg16", "WeightsError"]


# --- lazy import and the torchvision hook ---------------------------------------------------------


def test_import_lossnet_imports_no_torch_and_torchvision_still_works():
    code = (
        "import sys, json, lossnet\n"
        "before = {m: m in sys.modules for m in ('torch', 'torchvision', 'numpy')}\n"
        "import torchvision\n"
        "from torchvision.models import get_model\n"
        "import lossnet._torchvision_compat as c\n"
        "from lossnet._torchvision_compat import extension_loads\n"
        "m = get_model('alexnet', weights=None)\n"
        "hooks = [f for f in sys.meta_path if getattr(f, 'lossnet_torchvision_hook', False)]\n"
        "print(json.dumps({'before': before, 'patched': c.PATCHED, 'needed': not extension_loads(),\n"
        "                  'model': type(m).__name__, 'hooks_left': len(hooks)}))\n"
    )
    res = json.loads(_python(code).stdout)
    assert res["before"] == {"torch": False, "torchvision": False, "numpy": False}
    assert res["model"] == "AlexNet"
    # the shim ran before torchvision: it patched exactly when the extension cannot load
    assert res["patched"] == res["needed"]
    assert res["hooks_left"] == 0  # the hook steps aside after the first torchvision import


def test_hook_not_installed_when_torchvision_already_imported():
    code = (
        "import sys, torch\n"
        "import lossnet._torchvision_compat as c\n"  # installs the hook via lossnet/__init__
        "c.remove_import_hook(); c.ensure_torchvision_importable()\n"
        "import torchvision\n"
        "print(c.install_import_hook(), c.ensure_torchvision_importable() == c.PATCHED)\n"
    )
    assert _python(code).stdout.split() == ["False", "True"]


def test_import_lossnet_is_fast():
    res = _python("import time; t = time.perf_counter(); import lossnet; print(time.perf_counter() - t)")
    # torch alone takes 1.5-2.5 s here; lossnet without it takes a few ms
    assert float(res.stdout) < 0.5


# --- the CLI ------------------------------------------------------------------------------------


def test_light_cli_modules_and_parser_import_no_torch():
    code = (
        "import sys, json\n"
        f"mods = {LIGHT_CLI_MODULES!r}\n"
        "import importlib\n"
        "for m in mods: importlib.import_module(m)\n"
        "import lossnet.cli.main as main\n"
        "main.SUBCOMMAND_MODULES = tuple(m for m in main.SUBCOMMAND_MODULES if m in mods)\n"
        "text = main.build_parser().format_help()\n"
        "for m in mods:\n"
        "    if m.rsplit('.', 1)[1] in ('demo', 'nets', 'weights', 'similarity'):\n"
        "        assert m.rsplit('.', 1)[1] in text, m\n"
        f"print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))\n"
    )
    assert json.loads(_python(code).stdout) == []


def test_similarity_distance_choices_match_distances():
    from lossnet.cli.similarity import DISTANCE_CHOICES
    from lossnet.distances import DISTANCES

    assert tuple(DISTANCE_CHOICES) == tuple(sorted(DISTANCES))


def test_help_timing_report():
    """Not a pass/fail check on others' modules: prints what ``lossnet --help`` costs and which
    subcommand modules still pull in torch when imported."""
    t = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "lossnet.cli.main", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    elapsed = time.perf_counter() - t
    assert res.returncode == 0 and "similarity" in res.stdout
    code = (
        "import sys, importlib, json\n"
        "from lossnet.cli.main import SUBCOMMAND_MODULES\n"
        "heavy = []\n"
        "for m in SUBCOMMAND_MODULES:\n"
        "    importlib.import_module(m)\n"
        "    if 'torch' in sys.modules:\n"
        "        heavy.append(m); break\n"
        "print(json.dumps(heavy))\n"
    )
    first_heavy = json.loads(_python(code).stdout)
    print(f"\nlossnet --help: {elapsed:.2f} s; first subcommand module importing torch: {first_heavy or 'none'}")


def test_debug_accepted_after_the_subcommand(capsys):
    from lossnet.cli.main import main, split_debug

    assert split_debug(["nets", "show", "x", "--debug"]) == (True, ["nets", "show", "x"])
    assert split_debug(["--debug", "nets"]) == (True, ["nets"])
    assert split_debug(["nets", "--", "--debug"]) == (False, ["nets", "--", "--debug"])
    assert split_debug(["nets"]) == (False, ["nets"])

    # without --debug: one line, exit 2
    assert main(["nets", "show", "vgg17"]) == 2
    assert "vgg17" in capsys.readouterr().err
    # --debug after the subcommand (argparse refused it there before) and before it: the traceback
    for argv in (
        ["nets", "show", "vgg17", "--debug"],
        ["nets", "--debug", "show", "vgg17"],
        ["--debug", "nets", "show", "vgg17"],
    ):
        with pytest.raises(UnknownNetworkError):
            main(argv)


def test_debug_after_a_benchmark_subcommand_is_parsed():
    """``lossnet bench roads --debug --help``: argparse used to reject --debug there (exit 2)."""
    res = subprocess.run(
        [sys.executable, "-m", "lossnet.cli.main", "bench", "roads", "--debug", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert res.returncode == 0, res.stderr
    assert "unrecognized arguments" not in res.stderr


# --- WeightsSpec --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,kind",
    [
        (None, "none"),
        ("none", "none"),
        ("None", "none"),
        ("NONE", "none"),
        ("imagenet", "imagenet"),
        ("IMAGENET", "imagenet"),
        ("ImageNet", "imagenet"),
    ],
)
def test_weights_spec_keywords(value, kind):
    spec = WeightsSpec.parse(value)
    assert spec.kind == kind and spec.path is None
    assert spec.label == kind == str(spec)
    assert spec.sha256() is None
    assert WeightsSpec.parse(spec) is spec
    assert spec.pretrained == (kind == "imagenet")


def test_weights_spec_file(tmp_path):
    import hashlib

    f = tmp_path / "vgg16-trim.safetensors"
    f.write_bytes(b"not really safetensors")
    for value in (f, str(f)):
        spec = WeightsSpec.parse(value)
        assert (spec.kind, spec.path, spec.label, str(spec)) == ("file", str(f), str(f), str(f))
        assert spec.sha256() == hashlib.sha256(b"not really safetensors").hexdigest()
    assert WeightsSpec.parse(str(f)) == WeightsSpec.parse(f)  # frozen dataclass: equal and hashable
    assert len({WeightsSpec.parse(f), WeightsSpec.parse(str(f))}) == 1
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        WeightsSpec.parse(f).kind = "none"  # frozen


def test_weights_spec_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsError, match="nope.safetensors") as info:
        WeightsSpec.parse(missing)
    assert isinstance(info.value, LossnetError)
    with pytest.raises(WeightsError, match="nope.safetensors"):
        WeightsSpec.parse(str(missing))
    spec = WeightsSpec.parse(missing, check=False)
    assert (spec.kind, spec.path) == ("file", str(missing))
    with pytest.raises(WeightsError, match="nope.safetensors"):
        spec.sha256()
    with pytest.raises(WeightsError, match="nope.safetensors"):
        WeightsSpec.parse(spec)  # re-checked


@pytest.mark.parametrize("value", ["", "  ", 3, True, b"imagenet"])
def test_weights_spec_rejects_non_paths(value):
    with pytest.raises(WeightsError, match="imagenet"):
        WeightsSpec.parse(value)


def test_weights_spec_is_cheap_to_import():
    out = _python("import sys, lossnet.weights as w; w.WeightsSpec.parse('none'); print('torch' in sys.modules)")
    assert out.stdout.strip() == "False"


def test_loss_network_takes_weights_spec_and_strings_alike():
    import torch

    from lossnet.network import LossNetwork

    torch.manual_seed(0)
    a = LossNetwork("alexnet", layers="E", weights=WeightsSpec.parse("none"))
    torch.manual_seed(0)
    b = LossNetwork("alexnet", layers="E", weights="None")
    assert a.weights_source == b.weights_source == "random"
    assert a.weights_spec == b.weights_spec == WeightsSpec("none")
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(a(x)["E"], b(x)["E"])


def test_loss_network_missing_file_error(tmp_path):
    from lossnet.network import LossNetwork

    with pytest.raises(WeightsError, match=f"weights file not found: {tmp_path / 'x.pth'}"):
        LossNetwork("alexnet", layers="E", weights=tmp_path / "x.pth")


# --- one input check in PerceptualLoss ----------------------------------------------------------


def test_perceptual_loss_checks_and_expands_each_image_once(monkeypatch):
    import torch

    from lossnet.loss import PerceptualLoss
    from lossnet.network import LossNetwork

    loss = PerceptualLoss("alexnet", layers="E", weights=None)
    calls = {"prepare": 0, "expand": 0, "aminmax": 0}
    prepare, expand, aminmax = LossNetwork.prepare, torch.Tensor.expand, torch.aminmax

    def counting_prepare(x, **kw):
        calls["prepare"] += 1
        return prepare(x, **kw)

    def counting_expand(self, *a, **k):
        calls["expand"] += 1
        return expand(self, *a, **k)

    def counting_aminmax(*a, **k):
        calls["aminmax"] += 1
        return aminmax(*a, **k)

    monkeypatch.setattr(LossNetwork, "prepare", staticmethod(counting_prepare))
    monkeypatch.setattr(torch.Tensor, "expand", counting_expand)
    monkeypatch.setattr(torch, "aminmax", counting_aminmax)
    loss(torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32))
    # one value-range check, one shape check and one grey->RGB expansion per image (pred, target)
    assert calls == {"prepare": 2, "expand": 2, "aminmax": 2}
