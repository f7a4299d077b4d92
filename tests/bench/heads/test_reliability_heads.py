"""Heads defects of issue #32: a changed judgments CSV is not silently resumed (M6), heads files hold
no absolute path and record the data's and the backbone's digests (L8, last round), duplicate CSV
columns, integer heads and a non-spatial ``distance`` are refused (L8)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lossnet.errors import CheckpointError, DataError, WeightsError


def _judgments(folder, n=8, flip=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        names = []
        for tag in ("ref", "p0", "p1"):
            name = f"{tag}{i}.png"
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / name)
            names.append(name)
        j = float(i % 2)
        rows.append([*names, 1.0 - j if flip else j])
    path = folder / "mine.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ref", "p0", "p1", "judgment"])
        w.writerows(rows)
    return path


def _cfg(csv_path):
    return dict(
        net="alexnet",
        layers="E",
        weights="none",
        judgments=str(csv_path),
        epochs=1,
        decay_epochs=0,
        batch_size=4,
        seed=0,
        val="holdout",
        val_fraction=0.25,
        size=32,
    )


def test_m6_changed_judgments_are_not_resumed_silently(tmp_path):
    from lossnet.bench.heads.fit import fit_heads

    csv_path = _judgments(tmp_path / "j")
    out = tmp_path / "mine.safetensors"
    fit_heads(_cfg(csv_path), out, progress=False)
    _judgments(tmp_path / "j", flip=True)  # every judgment j -> 1 - j, same file name
    with pytest.raises(CheckpointError, match="different configuration .*data_content"):
        fit_heads(_cfg(csv_path), out, progress=False)


def test_l8_heads_file_records_digests_and_no_absolute_path(tmp_path):
    from lossnet.bench.heads.fit import fit_heads
    from lossnet.heads.file import load_heads
    from lossnet.weights import sha256_file

    csv_path = _judgments(tmp_path / "j")
    out = tmp_path / "mine.safetensors"
    fit_heads(_cfg(csv_path), out, progress=False)
    raw = out.read_bytes()
    assert str(tmp_path).encode() not in raw
    meta = load_heads(out).meta
    assert meta["data"] == "mine.csv" and meta["data_content"] == f"sha256:{sha256_file(csv_path)}"
    assert len(meta["backbone_sha256"]) == 64  # --weights none: the random backbone is identified


def test_heads_fitted_on_a_random_backbone_warn_on_another(tmp_path):
    """Last round: heads fitted with --weights none recorded no backbone digest, and a later load got
    another random backbone silently. Now the load compares the recorded digest: another random init
    warns; the very backbone the heads were fitted on (its weights saved and passed back) does not."""
    import warnings

    from safetensors.torch import save_file

    from lossnet.bench.heads.fit import fit_heads
    from lossnet.loss import PerceptualMetric
    from lossnet.network import LossNetwork

    csv_path = _judgments(tmp_path / "j")
    out = tmp_path / "mine.safetensors"
    torch.manual_seed(7)
    fit_heads(_cfg(csv_path), out, progress=False)  # its random backbone: the first draw after seeding 7
    torch.manual_seed(12345)
    with pytest.warns(UserWarning, match="fitted on another backbone"):
        PerceptualMetric(heads=out, weights=None)
    torch.manual_seed(7)
    same = LossNetwork("alexnet", ["E"], weights=None)
    from lossnet.heads.file import load_heads
    from lossnet.signature import tensors_digest

    assert tensors_digest(same.state_dict()) == load_heads(out).meta["backbone_sha256"]  # the very backbone
    weights = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in same.body.state_dict().items()}, str(weights))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        PerceptualMetric(heads=out, weights=str(weights))


def _write_heads(path, dtype=torch.float32, distance="spatial"):
    from safetensors.torch import save_file

    from lossnet.heads.file import _META_KEY, HEADS_FORMAT

    meta = {
        "format": HEADS_FORMAT,
        "net": "alexnet",
        "layers": ["features.1"],
        "normalize": "imagenet",
        "channels": [64],
        "distance": distance,
    }
    save_file({"head.0": torch.ones(64).to(dtype)}, str(path), metadata={_META_KEY: json.dumps(meta)})
    return path


def test_l8_integer_heads_are_refused(tmp_path):
    from lossnet.heads.file import load_heads

    load_heads(_write_heads(tmp_path / "ok.safetensors"))
    with pytest.raises(WeightsError, match="head.0 has dtype int32; heads are floating-point"):
        load_heads(_write_heads(tmp_path / "int.safetensors", dtype=torch.int32))


def test_l8_non_spatial_distance_metadata_is_refused(tmp_path):
    from lossnet.heads.file import load_heads

    with pytest.raises(WeightsError, match="calibrate the 'gram' distance"):
        load_heads(_write_heads(tmp_path / "gram.safetensors", distance="gram"))


def test_l8_duplicate_csv_columns_are_refused(tmp_path):
    from lossnet.bench.heads.data import CsvJudgments

    path = _judgments(tmp_path / "j")
    lines = path.read_text().splitlines()
    lines[0] += ",judgment"
    lines[1:] = [ln + ",0.0" for ln in lines[1:]]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="header names 'judgment' more than once"):
        CsvJudgments(str(path), 32)


def test_last_round_weights_trim_stores_no_absolute_path(tmp_path, shared_weights_dir, capsys):
    from safetensors import safe_open

    from lossnet.cli.main import main
    from lossnet.weights import sha256_file

    out = tmp_path / "alexnet-relu1.safetensors"
    assert (
        main(["weights", "trim", "alexnet", "--layer", "E", "--weights-dir", str(shared_weights_dir), "-o", str(out)])
        == 0
    )
    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
    src = shared_weights_dir / "alexnet-imagenet1k-v1-features.safetensors"
    assert meta["source"] == f"{src.name} (sha256:{sha256_file(src)})"
    assert str(shared_weights_dir) not in out.read_bytes().decode("latin-1")


def test_l8_a_fit_failing_on_a_bad_row_leaves_no_empty_run_folder(tmp_path):
    from lossnet.bench.heads.fit import fit_heads

    csv_path = _judgments(tmp_path / "j")
    (tmp_path / "j" / "p1_3.png").write_text("this is text, not an image")
    lines = csv_path.read_text().splitlines()
    lines[4] = "ref3.png,p03.png,p1_3.png,1.0"
    csv_path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out_x.safetensors"
    with pytest.raises(Exception, match="p1_3.png"):
        fit_heads(_cfg(csv_path), out, progress=False)
    assert not (tmp_path / "out_x.safetensors.run").exists() and not out.exists()
