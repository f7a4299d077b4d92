"""The core stays below the application (issue #27): imports only go down, and none goes round.

``lossnet.recommendation`` is application (with ``store=`` it reads a results store through the
report); the face still names ``lossnet.recommend``, loaded on first use: from the published
tables it needs only :mod:`lossnet.paper` (checked by ``test_recommend_from_the_paper_needs_no_application``).

Read from the source with :mod:`ast` (``tests/_helpers/imports.py``): every import counts, at module
level or inside a function, except under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import pytest
from _helpers.imports import PKG, cycles, graph, imports, modules

#: The application: packages and modules above the core (``lossnet[bench]``).
APPLICATION = (
    "lossnet.bench",
    "lossnet.runs",
    "lossnet.report",
    "lossnet.datasets",
    "lossnet.cli",
    "lossnet.runs.identity",
    "lossnet.outputs",
    "lossnet.recommendation",
    "lossnet.integrations",
    "lossnet.__main__",
)

#: Third-party packages only the application may import (the [bench], [ray], [kaggle] extras and
#: the reference packages of the tests).
APPLICATION_ONLY_PACKAGES = {
    "scipy",
    "sklearn",
    "skimage",
    "matplotlib",
    "torchmetrics",
    "pooch",
    "requests",
    "tqdm",
    "ray",
    "kaggle",
    "lpips",
    "DISTS_pytorch",
    "piq",
    "pytest",
}

#: What the core may import from outside the standard library: the core install's requirements
#: (and tifffile, tried and skipped when absent, for TIFFs Pillow cannot read).
CORE_PACKAGES = {
    "torch",
    "torchvision",
    "numpy",
    "safetensors",
    "PIL",
    "tifffile",
    # the [timm] extra: imported only inside lossnet.models.timm's functions, after
    # lossnet.extras.require("timm", ...) has given the one-line install hint (issue #28)
    "timm",
    # timm's own dependency (so present whenever timm is): lossnet.models.timm reads the Hub's error
    # types and cache/endpoint settings to say in one line why pretrained weights failed to load
    "huggingface_hub",
}


def _is_application(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in APPLICATION)


def core_modules() -> dict:
    return {name: path for name, path in modules().items() if not _is_application(name)}


def test_the_core_is_what_a_loss_user_needs():
    core = set(core_modules())
    for needed in (
        "lossnet.loss",
        "lossnet.network",
        "lossnet.distances",
        "lossnet.models.registry",
        "lossnet.models.builder",
        "lossnet.weights",
        "lossnet.lpips_presets",
        "lossnet.dists_preset",
        "lossnet.heads.file",
        "lossnet.imageio",
        "lossnet.errors",
        "lossnet.signature",
    ):
        assert needed in core, needed
    assert not any(m.startswith("lossnet.bench") for m in core)


def test_core_never_imports_the_application_or_its_dependencies():
    import sys

    stdlib = set(sys.stdlib_module_names)
    mods = modules()
    offenders = []
    for name, path in core_modules().items():
        for target, line in imports(name, path, mods):
            top = target.split(".")[0]
            where = f"{path.relative_to(PKG.parent)}:{line} imports {target}"
            if top == "lossnet":
                if _is_application(target):
                    offenders.append(where)
            elif top in APPLICATION_ONLY_PACKAGES or (
                top not in stdlib and top not in CORE_PACKAGES and top != "__future__"
            ):
                offenders.append(where)
    assert offenders == []


def test_recommend_from_the_paper_needs_no_application():
    """At module level, lossnet.recommendation imports only the core (the store path is lazy)."""
    import ast

    mods = modules()
    path = mods["lossnet.recommendation"]
    top_level = [n for n in ast.parse(path.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {(n.module if isinstance(n, ast.ImportFrom) else n.names[0].name) for n in top_level}
    assert all(not _is_application(m) for m in names if m and m.startswith("lossnet")), names
    assert not names & APPLICATION_ONLY_PACKAGES


def test_no_import_cycle_among_lossnet_modules():
    assert cycles(graph()) == []


def test_the_registry_never_imports_the_builder():
    g = graph()
    assert "lossnet.models.builder" not in g["lossnet.models.registry"]
    assert "lossnet.models.layers" not in g["lossnet.models.registry"]


@pytest.mark.parametrize(
    "graph_with_cycle, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_cycle_finder_finds_planted_cycles(graph_with_cycle, expected):
    """The checker itself can fail: a planted cycle is found, an acyclic graph passes."""
    assert cycles(graph_with_cycle) == expected


def test_contract_checker_sees_imports_inside_functions(tmp_path):
    """A function-level import of the application is an import too; TYPE_CHECKING ones are not."""
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import scipy\n"
        "def f():\n    from lossnet.bench.base import get_benchmark\n    import sklearn.linear_model\n"
    )
    found = [t for t, _ in imports("lossnet.m", src, {})]
    assert "lossnet.bench.base" in found and "sklearn.linear_model" in found and "scipy" not in found
