"""Benchmark 2 (super-resolution): degradation, Y-channel metrics, model, training loop."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lossnet.bench import superres
from lossnet.bench.superres import train as train_mod
from lossnet.bench.superres.data import BadImageWarning
from lossnet.bench.superres.degrade import bicubic_upsample, crop_to_multiple, degrade
from lossnet.bench.superres.metrics import rgb_to_y, y_psnr, y_ssim
from lossnet.bench.superres.model import TransformNet
from lossnet.bench.trainer import BEST, CHECKPOINT
from lossnet.errors import LossnetError

# --------------------------------------------------------------------------- degradation


def test_degrade_shapes_crop_to_multiple():
    hr = torch.rand(3, 50, 37)
    assert crop_to_multiple(hr, 4).shape == (3, 48, 36)
    assert degrade(hr, 4).shape == (3, 12, 9)
    assert degrade(torch.rand(2, 3, 67, 80), 8).shape == (2, 3, 8, 10)
    assert bicubic_upsample(degrade(hr, 4), 4).shape == (3, 48, 36)


def test_degrade_constant_image_is_unchanged():
    hr = torch.full((3, 32, 32), 0.3)
    assert torch.allclose(degrade(hr, 4), torch.full((3, 8, 8), 0.3), atol=1e-6)


def test_degrade_linear_ramp_closed_form():
    # A symmetric blur leaves a linear ramp unchanged away from the border, and bicubic (Keys)
    # interpolation reproduces linear functions: LR pixel i samples HR coordinate s*i + (s-1)/2.
    s, n = 4, 64
    ramp = torch.arange(n, dtype=torch.float32) / 100.0
    hr = ramp.view(1, 1, n).expand(3, 16, n).clone()
    lr = degrade(hr, s)
    i = torch.arange(n // s, dtype=torch.float32)
    expected = (s * i + (s - 1) / 2) / 100.0
    interior = slice(2, n // s - 2)
    assert torch.allclose(lr[0, 2, interior], expected[interior], atol=1e-5)


def test_degrade_blurs_before_downsampling():
    # A one-pixel checkerboard has all its energy at Nyquist: the sigma = 1 blur removes almost all of it.
    hr = ((torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2).float().expand(3, 32, 32)
    assert degrade(hr, 4).std() < 0.01
    assert degrade(hr, 4, sigma=0).min() >= 0 and degrade(hr, 4).max() <= 1


# --------------------------------------------------------------------------- metrics


def test_rgb_to_y_matches_skimage():
    from skimage.color import rgb2ycbcr

    rgb = torch.rand(3, 9, 11, dtype=torch.float64)
    ours = rgb_to_y(rgb)[0].numpy()
    ref = rgb2ycbcr(rgb.permute(1, 2, 0).numpy())[..., 0]
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_y_psnr_closed_form_and_border():
    # Grey images differing by d in every channel differ by 219 d in Y -> PSNR = 20 log10(255 / (219 d)).
    d = 0.02
    target = torch.full((3, 20, 20), 0.4, dtype=torch.float64)
    pred = target + d
    expected = 20 * math.log10(255 / (219 * d))
    assert y_psnr(pred, target) == pytest.approx(expected, abs=1e-5)  # torchmetrics accumulates in float32
    # Garbage only in the 4-pixel border must not count when the border is cropped.
    pred[:, :4, :] = 1.0
    pred[:, :, -4:] = 0.0
    assert y_psnr(pred, target, border=4) == pytest.approx(expected, abs=1e-5)
    assert y_psnr(pred, target, border=0) < expected - 5


def test_y_metrics_match_skimage_on_real_image(shared_dir):
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from lossnet.imageio import load_image

    hr = crop_to_multiple(load_image(shared_dir / "data" / "sr" / "set5" / "img_002.png"), 4)
    sr = (bicubic_upsample(degrade(hr, 4), 4) * 255).round() / 255
    y = lambda t: rgb2ycbcr(t.permute(1, 2, 0).double().numpy())[4:-4, 4:-4, 0]  # noqa: E731
    ref_psnr = peak_signal_noise_ratio(y(hr), y(sr), data_range=255)
    ref_ssim = structural_similarity(
        y(hr), y(sr), data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert y_psnr(sr, hr, border=4) == pytest.approx(ref_psnr, abs=1e-5)
    assert y_ssim(sr, hr, border=4) == pytest.approx(ref_ssim, abs=2e-3)
    assert 20 < ref_psnr < 40  # a real bicubic result, not a degenerate case


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        y_psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 9))


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize("scale,ups", [(4, 2), (8, 3)])
def test_transform_net_shapes_and_range(scale, ups):
    net = TransformNet(scale, num_blocks=1, channels=8).eval()
    out = net(torch.rand(2, 3, 6, 5))
    assert out.shape == (2, 3, 6 * scale, 5 * scale)
    with pytest.raises(ValueError, match="too small"):
        net(torch.rand(1, 3, 4, 9))  # the 9x9 reflect-padded input conv needs > 4 pixels
    assert out.min() >= 0 and out.max() <= 1
    assert sum(isinstance(m, torch.nn.Upsample) for m in net.modules()) == ups


def test_bicubic_skip_starts_as_bicubic_and_stays_in_range():
    lr = torch.rand(2, 3, 7, 6)
    net = TransformNet(4, num_blocks=1, channels=8, skip="bicubic").eval()
    bic = bicubic_upsample(lr, 4)
    # zero-initialised tail: sigmoid(logit(b)) == b wherever logit's eps clamp does not bite
    inside = (bic > 1e-3) & (bic < 1 - 1e-3)
    torch.testing.assert_close(net(lr)[inside], bic[inside], atol=1e-5, rtol=0)
    with torch.no_grad():
        net.tail.bias.fill_(50.0)  # a huge residual saturates instead of leaving [0, 1]
    out = net(lr)
    assert out.min() >= 0 and out.max() <= 1 and out.mean() > 0.99
    with pytest.raises(ValueError, match="skip"):
        TransformNet(4, skip="nearest")


def _train(config, *args, **kwargs):
    """``train`` takes the benchmark's config object; the tests resolve dicts."""
    return train_mod.train(superres.BENCHMARK.config_object(config), *args, **kwargs)


