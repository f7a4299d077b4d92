"""fetch -> ``lossnet bench <x>`` runs on the fetched data (synthetic archives from a loopback server),
for the three training benchmarks (similarity: ``test_data_fetch.py``). Tiny settings; still ~10 s each."""

from __future__ import annotations

import json

import pytest
from _helpers.loopback import LoopbackServer, serve_dataset

from lossnet.cli.main import main
from lossnet.datasets import locate
from lossnet.datasets.fetch import fetch

pytestmark = pytest.mark.slow


@pytest.fixture
def fetched(tmp_path):
    root = tmp_path / "data"
    with LoopbackServer() as server:
        for name, kw in (("mrd", {}), ("svhn", {}), ("coco2014", {"n": 12, "member_size": 48}), ("set5", {})):
            ds, _ = serve_dataset(server, name, **kw)
            fetch(ds, root=root, progress=False, log=None, subset=8 if name == "coco2014" else None)
    (tmp_path / "out").mkdir()
    return root, tmp_path


def _run(args, tmp_path, which):
    out = tmp_path / "out" / which
    js = tmp_path / f"{which}.json"
    rc = main(
        ["bench", *args, "--weights", "none", "--device", "cpu", "--no-progress", "--out", str(out), "--json", str(js)]
    )
    runs = json.loads(js.read_text())["runs"]
    assert rc == 0 and [r["status"] for r in runs.values()] == ["done"], runs


def test_roads_runs_on_fetched_mrd(fetched):
    root, tmp = fetched
    _run(
        [
            "roads",
            "--data",
            str(locate("mrd", root=root)),
            "--net",
            "vgg16",
            "--layer",
            "E",
            "--crop",
            "16",
            "--batch-size",
            "2",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "1",
            "--width",
            "4",
            "--depth",
            "2",
            "--iterations",
            "1",
            "--no-baselines",
        ],
        tmp,
        "roads",
    )


def test_autoencoder_runs_on_fetched_svhn(fetched):
    root, tmp = fetched
    _run(
        [
            "autoencoder",
            "--dataset",
            "svhn",
            "--data",
            str(locate("svhn", root=root)),
            "--net",
            "alexnet",
            "--layer",
            "E",
            "--epochs",
            "1",
            "--mlp-epochs",
            "1",
            "--batch-size",
            "4",
            "--embedding",
            "8",
        ],
        tmp,
        "ae",
    )


def test_superres_runs_on_fetched_coco_subset_and_set5(fetched):
    root, tmp = fetched
    _run(
        [
            "superres",
            "--train",
            str(locate("coco2014", "train", root=root)),
            "--val",
            str(locate("coco2014", "val", root=root)),
            "--test",
            f"set5={locate('set5', root=root)}",
            "--net",
            "vgg16",
            "--layer",
            "E",
            "--epochs",
            "1",
            "--iters-per-epoch",
            "1",
            "--batch-size",
            "2",
            "--crop",
            "32",
            "--val-crop",
            "32",
            "--val-images",
            "2",
            "--num-blocks",
            "1",
        ],
        tmp,
        "sr",
    )
