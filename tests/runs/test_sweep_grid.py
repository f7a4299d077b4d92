"""Grid planning: unknown options, the "all" shorthand, the --allow-module trust boundary, and run
keys that follow the content of weight files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lossnet.errors import LossnetError
from lossnet.models.registry import PAPER_ARCHS
from lossnet.runs.identity import run_key
from lossnet.runs.plan import plan_file

TESTS_DIR = Path(__file__).resolve().parents[1]


def _grid(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


# -- unknown options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '[benchmarks.fake_bench]\nnet = "alexnet"\nstep = 3\n',
            "[benchmarks.fake_bench]: unknown option 'step' (did you mean 'steps'?)",
        ),
        ("[benchmarks.fake_bench]\nstep_second = 0.1\n", "unknown option 'step_second' (did you mean 'step_seconds'?)"),
        (
            "[sweep]\nstepz = 2\n[benchmarks.fake_bench]\n",
            "[sweep] (for benchmark fake_bench): unknown option 'stepz' (did you mean 'steps'?)",
        ),
        ("[benchmarks.fake_bench]\nfrobnicate = 1\n", "unknown option 'frobnicate'; fake_bench accepts: "),
    ],
)
def test_unknown_grid_options_are_rejected_with_a_suggestion(tmp_path, text, message):
    grid = _grid(tmp_path, text)
    with pytest.raises(LossnetError) as info:
        plan_file(grid, allow_modules=True)
    assert str(info.value).startswith(str(grid)) and message in str(info.value)


@pytest.mark.parametrize(
    "bench, option, suggestion",
    [
        ("superres", "epoch", "'epochs'"),
        ("similarity", "subsets", "'subsets_jnd' or 'subsets_2afc'"),
        ("roads", "iteration", "'iterations'"),
    ],
)
def test_unknown_options_of_builtin_benchmarks(tmp_path, bench, option, suggestion):
    grid = _grid(tmp_path, f'[benchmarks.{bench}]\nnet = "alexnet"\nlayer = "E"\n{option} = 1\n')
    with pytest.raises(LossnetError) as info:
        plan_file(grid)
    assert f"grid.toml [benchmarks.{bench}]: unknown option '{option}' (did you mean {suggestion}?)" in str(info.value)


def test_runtime_keys_and_all_shorthand(tmp_path):
    grid = _grid(
        tmp_path, '[sweep]\narchs = "all"\nlayers = "all"\ndevice = "cpu"\nweights_dir = "w"\n[benchmarks.fake_bench]\n'
    )
    runs = plan_file(grid, allow_modules=True)
    assert len(runs) == 56 and {(r.config["net"], r.config["layer"]) for r in runs} == {
        (a, l) for a in PAPER_ARCHS for l in "ESML"
    }
    # the paper spelling still works and plans the same runs; weights_dir (runtime) is made absolute
    paper = plan_file(
        _grid(tmp_path, '[sweep]\narchs = "paper"\nlayers = "paper"\n[benchmarks.fake_bench]\n'), allow_modules=True
    )
    assert [r.key for r in paper] == [r.key for r in runs]
    assert runs[0].config["weights_dir"] == os.path.abspath("w")


# -- trust: module-path benchmarks -----------------------------------------------------------------


def test_module_benchmarks_need_allow_module(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_bench.py").write_text(f"open({str(marker)!r}, 'w').close()\nfrom fake_bench import *\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = _grid(tmp_path, '[sweep]\narchs = ["alexnet"]\n[benchmarks.evil_bench]\n')
    with pytest.raises(LossnetError, match="'evil_bench' is not a built-in benchmark.*--allow-module"):
        plan_file(grid)
    assert not marker.exists()  # refused before importing anything

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(TESTS_DIR)]))
    for command in ("plan", "run"):
        proc = subprocess.run(
            [sys.executable, "-m", "lossnet.cli.main", "sweep", command, str(grid), "--store", str(tmp_path / "r.db")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2 and "--allow-module" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert not marker.exists() and not (tmp_path / "r.db").exists()
    help_text = subprocess.run(
        [sys.executable, "-m", "lossnet.cli.main", "sweep", "--help"], capture_output=True, text=True
    ).stdout
    assert "--allow-module" in help_text and "trust" in help_text


# -- run keys and weight files ---------------------------------------------------------------------


def test_run_key_follows_weight_file_content(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(b"weights v1")
    config = {"benchmark": "superres", "net": "vgg16", "layer": "S", "weights": str(a), "seed": 0}
    k1 = run_key(config)
    assert run_key(dict(config)) == k1
    a.write_bytes(b"weights v2, retrained in place")
    k2 = run_key(config)
    assert k2 != k1  # same path, new content: a new run
    a.write_bytes(b"weights v1")
    os.utime(a, ns=(1, 1))  # new mtime: the cache is not trusted, the content decides
    assert run_key(config) == k1
    # same content at another path: no path enters the key (issue #32), so the key is the same
    b.write_bytes(b"weights v1")
    assert run_key(dict(config, weights=str(b))) == k1
    # labels are not files
    assert run_key(dict(config, weights="imagenet")) == run_key(dict(config, weights="imagenet"))
    assert run_key(dict(config, weights="none")) != run_key(dict(config, weights="imagenet"))
    with pytest.raises(LossnetError, match="weights file not found: .*missing.pt"):
        run_key(dict(config, weights=str(tmp_path / "missing.pt")))
