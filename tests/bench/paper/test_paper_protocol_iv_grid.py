"""Issue 31 (paper protocol IV): examples/sweeps/paper_full.toml is the paper's study -- every benchmark
with its preset's seed (superres 42), super-resolution x4 and x8, the autoencoder on SVHN and STL-10 --
and its header states the run count that planning gives."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from lossnet.datasets import locate, store
from lossnet.datasets.registry import get_dataset
from lossnet.runs.plan import load_grid, plan_grid

GRID = Path(__file__).resolve().parents[3] / "examples" / "sweeps" / "paper_full.toml"


def _complete_data_root(root: Path) -> None:
    """Every dataset of the study marked complete (empty folders): enough to resolve the configs."""
    for name in ("bapps", "coco2014", "set5", "set14", "bsds300", "mrd", "svhn", "stl10"):
        ds = get_dataset(name)
        for part in ds.parts:
            marker = store.marker_path(ds, part, root)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"version": store.MARKER_VERSION, "paths": []}))
        for part in [None] + [p.name for p in ds.parts]:
            found = locate(name, part, root)
            if found is not None and not found.suffix:
                found.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        (locate("mrd", None, root) / split / "sat").mkdir(parents=True, exist_ok=True)


def test_paper_full_grid_is_the_papers_study(tmp_path, monkeypatch):
    _complete_data_root(tmp_path / "data")
    monkeypatch.setenv("LOSSNET_DATA", str(tmp_path / "data"))
    runs = plan_grid(load_grid(GRID), where=str(GRID))
    counts = Counter(
        (r.benchmark, r.config.get("scale") or r.config.get("dataset") or "", r.config["seed"]) for r in runs
    )
    assert counts == {
        ("similarity", "", 0): 56,
        ("superres", 4, 42): 56,
        ("superres", 8, 42): 56,
        ("roads", "", 0): 56,
        ("autoencoder", "svhn", 0): 56,
        ("autoencoder", "stl10", 0): 56,
    }
    assert all(
        r.config["preset"] == "paper" and not r.config.get("stand_in") for r in runs if r.benchmark != "similarity"
    )
    header = GRID.read_text().split("[sweep]")[0]
    assert f"{len(runs)} runs" in header and len(runs) == 336
    stated = dict(
        (k, int(v))
        for k, v in re.findall(
            r"(similarity|superres x4|superres x8|roads|autoencoder SVHN|autoencoder STL-10) (\d+)", header
        )
    )
    assert stated == {
        "similarity": 56,
        "superres x4": 56,
        "superres x8": 56,
        "roads": 56,
        "autoencoder SVHN": 56,
        "autoencoder STL-10": 56,
    }


def test_a_benchmark_takes_an_array_of_variant_tables(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(
        '[sweep]\narchs = ["alexnet"]\nlayers = ["E"]\n'
        '[[benchmarks.superres]]\nscale = 4\nloss = "pixel"\ntest = {x = "."}\ntrain = ["."]\n'
        '[[benchmarks.superres]]\nscale = 8\nloss = "pixel"\ntest = {x = "."}\ntrain = ["."]\n'
    )
    runs = plan_grid(load_grid(grid), where="g")
    assert sorted(r.config["scale"] for r in runs) == [4, 8]


def test_estimate_plans_paper_presets_on_synthetic_stand_ins(tmp_path, monkeypatch):
    """`sweep estimate` times a paper grid without its data on synthetic images, which the paper
    preset would refuse as stand-ins: the estimate allows them (the plan is only timed)."""
    from lossnet.runs.estimate import _plan

    monkeypatch.setenv("LOSSNET_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("LOSSNET_SHARED", str(tmp_path / "no-shared"))
    grid = tmp_path / "g.toml"
    grid.write_text(
        '[sweep]\narchs = ["alexnet"]\nlayers = ["E"]\npreset = "paper"\n[benchmarks.superres]\nscale = 4\n'
    )
    runs, _, notes = _plan(str(grid), {}, False, tmp_path / "synth")
    (run,) = runs
    assert run.config["seed"] == 42 and run.config["stand_in"] and any("synthetic" in n for n in notes)
