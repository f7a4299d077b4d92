"""Run keys identify content, not paths (issue #32 L11 and the last round's weights items): the same
synthetic BAPPS folder at two paths gives one key, a sweep whose data moved finds every run done,
``weights="imagenet"`` follows the file it resolves to, and no absolute path enters a key.

The sweep tests use the small benchmark defined here (importable as ``test_reliability_runkey``): it
reads its ``data`` folder and reports the number of files, so a run is cheap and the key machinery
is the real one (``plan_file`` -> ``run_key`` -> ``run_sweep`` on a SQLite store).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lossnet.bench.base import Benchmark, BenchResult, CommonConfig, option
from lossnet.runs import ResultsStore, plan_file, run_sweep
from lossnet.runs.identity import content_identity, folder_digest, run_key


@dataclass
class DataConfig(CommonConfig):
    data: str | None = option(None, "folder read by the run", kind="str", nullable=True)


class DataBench(Benchmark):
    """Counts the files of ``data`` (resolved to an absolute path, as the real benchmarks do)."""

    name = "test_reliability_runkey"
    Config = DataConfig
    PRESETS = {"quick": {}, "paper": {}}

    def check_loss_network(self, config: dict[str, Any]) -> None:
        pass

    def resolve_config(self, partial: dict[str, Any]) -> dict[str, Any]:
        config = super().resolve_config(partial)
        config["data"] = str(Path(config["data"]).expanduser().resolve())
        return config

    def run(self, config: dict[str, Any], workdir, *, progress: bool = True) -> BenchResult:
        n = sum(1 for p in Path(config["data"]).rglob("*") if p.is_file())
        return BenchResult(config=config, metrics={"files": float(n)})


BENCHMARK = DataBench()
PRESETS = BENCHMARK.PRESETS
resolve_config = BENCHMARK.resolve_config


def _bapps(path: Path) -> Path:
    from lossnet.bench.similarity.synthetic import write_synthetic_bapps

    write_synthetic_bapps(path, n_2afc=4, n_jnd=4, subsets_2afc=("traditional", "cnn"), seed=3)
    return path


def _similarity_key(data: Path) -> tuple[str, dict]:
    from lossnet.bench import get_benchmark

    config = get_benchmark("similarity").resolve_config(
        {
            "data": str(data),
            "net": "alexnet",
            "layer": "L",
            "preset": "quick",
            "subsets_2afc": ["traditional", "cnn"],
            "subsets_jnd": ["traditional", "cnn"],
            "weights": "none",
        }
    )
    return run_key(config), config


def test_l11_two_copies_of_a_synthetic_bapps_folder_give_one_run_key(tmp_path):
    a = _bapps(tmp_path / "a" / "bapps")
    b = tmp_path / "elsewhere" / "bapps_copy"
    shutil.copytree(a, b, copy_function=shutil.copyfile)  # like `cp -r`: new mtimes, same bytes
    ka, ca = _similarity_key(a)
    kb, cb = _similarity_key(b)
    assert ca["data"] != cb["data"]  # the configs still say where the data was read
    assert ka == kb
    identity = json.dumps(content_identity(ca))
    assert str(tmp_path) not in identity and identity.count("listing:") == 1
    # a changed listing is another key: a file added, or a file of another size
    (b / "2afc" / "val" / "cnn" / "p0" / "extra.png").write_bytes(b"x")
    from lossnet.runs import identity as runkey

    runkey._FOLDERS.clear()
    assert _similarity_key(b)[0] != ka


def test_l11_symlink_and_hidden_marker_files_do_not_change_the_key(tmp_path):
    a = _bapps(tmp_path / "bapps")
    link = tmp_path / "link"
    link.symlink_to(a)
    k = _similarity_key(a)[0]
    assert _similarity_key(link)[0] == k
    from lossnet.runs import identity as runkey

    (a / ".lossnet").mkdir()
    (a / ".lossnet" / "2afc-val.json").write_text('{"completed": "now"}')  # lossnet data fetch's marker
    runkey._FOLDERS.clear()
    assert _similarity_key(a)[0] == k


def test_l11_folder_digest_is_names_and_sizes(tmp_path):
    import hashlib

    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "b.txt").write_bytes(b"12345")
    (d / "sub" / "a.txt").write_bytes(b"1")
    expected = hashlib.sha256(b"b.txt\t5\nsub/a.txt\t1\n").hexdigest()
    assert folder_digest(d) == expected


def _grid(tmp_path: Path, data: Path, name: str = "grid.toml") -> Path:
    g = tmp_path / name
    g.write_text(
        f'[sweep]\narchs = ["alexnet", "vgg16"]\nlayers = ["E", "L"]\nseeds = [0]\n'
        f'[benchmarks.test_reliability_runkey]\ndata = "{data}"\n'
    )
    return g


def test_l11_a_sweep_whose_data_moved_reports_every_run_already_done(tmp_path):
    data = _bapps(tmp_path / "first" / "bapps")
    runs = plan_file(_grid(tmp_path, data), allow_modules=True)
    assert len(runs) == 4
    with ResultsStore(tmp_path / "store.db") as store:
        s1 = run_sweep(runs, store, tmp_path / "runs", progress=False, log=None)
        assert len(s1.done) == 4
        moved = tmp_path / "second" / "place" / "bapps"
        moved.parent.mkdir(parents=True)
        shutil.move(str(data), str(moved))  # the data moved (or: another machine, another $LOSSNET_DATA)
        from lossnet.runs import identity as runkey

        runkey._FOLDERS.clear()
        runs2 = plan_file(_grid(tmp_path, moved, "grid2.toml"), allow_modules=True)
        assert {r.config["data"] for r in runs2} == {str(moved.resolve())}
        s2 = run_sweep(runs2, store, tmp_path / "runs", progress=False, log=None)
    assert len(s2.skipped_done) == 4 and not s2.done and s2.as_row()["already_done"] == 4


def test_last_round_imagenet_weights_key_follows_the_resolved_file(tmp_path):
    wd1, wd2 = tmp_path / "wd1", tmp_path / "wd2"
    wd1.mkdir()
    wd2.mkdir()
    (wd1 / "alexnet-imagenet1k-v1-features.safetensors").write_bytes(b"one")
    (wd2 / "alexnet-imagenet1k-v1-features.safetensors").write_bytes(b"two")
    (tmp_path / "wd3").mkdir()
    (tmp_path / "wd3" / "alexnet-imagenet1k-v1-features.safetensors").write_bytes(b"one")
    config = {"benchmark": "similarity", "net": "alexnet", "layer": "L", "weights": "imagenet", "seed": 0}
    k1 = run_key(dict(config, weights_dir=str(wd1)))
    assert run_key(dict(config, weights_dir=str(wd2))) != k1  # another file behind "imagenet"
    assert run_key(dict(config, weights_dir=str(tmp_path / "wd3"))) == k1  # the same bytes elsewhere
    assert run_key(dict(config)) != k1  # no local file: torchvision's hash-checked download


def test_weights_and_heads_files_enter_by_digest_not_path(tmp_path):
    a, b = tmp_path / "a" / "w.safetensors", tmp_path / "b" / "other-name.safetensors"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_bytes(b"weights")
    b.write_bytes(b"weights")
    config = {"benchmark": "similarity", "net": "alexnet", "layer": "L", "seed": 0}
    assert run_key(dict(config, weights=str(a))) == run_key(dict(config, weights=str(b)))
    assert run_key(dict(config, weights="none", heads=str(a))) == run_key(dict(config, weights="none", heads=str(b)))
    ident = json.dumps(content_identity(dict(config, weights=str(a), heads=str(b))))
    assert str(tmp_path) not in ident


@pytest.mark.slow
def test_l11_real_similarity_sweep_with_moved_data_is_already_done(tmp_path, shared_weights_dir, monkeypatch):
    """The same with the real similarity benchmark (AlexNet from ../shared, 2 runs)."""
    monkeypatch.setenv("LOSSNET_WEIGHTS_DIR", str(shared_weights_dir))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = _bapps(tmp_path / "one" / "bapps")

    def grid(d: Path, name: str) -> Path:
        g = tmp_path / name
        g.write_text(
            f'[sweep]\narchs = ["alexnet"]\nlayers = ["E", "L"]\nseeds = [0]\npreset = "quick"\n'
            f'[benchmarks.similarity]\ndata = "{d}"\nsubsets_2afc = ["traditional", "cnn"]\n'
            f'subsets_jnd = ["traditional", "cnn"]\n'
        )
        return g

    with ResultsStore(tmp_path / "s.db") as store:
        s1 = run_sweep(plan_file(grid(data, "g1.toml")), store, tmp_path / "runs", progress=False, log=None)
        assert len(s1.done) == 2
        moved = tmp_path / "two" / "bapps"
        moved.parent.mkdir()
        shutil.move(str(data), str(moved))
        s2 = run_sweep(plan_file(grid(moved, "g2.toml")), store, tmp_path / "runs", progress=False, log=None)
    assert len(s2.skipped_done) == 2 and not s2.done