def test_learning_rate_schedules():
    cfg = superres.SuperresConfig(lr=1e-3, epochs=2, iters_per_epoch=50, lr_schedule="cosine")
    assert train_mod.learning_rate(cfg, 0) == pytest.approx(1e-3)
    assert train_mod.learning_rate(cfg, 50) == pytest.approx(5e-4)  # halfway: (1 + cos(pi / 2)) / 2
    assert train_mod.learning_rate(cfg, 25) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)) / 2)
    assert train_mod.learning_rate(cfg, 100) == pytest.approx(0.0, abs=1e-12)
    assert train_mod.learning_rate(dataclasses.replace(cfg, lr_schedule="constant"), 77) == 1e-3
    with pytest.raises(LossnetError, match="lr_schedule"):
        superres.resolve_config({"preset": "quick", "loss": "pixel", "lr_schedule": "step"})


# --------------------------------------------------------------------------- config


def test_config_resolution(tmp_path):
    (tmp_path / "tr").mkdir()
    cfg = superres.resolve_config(
        {"preset": "quick", "loss": "pixel", "train": [str(tmp_path / "tr")], "test": {"x": str(tmp_path / "tr")}}
    )
    assert cfg["net"] is None and cfg["layer"] is None and cfg["scale"] == 4 and cfg["benchmark"] == "superres"
    with pytest.raises(LossnetError, match="scale"):
        superres.resolve_config({"scale": 3, "train": [str(tmp_path / "tr")], "test": {"x": str(tmp_path / "tr")}})
    with pytest.raises(LossnetError, match="folder not found"):
        superres.resolve_config(
            {"loss": "pixel", "train": [str(tmp_path / "nope")], "test": {"x": str(tmp_path / "tr")}}
        )


def test_cli_expansion():
    import argparse

    p = argparse.ArgumentParser()
    superres.BENCHMARK.add_arguments(p)
    expand = superres.BENCHMARK.partials_from_args
    cfgs = expand(
        p.parse_args(["--net", "vgg16", "--layer", "E,S,M,L", "--test", "set5=/a", "--train", "/t1", "--train", "/t2"])
    )
    assert [c["layer"] for c in cfgs] == ["E", "S", "M", "L"]
    (sched,) = expand(p.parse_args(["--loss", "pixel", "--lr-schedule", "constant", "--skip", "none"]))
    assert (sched["lr_schedule"], sched["skip"]) == ("constant", "none")
    with pytest.raises(SystemExit):
        p.parse_args(["--lr-schedule", "step"])
    assert cfgs[0]["test"] == ["set5=/a"] and cfgs[0]["train"] == ["/t1", "/t2"]
    (one,) = expand(p.parse_args(["--net", "vgg16", "--layer", "relu1_2,relu2_2"]))
    assert one["layer"] == "relu1_2,relu2_2"
    with pytest.raises(SystemExit):  # argparse: "--test expects NAME=DIR"
        p.parse_args(["--test", "set5"])


