"""Shared fixtures. ``lossnet`` is imported first so the torchvision shim is in place before any
test (or the lpips/piq packages) imports torchvision."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lossnet  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOSSNET_SHARED", REPO_ROOT.parent / "shared"))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the project's ../shared folder); not present on this machine")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder (skips the test when it is absent)."""
    return _require(SHARED)


@pytest.fixture(scope="session")
def shared_weights_dir() -> Path:
    """../shared/weights: real AlexNet/VGG16 ImageNet conv weights (torchvision key names)."""
    return _require(SHARED / "weights")


@pytest.fixture(scope="session")
def lpips_examples() -> Path:
    """../shared/data/lpips-examples: ex_ref.png, ex_p0.png, ex_p1.png (64x64)."""
    return _require(SHARED / "data" / "lpips-examples")


@pytest.fixture(autouse=True)
def _no_weights_env(monkeypatch, tmp_path_factory):
    """Tests choose their weights and data folders explicitly; a developer's LOSSNET_WEIGHTS_DIR or
    fetched datasets (LOSSNET_DATA, the per-user cache) must not leak in."""
    monkeypatch.delenv("LOSSNET_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("LOSSNET_DATA", str(tmp_path_factory.getbasetemp() / "no-lossnet-data"))
    monkeypatch.setenv("LOSSNET_TILE_CACHE", str(tmp_path_factory.getbasetemp() / "tile-cache"))
