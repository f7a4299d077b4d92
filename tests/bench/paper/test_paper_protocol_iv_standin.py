"""Issue 31 (paper protocol IV): ``--preset paper`` refuses stand-in data unless ``--allow-stand-in``,
which marks the run not paper-comparable; deterministic mode in the paper presets; the report's
choice of the roads split and the super-resolution metric variant."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch

import lossnet.bench.autoencoder as autoencoder
import lossnet.bench.roads as roads
import lossnet.bench.superres as superres
from lossnet.bench.trainer import configure_determinism
from lossnet.errors import LossnetError
from lossnet.report.sources import map_metric_row, store_scores


def test_autoencoder_paper_refuses_digits_unless_allowed():
    with pytest.raises(LossnetError, match=r"stand-in data \(dataset digits.*--allow-stand-in") as err:
        autoencoder.resolve_config({"preset": "paper", "loss": "pixel"})
    assert "\n" not in str(err.value)
    c = autoencoder.resolve_config({"preset": "paper", "loss": "pixel", "allow_stand_in": True})
    assert c["stand_in"] and "digits" in c["stand_in"][0]
    # the quick preset is no paper claim: nothing to refuse or mark
    assert autoencoder.resolve_config({"loss": "pixel"})["stand_in"] is None


def test_autoencoder_paper_on_svhn_is_not_a_stand_in(tmp_path):
    c = autoencoder.resolve_config({"preset": "paper", "loss": "pixel", "dataset": "svhn", "data": str(tmp_path)})
    assert c["stand_in"] is None


def test_superres_paper_refuses_shared_test_crops_and_held_out_validation(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    for name in ("set5", "train", "val", "own"):
        (shared / "data" / "sr" / name).mkdir(parents=True) if name == "set5" else (tmp_path / name).mkdir()
    monkeypatch.setenv("LOSSNET_SHARED", str(shared))
    base = {"preset": "paper", "loss": "pixel", "train": [str(tmp_path / "train")]}
    with pytest.raises(LossnetError, match=r"test sets set5 from .*held out of the training images"):
        superres.resolve_config({**base, "test": {"set5": str(shared / "data" / "sr" / "set5")}})
    with pytest.raises(LossnetError, match=r"validation images held out"):
        superres.resolve_config({**base, "test": {"set5": str(tmp_path / "own")}})
    ok = superres.resolve_config({**base, "test": {"set5": str(tmp_path / "own")}, "val": str(tmp_path / "val")})
    assert ok["stand_in"] is None
    marked = superres.resolve_config({**base, "test": {"set5": str(tmp_path / "own")}, "allow_stand_in": True})
    assert marked["stand_in"] == ["validation images held out of the training images (the paper: val2014, --val DIR)"]


def test_roads_paper_refuses_a_held_out_validation_and_warns_without_a_valid_split(tmp_path):
    with pytest.raises(LossnetError, match=r"holdout:4 held out of the training tiles"):
        roads.resolve_config({"preset": "paper", "data": "x", "val_split": "holdout:4"})
    (tmp_path / "train" / "sat").mkdir(parents=True)
    with pytest.warns(UserWarning, match="has no 'valid' split"):
        c = roads.resolve_config({"preset": "paper", "data": str(tmp_path)})
    assert c["val_split"] == "valid" and c["stand_in"] is None


def test_paper_presets_are_deterministic_and_it_is_applied_per_run():
    assert roads.resolve_config({"preset": "paper", "data": "x"})["deterministic"] is True
    assert (
        autoencoder.resolve_config({"preset": "paper", "loss": "pixel", "allow_stand_in": True})["deterministic"]
        is True
    )
    assert roads.resolve_config({"preset": "paper", "data": "x", "deterministic": False})["deterministic"] is False
    assert roads.resolve_config({"data": "x"})["deterministic"] is None
    saved = (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
    )
    try:
        configure_determinism({"deterministic": True}, "cuda")
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
        configure_determinism({"deterministic": None}, "cuda")  # a later run of a sweep does not inherit it
        assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
        torch.use_deterministic_algorithms(saved[2])


# -- the report -------------------------------------------------------------------------------


def _store(path, runs):
    con = sqlite3.connect(path)
    con.executescript("""
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs(key TEXT PRIMARY KEY, benchmark TEXT, config TEXT, status TEXT, error TEXT,
  started_at REAL, ended_at REAL, duration_s REAL, host TEXT, device TEXT, attempts INTEGER, lossnet_version TEXT);
