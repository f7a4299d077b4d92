"""``lossnet similarity`` and ``lossnet heads`` check their outputs, device and inputs before any
work, as ``lossnet bench`` does: the expensive call is replaced by one that fails the test, so a
check that comes too late shows up as that call, not as a slow test."""

from __future__ import annotations

import importlib.util
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

import lossnet.bench.heads.fit
import lossnet.heads.file
import lossnet.loss
import lossnet.weights
from lossnet.cli import main as cli_main


@pytest.fixture(autouse=True)
def _available_subcommands(monkeypatch):
    # Subcommand modules of other issues may not have landed yet; the parser is built from those present.
    present = tuple(m for m in cli_main.SUBCOMMAND_MODULES if importlib.util.find_spec(m) is not None)
    monkeypatch.setattr(cli_main, "SUBCOMMAND_MODULES", present)


def _never(name):
    def called(*args, **kwargs):
        # pytest.fail is a BaseException: main's "except Exception" cannot turn it into an exit code
        pytest.fail(f"{name} ran before the command line was checked")

    return called


@pytest.fixture
def no_work(monkeypatch):
    """The heavy steps of the three commands, each failing the test if it is reached."""
    monkeypatch.setattr(lossnet.loss, "PerceptualMetric", _never("PerceptualMetric"))
    monkeypatch.setattr(lossnet.bench.heads.fit, "fit_heads", _never("fit_heads"))
    monkeypatch.setattr(lossnet.heads.file, "export_lpips_heads", _never("export_lpips_heads"))
    monkeypatch.setattr(lossnet.weights, "imagenet_state_dict", _never("imagenet_state_dict (weights download)"))


@pytest.fixture
def no_cuda(monkeypatch):
    # the same answer on CPU and GPU machines
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _run(capsys, *argv):
    code = cli_main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _save(path, seed, size=(32, 32)):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def folders(tmp_path):
    d0, d1 = tmp_path / "A", tmp_path / "B"
    d0.mkdir(), d1.mkdir()
    _save(d0 / "x.png", 0), _save(d1 / "x.png", 1)
    return d0, d1


@pytest.fixture
def judgments(tmp_path):
    path = tmp_path / "j.csv"
    path.write_text("ref,p0,p1,judgment\n")
    return path


# -- output paths ------------------------------------------------------------------------------------


def test_similarity_folder_output_is_checked_first(capsys, tmp_path, folders, no_work):
    out_dir = tmp_path / "d0"
    out_dir.mkdir()
    code, out, err = _run(
        capsys, "similarity", "--dir0", folders[0], "--dir1", folders[1], "-o", out_dir, "--weights", "none"
    )
    assert code == 2 and out == ""
    assert err.strip() == f"lossnet: error: -o/--out {out_dir} is a directory; give a file path"
    code, _, err = _run(
        capsys, "similarity", "--dir0", folders[0], "--dir1", folders[1], "-o", tmp_path / "nope" / "o.csv"
    )
    assert code == 2 and "folder" in err and "does not exist" in err


def test_heads_fit_outputs_are_checked_first(capsys, tmp_path, judgments, no_work):
    out_dir = tmp_path / "d0"
    out_dir.mkdir()
    fit = ["heads", "fit", "--net", "alexnet", "--layers", "E", "--judgments", judgments]
    code, _, err = _run(capsys, *fit, "-o", out_dir)
    assert code == 2 and err.strip() == f"lossnet: error: -o/--out {out_dir} is a directory; give a file path"
    # the checkpoint folder is an output too (given, or OUT.run by default)
    (tmp_path / "h.safetensors.run").write_text("a file, not a folder")
    code, _, err = _run(capsys, *fit, "-o", tmp_path / "h.safetensors")
    assert code == 2 and "h.safetensors.run exists and is not a directory" in err
    code, _, err = _run(capsys, *fit, "-o", tmp_path / "h2.safetensors", "--workdir", tmp_path / "no" / "run")
    assert code == 2 and "--workdir" in err and "does not exist" in err


def test_heads_export_output_is_checked_first(capsys, tmp_path, no_work):
    code, _, err = _run(capsys, "heads", "export-lpips", "--net", "alex", "-o", tmp_path)
    assert code == 2 and err.strip() == f"lossnet: error: -o/--out {tmp_path} is a directory; give a file path"


# -- devices -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["pair", "folders", "heads"])
def test_device_is_checked_first(capsys, tmp_path, folders, judgments, no_work, no_cuda, command):
    argv = {
        "pair": ["similarity", folders[0] / "x.png", folders[1] / "x.png", "--weights", "none"],
        "folders": ["similarity", "--dir0", folders[0], "--dir1", folders[1], "--weights", "none"],
        "heads": ["heads", "fit", "--net", "alexnet", "--judgments", judgments, "-o", tmp_path / "h.safetensors"],
    }[command]
    code, _, err = _run(capsys, *argv, "--device", "cuda")
    assert code == 2  # a usage error, as in lossnet bench, not an AssertionError from torch
    assert err.strip() == "lossnet: error: device 'cuda' requested but CUDA is not available on this machine"
    code, _, err = _run(capsys, *argv, "--device", "banana")
    assert code == 2 and err.strip() == "lossnet: error: unknown device 'banana'; use cpu, cuda, cuda:N or mps"


# -- inputs before weights ---------------------------------------------------------------------------


def test_similarity_missing_images_before_weights(capsys, tmp_path, no_work):
    # no --weights and no weights folder: building the metric would try the download first
    code, _, err = _run(capsys, "similarity", tmp_path / "x.png", tmp_path / "y.png")
    assert code == 2 and "x.png" in err and "imagenet_state_dict" not in err


def test_heads_fit_missing_judgments_before_weights(capsys, tmp_path, no_work):
    code, _, err = _run(
        capsys, "heads", "fit", "--net", "alexnet", "--judgments", tmp_path / "j.csv", "-o", tmp_path / "h.safetensors"
    )
    assert code == 2 and err.strip() == f"lossnet: error: judgments CSV not found: {tmp_path / 'j.csv'}"


def test_download_hint_uses_the_cli_spelling(capsys, tmp_path, monkeypatch):
    from torchvision.models import get_model_weights

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("offline")

    # the real message of lossnet.weights, from a download that fails at once (no network needed)
    monkeypatch.setattr(get_model_weights("alexnet"), "get_state_dict", offline)
    a, b = _save(tmp_path / "a.png", 0), _save(tmp_path / "b.png", 1)
    code, _, err = _run(capsys, "similarity", a, b)
    assert code == 2 and "download" in err
    assert "--weights none" in err and "--weights-dir FOLDER" in err  # the CLI spellings, with the Python ones beside


# -- messages --------------------------------------------------------------------------------------


def test_folder_size_mismatch_names_both_folders(capsys, tmp_path):
    d0, d1 = tmp_path / "d0", tmp_path / "d1"
    d0.mkdir(), d1.mkdir()
    _save(d0 / "b.png", 0, (32, 32)), _save(d1 / "b.png", 1, (40, 36))
    code, _, err = _run(
        capsys,
        "similarity",
        "--dir0",
        d0,
        "--dir1",
        d1,
        "--net",
        "alexnet",
        "--layer",
        "relu1",
        "--weights",
        "none",
        "--no-progress",
    )
    assert code == 1
    assert f"{d0 / 'b.png'} is 32x32, {d1 / 'b.png'} is 36x40" in err
