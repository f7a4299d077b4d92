"""One backbone builder: every torchvision model lossnet builds comes from lossnet.models.builder, and no
module reaches into another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import lossnet
from lossnet.errors import UnknownNetworkError
from lossnet.models.builder import TRANSFORM_INPUT_ARCHS, build_backbone, build_feature_extractor, builder_kwargs

PKG = Path(lossnet.__file__).resolve().parent


def _calls(tree: ast.AST, names: set[str]) -> list[int]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in names:
                out.append(node.lineno)
    return out


def test_only_backbone_module_calls_torchvision_builders():
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if path.relative_to(PKG).as_posix() == "models/builder.py":
            continue
        lines = _calls(ast.parse(path.read_text()), {"get_model", "create_feature_extractor"})
        offenders += [f"{path.relative_to(PKG)}:{n}" for n in lines]
    assert offenders == []


def test_no_module_imports_private_names_of_another():
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "lossnet":
                private_module = any(p.startswith("_") and not p.startswith("__") for p in node.module.split("."))
                if private_module and rel == "__init__.py" and node.module == "lossnet._torchvision_compat":
                    private_module = False  # the package itself installs its import hook
                if node.module == "lossnet._version":
                    private_module = False  # the one version string, read by every module that records it
                names = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if rel.count("/") and node.module.startswith(
                    "lossnet." + rel.rsplit("/", 1)[0].replace("/", ".") + "."
                ):
                    names = []  # a subpackage's modules share its private helpers (lossnet.loss.ranges -> .modules)
                if names or private_module:
                    offenders.append(
                        f"{rel}:{node.lineno} from {node.module} import {', '.join(a.name for a in node.names)}"
                    )
    assert offenders == []


def test_every_model_build_goes_through_build_backbone(monkeypatch, tmp_path):
    """LossNetwork, its minimum-size probe, list_nodes, structure and the BAPPS node list all
    build through lossnet.models.builder.build_backbone."""
    import lossnet.models.builder as B
    from lossnet.bench.similarity.evaluate import feature_nodes
    from lossnet.models.layers import list_nodes
    from lossnet.network import LossNetwork
    from lossnet.structure import arch_attributes

    seen: list[str] = []
    real = B.build_backbone

    def counting(arch, **kw):
        seen.append(arch)
        return real(arch, **kw)

    monkeypatch.setattr(B, "build_backbone", counting)
    monkeypatch.setenv("LOSSNET_CACHE", str(tmp_path))  # structure must compute, not read a cache
    for fn in (list_nodes, arch_attributes):
        fn.cache_clear()

    list_nodes("squeezenet1_1")
    assert seen == ["squeezenet1_1"]
    seen.clear()
    net = LossNetwork("squeezenet1_1", layers="L", weights=None)
    assert seen == ["squeezenet1_1"]
    seen.clear()
    with pytest.raises(lossnet.errors.InputError, match="minimum"):
        net(torch.rand(1, 3, 4, 4))  # the size probe builds another copy
    assert seen and set(seen) == {"squeezenet1_1"}
    seen.clear()
    arch_attributes("squeezenet1_1")
    assert "squeezenet1_1" in seen
    seen.clear()
    assert feature_nodes("squeezenet1_1", size=32)
    assert "squeezenet1_1" in seen
    list_nodes.cache_clear()
    arch_attributes.cache_clear()


def test_build_backbone_is_random_init_eval_and_validates():
    m = build_backbone("alexnet")
    assert type(m).__name__ == "AlexNet" and not m.training
    with pytest.raises(UnknownNetworkError, match="vgg17"):
        build_backbone("vgg17")
    with pytest.raises(ValueError, match="transform_input applies only"):
        build_backbone("alexnet", transform_input=True)
    assert builder_kwargs("alexnet", transform_input=False) == {}
    for arch in TRANSFORM_INPUT_ARCHS:
        assert builder_kwargs(arch) == {"aux_logits": False, "init_weights": False}
        assert builder_kwargs(arch, transform_input=True)["transform_input"] is True
    assert build_backbone("googlenet", transform_input=True).transform_input is True
    assert build_backbone("googlenet").transform_input is False


def test_build_feature_extractor_equals_sliced_torchvision_model():
    torch.manual_seed(0)
    model = build_backbone("vgg16")
    body = build_feature_extractor("vgg16", ["features.3", "features.8", "features.3"], model=model)
    x = torch.rand(1, 3, 32, 32)
    out = body(x)
    assert list(out) == ["features.3", "features.8"]
    with torch.no_grad():
        assert torch.equal(out["features.8"], model.features[:9](x))
    renamed = build_feature_extractor("vgg16", {"features.3": "relu1_2"})
    assert list(renamed(x)) == ["relu1_2"]
    # pruned: nothing past the deepest requested node is kept
    assert not any(k.startswith("features.9") for k in body.state_dict())


def test_public_builders_on_package():
    assert lossnet.models.builder.build_backbone is build_backbone
    assert lossnet.build_feature_extractor is build_feature_extractor