CREATE TABLE metrics(run_key TEXT, dataset TEXT, name TEXT, value REAL, PRIMARY KEY (run_key, dataset, name));
CREATE TABLE artifacts(run_key TEXT, name TEXT, path TEXT, PRIMARY KEY (run_key, name));
INSERT INTO meta VALUES ('schema_version', '1');
""")
    for i, (bench, config, metrics) in enumerate(runs):
        config = {
            "benchmark": bench,
            "preset": "paper",
            "weights": "imagenet",
            "seed": 0,
            "loss": "perceptual",
            **config,
        }
        con.execute(
            "INSERT INTO runs(key, benchmark, config, status, attempts) VALUES (?,?,?,?,1)",
            (f"k{i}", bench, json.dumps(config), "done"),
        )
        for name, value in metrics.items():
            dataset, _, metric = name.partition("/")
            con.execute("INSERT INTO metrics VALUES (?,?,?,?)", (f"k{i}", dataset, metric, value))
    con.commit()
    con.close()
    return path


def test_report_compares_the_chosen_roads_split_and_sr_metric(tmp_path):
    row = {"benchmark": "roads", "config": {"net": "vgg16", "layer": "M", "loss": "perceptual"}, "value": 1.0}
    assert map_metric_row({**row, "dataset": "mrd.val", "name": "quality"})[0]["dataset"] == "mrd"
    assert map_metric_row({**row, "dataset": "mrd", "name": "quality"})[0] is None
    assert map_metric_row({**row, "dataset": "mrd", "name": "quality"}, roads_split="test")[0]["value"] == 1.0
    assert map_metric_row({**row, "dataset": "mrd.val", "name": "quality"}, roads_split="test")[0] is None
    sr = {
        "benchmark": "superres",
        "config": {"net": "vgg16", "layer": "M", "loss": "perceptual", "scale": 4},
        "dataset": "set5",
    }
    assert map_metric_row({**sr, "name": "psnr", "value": 25.0})[0]["value"] == 25.0
    assert map_metric_row({**sr, "name": "psnr_torchmetrics", "value": 27.0})[0] is None
    cell = map_metric_row({**sr, "name": "psnr_torchmetrics", "value": 27.0}, sr_metric="torchmetrics")[0]
    assert (cell["metric"], cell["value"]) == ("psnr", 27.0)
    assert map_metric_row({**sr, "name": "psnr", "value": 25.0}, sr_metric="torchmetrics")[0] is None

    path = _store(
        tmp_path / "r.db",
        [
            (
                "superres",
                {"net": "vgg16", "layer": "M", "scale": 4, "protocol": "reference"},
                {"set5/psnr": 25.0, "set5/psnr_torchmetrics": 27.0},
            ),
            ("roads", {"net": "vgg16", "layer": "M"}, {"mrd/quality": 40.0, "mrd.val/quality": 50.0}),
        ],
    )
    rows, info = store_scores(path)
    values = {(r["benchmark"], r["metric"]): r["value"] for r in rows}
    assert values == {("superres_x4", "psnr"): 25.0, ("segmentation", "quality"): 50.0}
    assert any("validation split" in n for n in info.notes) and any("PSNR_2" in n for n in info.notes)
    rows, _ = store_scores(path, sr_metric="torchmetrics", roads_split="test")
    assert {(r["benchmark"], r["metric"]): r["value"] for r in rows} == {
        ("superres_x4", "psnr"): 27.0,
        ("segmentation", "quality"): 40.0,
    }


def test_report_marks_stand_in_runs_not_paper_comparable(tmp_path, capsys):
    from lossnet.cli.main import main

    stand_in = ["dataset digits, scikit-learn's 8x8 digits (the paper: --dataset svhn or stl10)"]
    path = _store(
        tmp_path / "r.db",
        [
            (
                "autoencoder",
                {"net": "vgg16", "layer": "M", "dataset": "digits", "allow_stand_in": True, "stand_in": stand_in},
                {"digits/accuracy": 0.9},
            )
        ],
    )
    _, info = store_scores(path)
    assert any("1 run(s) NOT paper-comparable" in n and "digits" in n for n in info.notes)
    assert main(["report", str(path), "-o", str(tmp_path / "rep"), "--no-structure", "--no-figures"]) != 0
    assert "autoencoder: 1 run(s) NOT paper-comparable" in capsys.readouterr().err


@pytest.mark.parametrize("bench", ["roads", "superres", "autoencoder"])
def test_paper_print_config_needs_no_data(bench, tmp_path, monkeypatch, capsys):
    from lossnet.cli.main import main

    monkeypatch.setenv("LOSSNET_DATA", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    assert main(["bench", bench, "--preset", "paper", "--print-config"]) == 0
    (config,) = json.loads(capsys.readouterr().out).values()
    assert config["preset"] == "paper" and config["deterministic"] is True
    if bench == "roads":
        assert config["data"] is None and (config["train_iterations"], config["test_bn"]) == (1, "batch")
    if bench == "autoencoder":
        assert config["data"] is None and "digits" in config["stand_in"][0]  # shown, not refused
    # running the same command line still needs the data
    with pytest.raises(LossnetError):
        get = {"roads": roads, "superres": superres, "autoencoder": autoencoder}[bench]
        get.resolve_config({"preset": "paper", "net": "vgg16", "layer": "relu2_2"})
