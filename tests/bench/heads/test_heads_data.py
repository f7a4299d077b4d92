"""Heads training data (issue #20): CSV judgments of a user's own images, checked row by row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossnet.bench.heads.data import CsvJudgments, read_judgments_csv
from lossnet.errors import DataError


def _png(path, seed):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


def _csv(tmp_path, rows, header="ref,p0,p1,judgment"):
    f = tmp_path / "j.csv"
    f.write_text("\n".join([header, *rows]) + "\n")
    return f


@pytest.fixture
def images(tmp_path):
    return [_png(tmp_path / "img" / f"{i}.png", i) for i in range(3)]


def test_csv_rows_are_read_relative_to_the_csv(tmp_path, images):
    f = _csv(tmp_path, ["img/0.png,img/1.png,img/2.png,0.25", f"{images[0]},img/2.png,img/1.png,1"])
    rows = read_judgments_csv(f)
    assert [r[3] for r in rows] == [0.25, 1.0] and rows[0][0] == images[0] and rows[1][1] == images[2]
    ds = CsvJudgments(f, size=32)
    item = ds[0]
    assert (
        item["ok"] and item["ref"].shape == (3, 32, 32) and item["ref"].dtype == torch.uint8 and item["judge"] == 0.25
    )


@pytest.mark.parametrize(
    "row, message",
    [
        ("img/0.png,img/1.png,img/2.png,1.5", "row 2: judgment 1.5 is outside [0, 1]"),
        ("img/0.png,img/1.png,img/2.png,-0.1", "outside [0, 1]"),
        ("img/0.png,img/1.png,img/2.png,nan", "outside [0, 1]"),
        ("img/0.png,img/1.png,img/2.png,abc", "judgment 'abc' is not a number"),
        ("img/0.png,img/missing.png,img/2.png,0.5", "row 2: p0 image not found"),
        ("img/0.png,img/1.png,0.5", "row 2: expected the 4 fields"),
    ],
)
def test_bad_rows_name_the_row(tmp_path, images, row, message):
    f = _csv(tmp_path, [row])
    with pytest.raises(DataError) as exc:
        read_judgments_csv(f)
    assert message in str(exc.value) and str(f) in str(exc.value) and "\n" not in str(exc.value)


def test_missing_columns_and_empty(tmp_path, images):
    with pytest.raises(DataError, match="missing judgment"):
        read_judgments_csv(_csv(tmp_path, ["img/0.png,img/1.png,img/2.png"], header="ref,p0,p1"))
    with pytest.raises(DataError, match="no judgments"):
        read_judgments_csv(_csv(tmp_path, []))
    with pytest.raises(DataError, match="not found"):
        read_judgments_csv(tmp_path / "nope.csv")


def test_undecodable_image_is_reported_with_its_row(tmp_path, images):
    (tmp_path / "img" / "bad.png").write_bytes(b"garbage")
    f = _csv(tmp_path, ["img/0.png,img/1.png,img/2.png,0.5", "img/0.png,img/bad.png,img/2.png,0.5"])
    item = CsvJudgments(f)[1]
    assert not item["ok"] and "row 3" in item["error"] and "bad.png" in item["error"]


def test_fit_from_csv_judgments(tmp_path, shared_dir, shared_weights_dir):
    """A CSV of one's own judgments trains heads like BAPPS does (here: p1 always the blurred
    copy, p0 the noisy one, people prefer p1) and the file loads into a metric."""
    from scipy.ndimage import gaussian_filter

    from lossnet.bench.heads import fit_heads
    from lossnet.heads import load_heads
    from lossnet.imageio import list_images, load_image_array
    from lossnet.loss import PerceptualMetric

    rng = np.random.default_rng(0)
    rows = []
    src = [load_image_array(p) for p in list_images(shared_dir / "data" / "sr" / "bsd100")[:4]]
    from PIL import Image

    for i in range(12):
        s = src[i % 4]
        t, l = rng.integers(0, s.shape[0] - 64), rng.integers(0, s.shape[1] - 64)
        ref = s[t : t + 64, l : l + 64]
        blur = np.clip(gaussian_filter(ref.astype(float), (1, 1, 0)), 0, 255).astype(np.uint8)
        noisy = np.clip(ref + rng.normal(0, 50, ref.shape), 0, 255).astype(np.uint8)
        for name, arr in (("ref", ref), ("p0", noisy), ("p1", blur)):
            (tmp_path / "im").mkdir(exist_ok=True)
            Image.fromarray(arr).save(tmp_path / "im" / f"{i}_{name}.png")
        rows.append(f"im/{i}_ref.png,im/{i}_p0.png,im/{i}_p1.png,0.9")
    f = _csv(tmp_path, rows)
    wfile = str(shared_weights_dir / "alexnet-imagenet1k-v1-features.safetensors")
    res = fit_heads(
        dict(
            net="alexnet",
            layers="E,S",
            weights=wfile,
            judgments=str(f),
            epochs=2,
            decay_epochs=0,
            batch_size=4,
            val="holdout",
            val_fraction=0.25,
            lr=1e-2,
        ),
        tmp_path / "mine.safetensors",
        progress=False,
    )
    h = load_heads(res.path)
    assert h.meta["data"] == f.name and res.val_2afc == pytest.approx(
        0.9
    )  # every held-out item agrees with 90 % of people
    PerceptualMetric(heads=res.path, weights=wfile)
