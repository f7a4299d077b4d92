"""``lossnet similarity`` through ``lossnet.cli.main.main`` and the console script."""

from __future__ import annotations

import csv
import importlib.util
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lossnet.cli import main as cli_main
from lossnet.imageio import load_image
from lossnet.loss import PerceptualMetric


@pytest.fixture(autouse=True)
def _available_subcommands(monkeypatch):
    # Subcommand modules of other issues may not have landed yet; the parser is built from those present.
    present = tuple(m for m in cli_main.SUBCOMMAND_MODULES if importlib.util.find_spec(m) is not None)
    monkeypatch.setattr(cli_main, "SUBCOMMAND_MODULES", present)


def _run(capsys, *argv):
    code = cli_main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _save(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


def _rgb(seed, size=(32, 32)):
    return np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)


def test_pair_prints_lpips_alex_by_default(capsys, lpips_examples, shared_weights_dir):
    ref, p0 = lpips_examples / "ex_ref.png", lpips_examples / "ex_p0.png"
    wpath = shared_weights_dir / "alexnet-imagenet1k-v1-features.safetensors"
    code, out, _ = _run(capsys, "similarity", str(ref), str(p0), "--weights", str(wpath))
    assert code == 0
    expected = PerceptualMetric(preset="lpips-alex", weights=wpath)(load_image(ref)[None], load_image(p0)[None])
    assert float(out.strip()) == pytest.approx(float(expected), abs=1e-6)


def test_pair_custom_network_and_input_range(capsys, tmp_path):
    a, b = _save(tmp_path / "a.png", _rgb(0)), _save(tmp_path / "b.bmp", _rgb(1))
    args = [
        "similarity",
        str(a),
        str(b),
        "--net",
        "alexnet",
        "--layer",
        "relu2",
        "--distance",
        "mse",
        "--weights",
        "none",
    ]
    torch.manual_seed(0)
    code, out, _ = _run(capsys, *args)
    assert code == 0
    torch.manual_seed(0)
    expected = PerceptualMetric(net="alexnet", layers=["relu2"], distance="mse", weights=None)(
        load_image(a)[None], load_image(b)[None]
    )
    assert float(out) == pytest.approx(float(expected), rel=1e-5)
    torch.manual_seed(0)
    code, out2, _ = _run(capsys, *args, "--input-range=-1,1")
    assert code == 0 and float(out2) == pytest.approx(float(out), rel=1e-5)


def test_rgba_and_grey_files(capsys, tmp_path):
    rgb = _rgb(2)
    rgba = np.concatenate([rgb, np.full((32, 32, 1), 255, np.uint8)], axis=2)
    grey = rgb[:, :, 0].copy()
    a = _save(tmp_path / "a.png", rgba, "RGBA")
    b = _save(tmp_path / "b.tiff", np.repeat(grey[:, :, None], 3, axis=2))
    g = _save(tmp_path / "g.png", grey, "L")
    common = ["--net", "alexnet", "--layer", "relu1", "--distance", "mse", "--weights", "none"]
    torch.manual_seed(0)
    _, opaque_vs_grey, _ = _run(capsys, "similarity", str(a), str(g), *common)
    torch.manual_seed(0)
    _, rgb_vs_grey_rgb, _ = _run(capsys, "similarity", str(_save(tmp_path / "c.png", rgb)), str(b), *common)
    # a fully opaque RGBA is its RGB; an L image is the grey value repeated over RGB
    assert float(opaque_vs_grey) == pytest.approx(float(rgb_vs_grey_rgb), rel=1e-6)
    assert float(opaque_vs_grey) > 0


def test_size_mismatch_error_and_resize(capsys, tmp_path):
    a = _save(tmp_path / "a.png", _rgb(0, (32, 32)))
    b = _save(tmp_path / "b.jpg", _rgb(1, (40, 36)))
    common = ["--net", "alexnet", "--layer", "relu1", "--weights", "none"]
    code, out, err = _run(capsys, "similarity", str(a), str(b), *common)
    assert code == 2 and out == ""
    assert "differ in size" in err and "--resize" in err and "b.jpg" in err
    code, out, _ = _run(capsys, "similarity", str(a), str(b), *common, "--resize")
    assert code == 0 and float(out) > 0


