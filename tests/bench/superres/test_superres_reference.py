"""The reference pipeline and test protocol of super-resolution, against an independent computation
written here with PIL and scikit-image directly; lazy COCO-scale data selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from lossnet.bench import superres
from lossnet.bench.superres.reference import reference_metrics, reference_pair


def _photo(path: Path, w: int, h: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(low).resize((w, h), Image.BICUBIC)
    img.save(path)
    return path


def _independent(path: Path, sr_fn, scale: int) -> tuple[float, float]:
    """The reference test, spelled out: torchvision-style Resize(288)+CenterCrop on PIL, blur radius 1
    before the bicubic LR resize, 8-bit PNG round trip, Y' = (65.738 R + 129.057 G + 25.064 B) / 256,
    2-px shave, skimage PSNR/SSIM."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    img = Image.open(path).convert("RGB")

    def resize_crop(im, s, resample):
        w, h = im.size
        nw, nh = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
        im = im.resize((nw, nh), resample)
        left, top = int(round((nw - s) / 2.0)), int(round((nh - s) / 2.0))
        return im.crop((left, top, left + s, top + s))

    hr = np.asarray(resize_crop(img, 288, Image.BILINEAR), dtype=np.float64) / 255
    lr = (
        np.asarray(
            resize_crop(img.filter(ImageFilter.GaussianBlur(radius=1)), 288 // scale, Image.BICUBIC), dtype=np.float64
        )
        / 255
    )
    sr = sr_fn(lr)  # float HxWx3 in [0, 1]
    sr8 = np.floor(np.clip(sr, 0, 1) * 255 + 0.5) / 255
    hr8 = np.floor(hr * 255 + 0.5) / 255

    def y(a):
        return ((a[..., 0] * 65.738 + a[..., 1] * 129.057 + a[..., 2] * 25.064) / 256)[2:-2, 2:-2]

    return peak_signal_noise_ratio(y(hr8), y(sr8), data_range=1), structural_similarity(y(sr8), y(hr8), data_range=1)


@pytest.mark.parametrize("scale", [4, 8])
def test_reference_protocol_equals_independent_computation(tmp_path, scale):
    path = _photo(tmp_path / "a.png", 333, 250, 1)  # landscape, not a multiple of anything
    hr, lr = reference_pair(path, scale)
    assert hr.shape == (3, 288, 288) and lr.shape == (3, 288 // scale, 288 // scale)

    def nearest(lr_np):
        return np.repeat(np.repeat(lr_np, scale, axis=0), scale, axis=1)

    ours = reference_metrics(
        torch.from_numpy(nearest(lr.permute(1, 2, 0).numpy().astype(np.float64))).permute(2, 0, 1), hr
    )
    theirs = _independent(path, nearest, scale)
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_bicubic_baseline_under_both_protocols(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    for i in range(2):
        _photo(folder / f"im{i}.png", 300 + 8 * i, 256, i)
    rows = {}
    for protocol in ("full", "reference"):
        config = superres.resolve_config(
            {"baseline": "bicubic", "protocol": protocol, "test": {"t": str(folder)}, "device": "cpu"}
        )
        assert config["net"] is None and config["loss"] is None and config["train"] == []
        result = superres.run(config, tmp_path / protocol, progress=False)
        extra = {"t/psnr_torchmetrics_bicubic", "t/ssim_torchmetrics_bicubic"} if protocol == "reference" else set()
        assert result.status == "done" and set(result.metrics) == {"t/psnr_bicubic", "t/ssim_bicubic"} | extra
        rows[protocol] = result.metrics["t/psnr_bicubic"]
    assert rows["full"] != pytest.approx(rows["reference"], abs=1e-3)  # two different measurements


def test_paper_preset_is_the_reference_setup(tmp_path):
    (tmp_path / "tr").mkdir()
    c = superres.resolve_config(
        {
            "preset": "paper",
            "allow_stand_in": True,
            "train": [str(tmp_path / "tr")],
            "test": {"x": str(tmp_path / "tr")},
        }
    )
    assert c["epochs"] * c["iters_per_epoch"] == 200_000 and c["seed"] == 42
    assert (c["pipeline"], c["protocol"], c["output_bn"]) == ("reference", "reference", True)
    q = superres.resolve_config(
        {"preset": "quick", "train": [str(tmp_path / "tr")], "test": {"x": str(tmp_path / "tr")}}
    )
    assert (q["pipeline"], q["protocol"], q["output_bn"]) == ("crops", "full", False)


def test_name_first_selection_equals_the_old_rule(tmp_path):
    from lossnet.bench.superres.data import load_folder, select
    from lossnet.bench.superres.train import _reference_data

    folder = tmp_path / "coco"
    folder.mkdir()
    for i in range(40):
        _photo(folder / f"COCO_{i:04d}.jpg", 64, 48, i)
    config = superres.resolve_config(
        {
            "preset": "paper",
            "allow_stand_in": True,
            "train": [str(folder)],
            "test": {"x": str(folder)},
            "train_images": 12,
            "val_images": 3,
            "seed": 7,
        }
    )
    train_paths, val = _reference_data(superres.BENCHMARK.config_object(config))
    old = select(load_folder([folder]), 12, 7)  # the eager rule: decode everything, then choose
    held = {str(p) for p, _ in select(old, 3, 8)}
    assert [str(p) for p in train_paths] == [str(p) for p, _ in old if str(p) not in held]
    assert len(val) == 3 and val[0][1].shape == (3, 288, 288)


def test_reference_pipeline_trains_and_resumes(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        _photo(folder / f"im{i}.png", 300, 290, i)
    partial = {
        "preset": "paper",
        "allow_stand_in": True,
        "loss": "pixel",
        "train": [str(folder)],
        "test": {"x": str(folder)},
        "epochs": 2,
        "iters_per_epoch": 2,
        "val_images": 1,
        "num_blocks": 1,
        "channels": 4,
        "batch_size": 2,
        "device": "cpu",
        "grid_images": 0,
    }
    result = superres.run(superres.resolve_config(partial), tmp_path / "w", progress=False)
    assert result.status == "done" and np.isfinite(result.metrics["x/psnr"]) and "x/psnr_bicubic" in result.metrics


@pytest.mark.slow
def test_coco_scale_folder_is_read_lazily(tmp_path):
    """3,000 generated 640x480 JPEGs, 200 chosen: peak RSS of selection + one epoch of batches < 1.5 GB."""
    import subprocess
    import sys

    folder = tmp_path / "train2014"
    folder.mkdir()
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    for i in range(3000):
        base.save(folder / f"COCO_train2014_{i:012d}.jpg", quality=70)
    code = f"""
import resource, lossnet, torch
from lossnet.bench import superres
from lossnet.bench.superres.train import SuperresTask, _reference_data
c = superres.resolve_config({{"preset": "paper", "allow_stand_in": True, "loss": "pixel", "train": [{str(folder)!r}], "test": {{"x": {str(folder)!r}}},
                              "train_images": 200, "val_images": 4, "iters_per_epoch": 5, "device": "cpu"}})
paths, val = _reference_data(c)
assert len(paths) == 196, len(paths)
task = SuperresTask(c, paths, val, torch.device("cpu"), False)
task.begin(0)
n = sum(1 for _ in task.batches(0, 1))
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True
    ).stdout.split()
    assert int(out[0]) == 5
    peak_gb = int(out[1]) / 1024**2
    assert peak_gb < 1.5, f"peak RSS {peak_gb:.2f} GB"