# --------------------------------------------------------------------------- training


def _write_images(folder: Path, n: int, size: int = 32, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        f = rng.uniform(1, 4, size=3)
        img = np.stack([0.5 + 0.5 * np.sin(2 * np.pi * (f[c] * xx + f[(c + 1) % 3] * yy) + i) for c in range(3)], -1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"im{i:02d}.png")


@pytest.fixture
def tiny(tmp_path):
    _write_images(tmp_path / "train", 5, size=40)
    _write_images(tmp_path / "test", 2, size=28, seed=1)
    partial = {
        "preset": "quick",
        "loss": "pixel",
        "train": [str(tmp_path / "train")],
        "test": {"tiny": str(tmp_path / "test")},
        "crop": 32,
        "batch_size": 2,
        "iters_per_epoch": 2,
        "epochs": 2,
        "num_blocks": 1,
        "channels": 8,
        "val_images": 2,
        "val_crop": 32,
        "grid_images": 1,
    }
    return tmp_path, partial


def test_run_writes_metrics_and_artifacts(tiny):
    tmp, partial = tiny
    res = superres.run(superres.resolve_config(partial), tmp / "w", progress=False)
    assert res.status == "done"
    assert set(res.metrics) >= {"tiny/psnr", "tiny/ssim", "tiny/psnr_bicubic", "tiny/ssim_bicubic", "val/psnr"}
    assert all(math.isfinite(v) for v in res.metrics.values())
    for name in ("best_checkpoint", "checkpoint", "grid_tiny"):
        assert Path(res.artifacts[name]).is_file()
    grid = Image.open(res.artifacts["grid_tiny"])
    assert grid.size[1] >= 28 and grid.size[0] >= 3 * 28  # bicubic | model | HR


def test_best_checkpoint_is_best_validation_epoch(tiny, monkeypatch):
    tmp, partial = tiny
    scores = iter([10.0, 12.5, 11.0])
    monkeypatch.setattr(train_mod, "validate", lambda *a, **k: next(scores))
    cfg = superres.resolve_config({**partial, "epochs": 3})
    _, out = _train(cfg, tmp / "w", progress=False)
    assert out.best_epoch == 2 and out.best_score == 12.5
    best = torch.load(tmp / "w" / BEST, weights_only=True)
    last = torch.load(tmp / "w" / CHECKPOINT, weights_only=True)
    assert best["epoch"] == 2 and last["epoch"] == 3
    # best.pt holds epoch-2 weights, not the final ones
    assert not torch.equal(best["model"]["tail.weight"], last["model"]["tail.weight"])


def test_resume_continues_where_it_stopped(tiny):
    tmp, partial = tiny
    partial = {**partial, "lr_schedule": "constant"}  # a constant rate lets a finished run be extended
    _, first = _train(superres.resolve_config({**partial, "epochs": 1}), tmp / "w", progress=False)
    assert (first.start_epoch, first.epochs_done) == (0, 1)
    _, resumed = _train(superres.resolve_config({**partial, "epochs": 3}), tmp / "w", progress=False)
    assert (resumed.start_epoch, resumed.epochs_done) == (1, 3)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    # Same RNG stream as an uninterrupted run: identical weights after 3 epochs.
    _, straight = _train(superres.resolve_config({**partial, "epochs": 3}), tmp / "w2", progress=False)
    a = torch.load(tmp / "w" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp / "w2" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    assert [h["val_psnr"] for h in resumed.history] == pytest.approx(
        [h["val_psnr"] for h in straight.history], abs=1e-5
    )
    # A different configuration in the same workdir is refused, not silently mixed.
    with pytest.raises(LossnetError, match="different configuration"):
        _train(superres.resolve_config({**partial, "epochs": 3, "lr": 0.5}), tmp / "w", progress=False)


def test_cosine_run_killed_mid_way_resumes_on_the_same_curve(tiny, monkeypatch):
    tmp, partial = tiny
    cfg = superres.resolve_config({**partial, "lr_schedule": "cosine", "skip": "bicubic", "epochs": 3})
    seen_lrs = []
    real_lr = train_mod.learning_rate
    monkeypatch.setattr(train_mod, "learning_rate", lambda c, step: seen_lrs.append(step) or real_lr(c, step))
    real_validate, calls = train_mod.validate, []

    def killed_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # after epoch 2's steps, before its checkpoint
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(train_mod, "validate", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, tmp / "w", progress=False)
    monkeypatch.setattr(train_mod, "validate", real_validate)
    seen_lrs.clear()
    _, resumed = _train(cfg, tmp / "w", progress=False)
    assert resumed.start_epoch == 1 and seen_lrs == [2, 3, 4, 5]  # global steps of epochs 2-3, not restarted at 0
    _, straight = _train(cfg, tmp / "w2", progress=False)
    a = torch.load(tmp / "w" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp / "w2" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    # the cosine curve depends on the total steps, so a finished run cannot be silently extended
    with pytest.raises(LossnetError, match="different configuration"):
        _train({**cfg, "epochs": 4}, tmp / "w", progress=False)


def test_bad_training_image_is_reported_and_skipped(tiny):
    tmp, partial = tiny
    (tmp / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.warns(BadImageWarning, match="broken.png"):
        res = superres.run(superres.resolve_config({**partial, "epochs": 1}), tmp / "w", progress=False)
    assert res.status == "done"


def test_non_finite_loss_gives_status_diverged(tiny, monkeypatch):
    tmp, partial = tiny

    class NaNLoss(torch.nn.Module):
        def forward(self, pred, target):
            return (pred - target).pow(2).mean() * float("nan")

    monkeypatch.setattr(train_mod, "build_loss", lambda config: NaNLoss())
    res = superres.run(superres.resolve_config(partial), tmp / "w", progress=False)
    assert res.status == "diverged"
    assert "tiny/psnr" not in res.metrics and "tiny/psnr_bicubic" in res.metrics
    assert not (tmp / "w" / CHECKPOINT).exists()


def test_perceptual_loss_training_step(tiny):
    tmp, partial = tiny
    cfg = superres.resolve_config(
        {**partial, "loss": "perceptual", "net": "vgg16", "layer": "E", "weights": "none", "epochs": 1}
    )
    assert cfg["net"] == "vgg16" and cfg["distance"] == "mse"
    task, out = _train(cfg, tmp / "w", progress=False)
    assert out.status == "done" and math.isfinite(out.history[0]["train_loss"])
    # the result carries the training loss's signature (stored with the run)
    from lossnet.signature import parse_signature

    res = train_mod.evaluate(superres.BENCHMARK.config_object(cfg), tmp / "w", task, out, progress=False)
    sig = parse_signature(res.signature)
    assert (sig["arch"], sig["layers"], sig["distance"]) == ("vgg16", "E", "mse")


@pytest.mark.slow
def test_quick_pixel_model_beats_bicubic_on_set5_x4(shared_dir, tmp_path):
    """The must-show on real data (about 6 min on one core): quick-preset pixel-MSE model vs bicubic."""
    sr = shared_dir / "data" / "sr"
    config = superres.resolve_config(
        {
            "preset": "quick",
            "loss": "pixel",
            "scale": 4,
            "train": [str(sr / "t91"), str(sr / "bsd200")],
            "test": {"set5": str(sr / "set5")},
        }
    )
    result = superres.run(config, tmp_path, progress=False)
    m = result.metrics
    assert result.status == "done"
    assert m["set5/psnr"] > m["set5/psnr_bicubic"] + 0.05
    assert m["set5/ssim"] > m["set5/ssim_bicubic"]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_and_measures_in_fp32(tiny, amp):
    tmp, partial = tiny
    cfg = superres.resolve_config({**partial, "amp": amp, "channels_last": True, "device": "cpu"})
    res = superres.run(cfg, tmp / amp, progress=False)
    assert res.status == "done" and all(math.isfinite(v) for v in res.metrics.values())
    ckpt = torch.load(tmp / amp / CHECKPOINT, weights_only=True)
    assert (ckpt["scaler"] is not None) == (amp == "fp16")
    # weights stay fp32 (autocast changes the computation, not the parameters)
    assert all(v.dtype == torch.float32 for k, v in ckpt["model"].items() if v.is_floating_point())
    with pytest.raises(LossnetError, match="amp"):
        superres.resolve_config({**partial, "amp": "fp8"})
