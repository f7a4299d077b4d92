"""``lossnet bench``: outputs checked before any work, one JSON entry per run keyed by run key,
and ``--store`` recording through the sweep's path (duration, device, status, attempts)."""

from __future__ import annotations

import json

import pytest
import torch

from lossnet.cli.main import main


@pytest.fixture(scope="module")
def bapps(tmp_path_factory):
    from lossnet.bench.similarity.synthetic import write_synthetic_bapps

    return write_synthetic_bapps(tmp_path_factory.mktemp("cli") / "bapps", n_2afc=4, n_jnd=4, seed=5)


def _argv(bapps, *extra, weights=("--weights", "none")):
    return [
        "bench",
        "similarity",
        "--data",
        str(bapps),
        "--net",
        "alexnet",
        "--layer",
        "relu1",
        *weights,
        "--subsets",
        "cnn",
        "--jnd-subsets",
        "none",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


@pytest.mark.parametrize("option", ["--json", "--store"])
def test_bad_output_file_fails_before_any_work(bapps, tmp_path, monkeypatch, capsys, option):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "missing" / "dir" / "out.file"
    assert main(_argv(bapps, option, str(target))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(target.parent) in err and option in err
    assert not (tmp_path / "lossnet-out").exists() and not (tmp_path / "missing").exists()


def test_out_that_is_a_file_fails_before_any_work(bapps, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(_argv(bapps, "--out", str(tmp_path / "f"))) == 2
    assert "--out" in capsys.readouterr().err


def test_json_holds_every_run_keyed_by_run_key_with_status(bapps, tmp_path):
    from lossnet.network import LossNetwork
    from lossnet.weights import save_safetensors

    ckpts = tmp_path / "ckpts"
    for seed in (1, 2):
        torch.manual_seed(seed)
        save_safetensors(
            ckpts / f"step_{seed}.safetensors", LossNetwork("alexnet", "relu1", weights=None).body.state_dict()
        )
    argv = _argv(bapps, weights=())
    out = tmp_path / "all.json"
    assert main([*argv, "--checkpoints", str(ckpts), "--out", str(tmp_path / "w"), "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    runs = payload["runs"]
    assert len(runs) == 2 and all(r["status"] == "done" for r in runs.values())
    assert all(
        r["details"] and r["details"][0]["subset"] == "cnn" for r in runs.values()
    )  # the benchmark's summary rows
    assert sorted(r["config"]["weights"].rsplit("/", 1)[-1] for r in runs.values()) == [
        "step_1.safetensors",
        "step_2.safetensors",
    ]
    scores = [r["metrics"]["bapps.cnn/2afc"] for r in runs.values()]
    assert all(0 <= s <= 1 for s in scores)
    for key in runs:
        assert (tmp_path / "w" / key / "subsets.csv").is_file()  # one workdir per run key


def test_store_records_like_a_sweep(bapps, tmp_path):
    from lossnet.runs.store import ResultsStore

    db = tmp_path / "results.db"
    assert main(_argv(bapps, "--store", str(db), "--out", str(tmp_path / "w"))) == 0
    with ResultsStore(db, readonly=True) as store:
        (run,) = store.runs()
        assert run["status"] == "done" and run["attempts"] == 1 and run["device"] == "cpu"
        assert run["duration_s"] > 0 and run["host"]
        assert store.get_run(run["key"])["metrics"]["bapps.cnn/2afc"] is not None
