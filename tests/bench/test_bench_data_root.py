"""Benchmarks find their datasets under the `lossnet data` root by default; a missing one is an
error that prints the exact fetch command."""

from __future__ import annotations

import pytest

from lossnet.bench import autoencoder, roads, similarity, superres
from lossnet.errors import DataError


def test_missing_datasets_print_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSNET_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"lossnet data fetch bapps"):
        similarity.resolve_config({"net": "alexnet", "layer": "L"})
    with pytest.raises(DataError, match=r"lossnet data fetch coco2014 train .*--subset 10000 --seed 42"):
        superres.resolve_config({"preset": "paper", "test": {"x": str(tmp_path)}})
    with pytest.raises(DataError, match=r"lossnet data fetch mrd"):
        roads.resolve_config({})
    with pytest.raises(DataError, match=r"lossnet data fetch svhn"):
        autoencoder.resolve_config({"dataset": "svhn"})


def test_fetched_bapps_is_found(tmp_path, monkeypatch):
    """A BAPPS root installed by `lossnet data fetch` (from a loopback server) is the default --data."""
    from _helpers.loopback import LoopbackServer, serve_dataset

    from lossnet.datasets import locate
    from lossnet.datasets.fetch import fetch

    root = tmp_path / "data"
    monkeypatch.setenv("LOSSNET_DATA", str(root))
    with LoopbackServer() as server:
        ds, _ = serve_dataset(server, "bapps", items=2)
        fetch(ds, root=root, progress=False, log=None)
    found = locate("bapps")
    assert found is not None
    config = similarity.resolve_config({"net": "alexnet", "layer": "L"})
    assert config["data"] == str(found.resolve())
