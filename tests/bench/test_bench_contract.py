"""The benchmark contract, checked for every registered benchmark plus the one-file example benchmark:
every preset resolves, unknown options are refused with a suggestion, the CLI is generated from the
config, a tiny config runs, a killed run resumes, a changed config refuses the old checkpoint naming
the keys, a non-finite loss gives status ``diverged`` with the best-so-far metrics, a planted
pickle is never executed, and the result reaches a store through the same path as a sweep."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lossnet.bench.base import Benchmark, get_benchmark, list_benchmarks
from lossnet.bench.trainer import CHECKPOINT
from lossnet.errors import CheckpointError, LossnetError

ALL = [*list_benchmarks(), "example_bench"]
TRAINING = ["superres", "roads", "autoencoder", "example_bench"]


def _images(folder: Path, n: int, size: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        low = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(low).resize((size, size), Image.BILINEAR).save(folder / f"img{i}.png")
    return folder


def _roads(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 1)):
        for i in range(n):
            img = rng.integers(20, 90, (32, 32, 3), dtype=np.uint8)
            m = np.zeros((32, 32), np.uint8)
            m[10:13] = 255
            img[10:13] = 160
            for sub, arr in (("sat", img), ("map", m)):
                (root / split / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / split / sub / f"tile{i}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from lossnet.bench.similarity.synthetic import write_synthetic_bapps

    root = tmp_path_factory.mktemp("contract")
    return {
        "sr": _images(root / "sr", 4, 40, 1),
        "roads": _roads(root / "roads"),
        "bapps": write_synthetic_bapps(root / "bapps", n_2afc=4, n_jnd=4, seed=3),
    }


def tiny(name: str, data: dict, **over) -> dict:
    """A config of ``name`` that runs in seconds on one CPU core without downloads."""
    c = {
        "superres": dict(
            loss="pixel",
            train=[str(data["sr"])],
            test={"x": str(data["sr"])},
            crop=24,
            epochs=2,
            iters_per_epoch=2,
            val_images=1,
            val_crop=32,
            num_blocks=1,
            channels=4,
            grid_images=1,
            batch_size=2,
        ),
        "roads": dict(
            data=str(data["roads"]),
            loss="bce",
            crop=16,
            depth=2,
            width=4,
            epochs=2,
            steps_per_epoch=1,
            batch_size=2,
            threshold=0.5,
            baselines=False,
            overlays=0,
            val_split="holdout:1",
            eval_size=32,
        ),
        "autoencoder": dict(
            dataset="digits",
            loss="pixel",
            model="compact",
            ae_images=64,
            train_images=60,
            test_images=30,
            epochs=2,
            batch_size=32,
            mlp_epochs=2,
            image_size=32,
            embedding=8,
        ),
        "similarity": dict(
            data=str(data["bapps"]),
            net="alexnet",
            layer="relu1",
            weights="none",
            subsets_2afc=["traditional"],
            subsets_jnd=["cnn"],
            batch_size=4,
        ),
        "example_bench": dict(loss="pixel", epochs=2, steps=2, size=16),
    }[name]
    return {**c, "device": "cpu", **over}


def bench(name: str) -> Benchmark:
    return get_benchmark(name)


@pytest.mark.parametrize("name", ALL)
def test_every_preset_resolves_and_unknown_options_are_refused(name, data):
    b = bench(name)
    assert {"paper", "quick"} <= set(b.PRESETS)
    base = tiny(name, data)
    for preset in b.PRESETS:
        partial = dict(base, preset=preset)
        if preset.startswith("lpips-"):
            partial = {k: v for k, v in partial.items() if k not in ("net", "layer")}
        if preset == "paper" and "allow_stand_in" in b.config_keys():
            partial["allow_stand_in"] = True  # the tiny data are stand-ins, which the paper preset refuses otherwise
        config = b.resolve_config(partial)
        assert config["benchmark"] == name and config["preset"] == preset
        assert set(config) == set(b.config_keys())
    wrong = "epoch" if "epochs" in b.config_keys() else "subsets"
    with pytest.raises(LossnetError, match=rf"unknown option '{wrong}' \(did you mean"):
        b.resolve_config(dict(base, **{wrong: 1}))
    with pytest.raises(LossnetError, match="seed must be an integer"):
        b.resolve_config(dict(base, seed="zero"))


@pytest.mark.parametrize("name", ALL)
def test_cli_options_come_from_the_config(name, data):
    b = bench(name)
    p = argparse.ArgumentParser()
    b.add_arguments(p)
    help_text = p.format_help()
    assert "quick:" in help_text or "default" in help_text  # defaults are stated
    args = p.parse_args(["--net", "alexnet,vgg16", "--layer", "E,S,M,L", "--seed", "3"])
    partials = b.partials_from_args(args)
    assert len(partials) == 8 and {p["seed"] for p in partials} == {3}
    assert [p["layer"] for p in partials[:4]] == ["E", "S", "M", "L"]
    args = p.parse_args(["--net", "vgg16", "--layer", "relu1_2,relu2_2"])
    assert [p["layer"] for p in b.partials_from_args(args)] == ["relu1_2,relu2_2"]


@pytest.mark.parametrize("name", ALL)
def test_tiny_config_runs_and_reaches_a_store_like_a_sweep(name, data, tmp_path):
    from lossnet.runs.execute import execute_point
    from lossnet.runs.identity import run_key
    from lossnet.runs.store import ResultsStore

    b = bench(name)
    config = b.resolve_config(tiny(name, data))
    key = run_key(config)
    with ResultsStore(tmp_path / "results.db") as store:
        record = execute_point(name, config, tmp_path / "w", key, progress=False, store=store)
        assert record.status == "done", record.error
        assert record.metrics and all(v is None or np.isfinite(v) for v in record.metrics.values())
        row = store.get_run(key)
        assert row["status"] == "done" and row["attempts"] == 1 and row["device"] == "cpu" and row["duration_s"] > 0
        assert set(row["metrics"]) == set(record.metrics)
        assert store.integrity_check() == "ok"


class _Killed(BaseException):
    """Stands in for SIGKILL: raised right after an epoch's checkpoint was written."""


