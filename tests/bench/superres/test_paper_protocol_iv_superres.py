"""Issue 31 (paper protocol IV), super-resolution: the four test numbers the reference prints, and
its validation PSNR for the checkpoint choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lossnet.bench.superres as superres
from lossnet.bench.superres.evaluate import evaluate_set
from lossnet.bench.superres.model import TransformNet
from lossnet.bench.superres.reference import reference_pair
from lossnet.bench.superres.train import validate, validate_reference


def _images(folder: Path, n: int = 2, size: tuple[int, int] = (300, 320)) -> Path:
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        base = rng.integers(0, 255, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((size[1], size[0]), Image.BICUBIC)  # smooth, so SSIM is not trivial
        img.save(folder / f"img{i}.png")
    return folder


def _model(scale: int = 4) -> TransformNet:
    torch.manual_seed(0)
    model = TransformNet(scale=scale, num_blocks=1, channels=8, output_bn=True)
    model.train()
    for _ in range(2):  # BatchNorm running statistics away from the defaults
        model(torch.rand(2, 3, 24, 24))
    return model.eval()


# -- the reference test script's four numbers, computed here as it computes them -----------------------


def _rgb_to_ycbcr_y(x: torch.Tensor) -> torch.Tensor:  # R:src/super_res/test.py rgb_to_ycbcr, Y kept
    return x[:, 0:1] * 65.481 + x[:, 1:2] * 128.553 + x[:, 2:3] * 24.966 + 16


def _png_y(x: torch.Tensor, path: Path) -> np.ndarray:
    """vutils.save_image of the tensor, read back, Y' = weights / 256, 2 px shaved (their convert_image)."""
    from torchvision.utils import save_image

    save_image(x, path)
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    y = rgb[:, :, 0] * 65.738 / 256 + rgb[:, :, 1] * 129.057 / 256 + rgb[:, :, 2] * 25.064 / 256
    return y[2:-2, 2:-2]


def _reference_four(sr_raw: torch.Tensor, hr: torch.Tensor, tmp: Path) -> dict[str, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    y_out, y_in = _rgb_to_ycbcr_y(sr_raw[None]), _rgb_to_ycbcr_y(hr[None])
    # PeakSignalNoiseRatio() of their era: data_range None -> min/max target states starting at 0.0
    lo, hi = min(0.0, float(y_in.min())), max(0.0, float(y_in.max()))
    psnr_t = float(PeakSignalNoiseRatio(data_range=hi - lo)(y_out, y_in))
    ssim_t = float(StructuralSimilarityIndexMeasure()(y_out, y_in))
    hr_y, sr_y = _png_y(hr, tmp / "hr.png"), _png_y(sr_raw, tmp / "sr.png")
    return {
        "psnr": peak_signal_noise_ratio(hr_y, sr_y),
        "ssim": structural_similarity(hr_y, sr_y, data_range=1),
        "psnr_torchmetrics": psnr_t,
        "ssim_torchmetrics": ssim_t,
    }


def test_reference_protocol_reports_the_four_reference_numbers(tmp_path):
    folder = _images(tmp_path / "set")
    model = _model()
    got = evaluate_set(model, folder, 4, name="s", progress=False, protocol="reference")
    expected: dict[str, list[float]] = {}
    for path in sorted(folder.iterdir()):
        hr, lr = reference_pair(path, 4)
        with torch.no_grad():
            sr = model(lr[None])[0]
        for k, v in _reference_four(sr, hr, tmp_path).items():
            expected.setdefault(k, []).append(v)
    for k, values in expected.items():
        assert got[f"s/{k}"] == pytest.approx(float(np.mean(values)), abs=1e-6), k
    # the four are different numbers (the torchmetrics PSNR's range is max(Y), not the 8-bit 1.0)
    assert abs(got["s/psnr"] - got["s/psnr_torchmetrics"]) > 0.1
    assert {"s/psnr_torchmetrics_bicubic", "s/ssim_torchmetrics_bicubic"} <= set(got)
    full = evaluate_set(model, folder, 4, name="s", progress=False, protocol="full")
    assert not any("torchmetrics" in k for k in full)


def test_reference_validation_psnr_is_torchmetrics_per_batch(tmp_path):
    model = _model()
    g = torch.Generator().manual_seed(1)
    val = [(torch.rand(3, 12, 12, generator=g), torch.rand(3, 48, 48, generator=g) * 0.8 + 0.1) for _ in range(6)]
    from torchmetrics.image import PeakSignalNoiseRatio

    expected, sizes = [], []
    with torch.no_grad():
        for i in range(0, 6, 4):  # batches of 4 and 2, as their DataLoader(batch_size=4)
            lr = torch.stack([p[0] for p in val[i : i + 4]])
            hr = torch.stack([p[1] for p in val[i : i + 4]])
            y_out, y_in = _rgb_to_ycbcr_y(model(lr)), _rgb_to_ycbcr_y(hr)
            hi = max(0.0, float(y_in.max()))
            expected.append(float(PeakSignalNoiseRatio(data_range=hi)(y_out, y_in)))
            sizes.append(len(lr))
    want = sum(e * n for e, n in zip(expected, sizes)) / sum(sizes)  # AverageMeter.update(psnr, n)
    assert validate_reference(model, val, 4, torch.device("cpu")) == pytest.approx(want, abs=1e-6)
    assert abs(validate(model, val, 4, torch.device("cpu")) - want) > 0.1  # lossnet's own is another number


def test_paper_preset_selects_with_the_reference_validation_psnr():
    p = superres.resolve_config({"preset": "paper", "train": ["."], "test": {"x": "."}, "val": "."})
    assert p["val_metric"] == "reference" and p["protocol"] == "reference"
    q = superres.resolve_config({"preset": "quick", "train": ["."], "test": {"x": "."}})
    assert q["val_metric"] == "lossnet"


def test_evaluate_set_builds_no_graph(tmp_path, monkeypatch):
    """Test scoring runs under no_grad: a forward that records a graph would hold every activation."""
    import lossnet.bench.superres.evaluate as ev

    folder = _images(tmp_path / "set", n=1, size=(64, 64))
    model = _model()
    seen = []
    real = ev.quantize

    def spy(x):
        seen.append(x.requires_grad or torch.is_grad_enabled())
        return real(x)

    monkeypatch.setattr(ev, "quantize", spy)
    evaluate_set(model, folder, 4, name="s", progress=False, protocol="full")
    assert seen and not any(seen)


def test_help_states_the_paper_step_count():
    """`lossnet bench superres --help` prints the module docstring: its paper step count is the preset's."""
    import re

    p = superres.BENCHMARK.defaults("paper")
    doc = superres.__doc__.split("quick   ")[0]
    epochs, iters, steps = re.search(r"(\d+) epochs x ([\d,]+) iterations = ([\d,]+) steps", doc).groups()
    assert (int(epochs), int(iters.replace(",", "")), int(steps.replace(",", ""))) == (
        p["epochs"],
        p["iters_per_epoch"],
        p["epochs"] * p["iters_per_epoch"],
    )
    assert "25,000" not in superres.__doc__ and "seed 42" in doc