def test_missing_and_corrupt_single_file(capsys, tmp_path):
    a = _save(tmp_path / "a.png", _rgb(0))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code, _, err = _run(
        capsys, "similarity", str(a), str(bad), "--net", "alexnet", "--layer", "relu1", "--weights", "none"
    )
    assert code == 2 and "bad.png" in err
    code, _, err = _run(
        capsys, "similarity", str(a), str(tmp_path / "nope.png"), "--weights", "none", "--net", "alexnet"
    )
    assert code == 2 and "nope.png" in err
    code, _, err = _run(capsys, "similarity", str(a))
    assert code == 2 and "two image files" in err


def test_folders_pairs_by_name_reports_unmatched_and_failures(capsys, tmp_path):
    d0, d1 = tmp_path / "d0", tmp_path / "d1"
    d0.mkdir(), d1.mkdir()
    for i in range(3):
        _save(d0 / f"img{i}.png", _rgb(i))
        _save(d1 / f"img{i}.png", _rgb(10 + i))
    _save(d0 / "only0.png", _rgb(20))
    _save(d1 / "only1.jpg", _rgb(21))
    _save(d0 / "corrupt.png", _rgb(22))
    (d1 / "corrupt.png").write_bytes(b"garbage")
    out_csv = tmp_path / "out" / "d.csv"
    out_csv.parent.mkdir()
    args = [
        "similarity",
        "--dir0",
        str(d0),
        "--dir1",
        str(d1),
        "-o",
        str(out_csv),
        "--no-progress",
        "--net",
        "alexnet",
        "--layer",
        "relu2",
        "--distance",
        "spatial",
        "--weights",
        "none",
    ]
    torch.manual_seed(0)
    code, out, err = _run(capsys, *args)
    assert code == 1  # the corrupt pair fails the run, after the others are written
    rows = {r["name"]: r for r in csv.DictReader(out_csv.open())}
    assert set(rows) == {"img0", "img1", "img2", "corrupt"}
    assert rows["corrupt"]["distance"] == "" and "corrupt.png" in rows["corrupt"]["error"]
    torch.manual_seed(0)
    m = PerceptualMetric(net="alexnet", layers=["relu2"], distance="spatial", weights=None)
    for i in range(3):
        expected = float(m(load_image(d0 / f"img{i}.png")[None], load_image(d1 / f"img{i}.png")[None]))
        assert float(rows[f"img{i}"]["distance"]) == pytest.approx(expected, abs=2e-6)
    assert "only0" in err and "only1" in err and "failed corrupt" in err and "3 of 4 pairs" in err
    assert list(out_csv.parent.iterdir()) == [out_csv]  # atomic write leaves no temp file


def test_folders_errors(capsys, tmp_path):
    d0 = tmp_path / "d0"
    d0.mkdir()
    _save(d0 / "x.png", _rgb(0))
    code, _, err = _run(capsys, "similarity", "--dir0", str(d0))
    assert code == 2 and "--dir1" in err
    d1 = tmp_path / "d1"
    d1.mkdir()
    _save(d1 / "y.png", _rgb(0))
    code, _, err = _run(capsys, "similarity", "--dir0", str(d0), "--dir1", str(d1), "--weights", "none")
    assert code == 2 and "no image names in common" in err
    code, _, err = _run(capsys, "similarity", "--dir0", str(d0), "--dir1", str(tmp_path / "missing"))
    assert code == 2 and "missing" in err


def test_console_script(tmp_path, lpips_examples, shared_weights_dir):
    exe = shutil.which("lossnet") or str(__import__("pathlib").Path(sys.executable).with_name("lossnet"))
    probe = subprocess.run([exe, "similarity", "--help"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr:
        pytest.skip(f"another subcommand module has not landed yet: {probe.stderr.strip().splitlines()[-1]}")
    assert probe.returncode == 0, probe.stderr
    wpath = shared_weights_dir / "alexnet-imagenet1k-v1-features.safetensors"
    res = subprocess.run(
        [
            exe,
            "similarity",
            str(lpips_examples / "ex_ref.png"),
            str(lpips_examples / "ex_p1.png"),
            "--preset",
            "lpips-alex",
            "--weights",
            str(wpath),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr
    expected = PerceptualMetric(preset="lpips-alex", weights=wpath)(
        load_image(lpips_examples / "ex_ref.png")[None], load_image(lpips_examples / "ex_p1.png")[None]
    )
    assert float(res.stdout.strip()) == pytest.approx(float(expected), abs=1e-6)