def _patch_tasks(monkeypatch, modify) -> None:
    """Every task :func:`lossnet.bench.trainer.fit` builds is passed through ``modify(task)``."""
    import lossnet.bench.trainer as trainer

    real_fit = trainer.fit

    def patched_fit(make_task, *args, **kwargs):
        def make():
            task = make_task()
            modify(task)
            return task

        return real_fit(make, *args, **kwargs)

    for module in (
        "lossnet.bench.superres.train",
        "lossnet.bench.roads.train",
        "lossnet.bench.autoencoder.train",
        "lossnet.bench.trainer",
    ):
        monkeypatch.setattr(f"{module}.fit", patched_fit)


@pytest.mark.parametrize("name", TRAINING)
def test_killed_run_resumes_and_changed_config_is_refused(name, data, tmp_path, monkeypatch):
    import json

    b = bench(name)
    config = b.resolve_config(tiny(name, data, epochs=3))
    straight = b.run(config, tmp_path / "straight", progress=False)

    def die_after_first_epoch(task):
        after = task.after_epoch

        def after_epoch(history):
            after(history)
            if len(history) == 1:
                raise _Killed

        task.after_epoch = after_epoch

    with monkeypatch.context() as m:
        _patch_tasks(m, die_after_first_epoch)
        with pytest.raises(_Killed):
            b.run(config, tmp_path / "w", progress=False)
    assert (tmp_path / "w" / CHECKPOINT).exists()
    resumed = b.run(config, tmp_path / "w", progress=False)
    hist = json.loads((tmp_path / "w" / "history.json").read_text())
    assert hist["start_epoch"] == 1 and hist["epochs_done"] == 3
    assert resumed.status == "done"
    assert resumed.metrics.keys() == straight.metrics.keys()

    changed = dict(config, lr=config["lr"] * 2, seed=config["seed"] + 1)
    with pytest.raises(CheckpointError, match=r"different configuration \(differs in: lr .*seed"):
        b.run(changed, tmp_path / "w", progress=False)


