"""The phase timer and ``time_benchmark``: phases sum to the step, warm-up is skipped, a
disabled timer costs nothing, and the training benchmarks' profiles describe their real runs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lossnet.bench.base import get_benchmark
from lossnet.bench.profile import PhaseTimer, format_profile, time_benchmark


def test_disabled_timer_is_free():
    t = PhaseTimer()
    assert t.phase("data") is t.phase("model")  # one shared no-op context
    items = [1, 2, 3]
    assert list(t.iterate(items)) == items
    assert t.end_step() is False and t.per_step() == {}


def test_phases_sum_to_step_and_warmup_is_skipped():
    t = PhaseTimer(True, steps=3, warmup=1)
    stopped_at = None
    for i, _x in enumerate(t.iterate(range(10))):
        time.sleep(0.02)  # "data" is charged by iterate only for next(); this is "other"
        with t.phase("model"):
            time.sleep(0.03 if i else 0.2)  # the warm-up step is slow and must not count
        with t.phase("loss_net"):
            time.sleep(0.01)
        if t.end_step():
            stopped_at = i
            break
    assert stopped_at == 3  # warmup 1 + 3 steps
    assert len(t.step_seconds) == 3
    per = t.per_step()
    assert sum(per.values()) == pytest.approx(t.mean_step, rel=1e-9)
    assert per["model"] == pytest.approx(0.03, rel=0.5)
    assert per["other"] == pytest.approx(0.02, rel=0.6, abs=0.01)
    rows = format_profile(type("T", (), {"phases": per, "step_s": t.mean_step})())
    assert rows[-1]["phase"] == "step" and [r["phase"] for r in rows[:3]] == ["data", "model", "loss_net"]


def _images(folder: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).resize((size, size), Image.BILINEAR).save(
            folder / f"{i}.png"
        )
    return folder


def _superres(tmp_path):
    sr = _images(tmp_path / "sr", 4, 40)
    bench = get_benchmark("superres")
    return bench, bench.resolve_config(
        dict(
            loss="pixel",
            train=[str(sr)],
            test={"x": str(sr)},
            crop=24,
            epochs=3,
            iters_per_epoch=7,
            val_images=1,
            val_crop=32,
            num_blocks=1,
            channels=4,
            grid_images=0,
            batch_size=2,
            device="cpu",
        )
    )


def test_superres_time_steps_profiles_a_real_config(tmp_path):
    bench, config = _superres(tmp_path)
    t = time_benchmark(bench, config, None, steps=4, warmup=1, fixed=False)
    assert t.steps_timed == 4 and t.steps_per_run == 21 and t.epochs == 3
    assert set(t.phases) == {"data", "model", "loss_net", "backward", "other"}
    assert sum(t.phases.values()) == pytest.approx(t.step_s, rel=1e-9)
    assert t.val_s > 0 and t.setup_s == 0
    assert t.run_s == pytest.approx(21 * t.step_s + 3 * t.val_s)


@pytest.mark.slow
def test_superres_fixed_cost_runs_the_reduced_config(tmp_path, monkeypatch):
    import lossnet.bench.profile as profile

    monkeypatch.setattr(profile, "process_start_seconds", lambda: 0.0)
    monkeypatch.setattr(
        profile, "REDUCED_RUN_IN_SUBPROCESS", False
    )  # in-process: a closed form without interpreter start
    bench, config = _superres(tmp_path)
    t = time_benchmark(bench, config, tmp_path / "work", steps=4, warmup=1)
    assert t.setup_s > 0
    assert t.eval_s == pytest.approx(t.setup_s + 3 * t.val_s)
    assert t.run_s == pytest.approx(21 * t.step_s + t.eval_s)
    # the reduced run really ran: one epoch of one step, evaluated
    import json

    assert json.loads((tmp_path / "work" / "history.json").read_text())["epochs_done"] == 1


def test_autoencoder_steps_per_run_and_training_not_changed(tmp_path):
    """steps of a run = epochs x ceil(training images / batch); timing leaves a normal run untouched."""
    bench = get_benchmark("autoencoder")
    config = bench.resolve_config(
        dict(
            dataset="digits",
            loss="pixel",
            model="compact",
            ae_images=100,
            ae_val_fraction=0.2,
            train_images=60,
            test_images=30,
            epochs=2,
            batch_size=16,
            mlp_epochs=2,
            image_size=32,
            embedding=8,
            device="cpu",
        )
    )
    t = time_benchmark(bench, config, None, steps=2, warmup=1, fixed=False)
    assert t.steps_per_run == 2 * 5  # 80 training images / 16
    assert t.val_s > 0 and "data" in t.phases  # the held-out pass (run inside train_epoch) is timed
    from lossnet.bench.trainer import TrainingTask

    assert TrainingTask.timer.enabled is False  # the class default stays the no-op timer


def test_time_steps_default_times_a_whole_run(tmp_path, monkeypatch):
    """A benchmark without training hooks (the one-file example) is timed as one run = one step."""
    import lossnet.bench.profile as profile

    monkeypatch.setattr(profile, "process_start_seconds", lambda: 0.0)
    monkeypatch.setattr(
        profile, "REDUCED_RUN_IN_SUBPROCESS", False
    )  # in-process: a closed form without interpreter start
    bench = get_benchmark("example_bench")
    config = bench.resolve_config(dict(loss="pixel", epochs=1, steps=2, size=16, device="cpu"))
    t = time_benchmark(bench, config, tmp_path, steps=3)
    assert t.steps_per_run == 1 and t.steps_timed == 1 and t.step_s > 0 and "run" in t.phases


def test_roads_worker_crops_read_the_mapped_tile_cache(tmp_path, monkeypatch):
    """With DataLoader workers, tiles are decoded once into a memory-mapped disk cache: the crops
    equal those of the in-process cache, and the second read maps the cached arrays."""
    import torch

    from lossnet.bench.roads.data import RoadTile, TileEpochCrops, load_tile_mapped

    monkeypatch.setenv("LOSSNET_TILE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    tiles = []
    for i in range(2):
        img, mask = tmp_path / f"s{i}.png", tmp_path / f"m{i}.png"
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(img)
        Image.fromarray((rng.random((48, 40)) > 0.8).astype(np.uint8) * 255).save(mask)
        tiles.append(RoadTile(f"t{i}", img, mask))
    mapped, cached = TileEpochCrops(tiles, 16, 6, cache=False), TileEpochCrops(tiles, 16, 6, cache=True)
    for i in range(6):
        (a, am), (b, bm) = mapped[i], cached[i]
        assert torch.equal(a, b) and torch.equal(am, bm)
    assert isinstance(load_tile_mapped(tiles[0])[0], np.memmap)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4


def test_bench_profile_flag_prints_the_phase_table(capsys, tmp_path):
    """``lossnet bench NAME --profile K`` (documented in lossnet.bench.profile) times K steps of the
    planned run and prints its phases, which sum to the step; K < 1 is refused in one line."""
    from lossnet.cli.main import main

    data = tmp_path / "train"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(data / f"{i}.png")
    argv = [
        "bench",
        "superres",
        "--preset",
        "quick",
        "--net",
        "alexnet",
        "--layer",
        "relu1",
        "--weights",
        "none",
        "--train",
        str(data),
        "--val",
        str(data),
        "--test",
        f"t={data}",
        "--crop",
        "32",
        "--batch-size",
        "2",
    ]
    assert main([*argv, "--profile", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 timed step(s)" in out and "loss_net" in out and "100.0 %" in out
    assert main([*argv, "--profile", "0"]) == 2
    assert "--profile must be at least 1" in capsys.readouterr().err