@pytest.mark.parametrize("name", TRAINING)
def test_non_finite_loss_gives_diverged_with_best_so_far_metrics(name, data, tmp_path, monkeypatch):
    import json

    b = bench(name)
    config = b.resolve_config(tiny(name, data, epochs=3))

    def nan_weights_after_first_epoch(task):
        after = task.after_epoch

        def after_epoch(history):
            after(history)
            if len(history) == 1:  # the checkpoint holds finite weights; the model in memory goes bad
                with torch.no_grad():
                    for p in task.model.parameters():
                        p.fill_(float("nan"))

        task.after_epoch = after_epoch

    _patch_tasks(monkeypatch, nan_weights_after_first_epoch)
    result = b.run(config, tmp_path / "w", progress=False)
    assert result.status == "diverged"
    assert result.metrics, "the best weights so far (epoch 1) are evaluated"
    hist = json.loads((tmp_path / "w" / "history.json").read_text())
    assert hist["status"] == "diverged" and hist["epochs_done"] == 1


@pytest.mark.parametrize("name", TRAINING)
def test_planted_pickle_checkpoint_is_never_executed(name, data, tmp_path):
    from lossnet.bench.base import default_workdir
    from lossnet.runs.identity import run_key

    b = bench(name)
    config = b.resolve_config(tiny(name, data))
    workdir = tmp_path / default_workdir(name, run_key(config))  # the documented resume path
    workdir.mkdir(parents=True)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for writer in (
        lambda p: torch.save({"format": "lossnet-checkpoint/1", "x": Payload()}, p),
        lambda p: p.write_bytes(pickle.dumps(Payload())),
    ):
        writer(workdir / CHECKPOINT)
        with pytest.raises(CheckpointError, match="not a safe lossnet checkpoint|corrupt"):
            b.run(config, workdir, progress=False)
        assert not marker.exists()


def test_corrupt_checkpoint_is_a_clear_error(data, tmp_path):
    b = bench("superres")
    config = b.resolve_config(tiny("superres", data))
    (tmp_path / CHECKPOINT).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        b.run(config, tmp_path, progress=False)


def test_bad_devices_and_values_are_one_line_errors(data):
    b = bench("superres")
    with pytest.raises(LossnetError, match="unknown device 'bogus'"):
        b.resolve_config(tiny("superres", data, device="bogus"))
    with pytest.raises(LossnetError, match="num_workers must be >= 0"):
        b.resolve_config(tiny("superres", data, num_workers=-1))
    with pytest.raises(LossnetError, match="val_images must be >= 1"):
        b.resolve_config(tiny("superres", data, val_images=0))
    if not torch.cuda.is_available():
        from lossnet.bench.base import resolve_device

        with pytest.raises(LossnetError, match="CUDA is not available"):
            resolve_device({"device": "cuda"})


def test_roads_distance_is_used_and_splits_runs(data):
    from lossnet.bench.roads.train import build_perceptual
    from lossnet.runs.identity import run_key

    b = bench("roads")
    mse = b.resolve_config(
        tiny("roads", data, loss="perceptual", net="alexnet", layer="relu1", weights="none", distance="mse")
    )
    l1 = b.resolve_config(
        tiny("roads", data, loss="perceptual", net="alexnet", layer="relu1", weights="none", distance="l1")
    )
    assert run_key(mse) != run_key(l1)
    assert (
        build_perceptual(b.config_object(l1)).distance.name == "l1"
        and build_perceptual(b.config_object(mse)).distance.name == "mse"
    )
    # the bce baseline has no loss network: distance cannot split identical runs
    a = b.resolve_config(tiny("roads", data, distance="mse"))
    c = b.resolve_config(tiny("roads", data, distance="l1"))
    assert run_key(a) == run_key(c)


@pytest.mark.slow
def test_sigkilled_cli_run_resumes_from_its_checkpoint(data, tmp_path):
    """A real SIGKILL of ``lossnet bench superres`` after its first checkpoint; the same command resumes."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "w"
    argv = [
        sys.executable,
        "-m",
        "lossnet.cli.main",
        "bench",
        "superres",
        "--loss",
        "pixel",
        "--train",
        str(data["sr"]),
        "--test",
        f"x={data['sr']}",
        "--crop",
        "24",
        "--epochs",
        "3",
        "--iters-per-epoch",
        "40",
        "--val-images",
        "1",
        "--val-crop",
        "32",
        "--num-blocks",
        "1",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not (out / CHECKPOINT).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / CHECKPOINT).exists()
    done = torch.load(out / CHECKPOINT, weights_only=True)["epoch"]
    assert subprocess.run(argv, capture_output=True, text=True, timeout=300).returncode == 0
    hist = json.loads((out / "history.json").read_text())
    assert hist["start_epoch"] == done >= 1 and hist["epochs_done"] == 3
