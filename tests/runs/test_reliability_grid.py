"""Grid and config checks of issue #32: negative seeds are refused at resolve time (L9), a layer alias
and its E/S/M/L name are one run (L10), ``sweep estimate`` says what it is timing first (L12)."""

from __future__ import annotations

import pytest

from lossnet.errors import LossnetError


@pytest.mark.parametrize("bench", ["autoencoder", "roads", "similarity", "superres"])
def test_l9_negative_seed_is_refused_when_resolving(bench):
    from lossnet.bench import get_benchmark

    with pytest.raises(LossnetError, match=r"seed must be >= 0, got -1"):
        get_benchmark(bench).resolve_config({"seed": -1, "preset": "quick", "net": "alexnet", "layer": "E"})


def test_l9_negative_seed_in_a_grid_is_refused_at_plan_time(tmp_path):
    from lossnet.runs import plan_file

    g = tmp_path / "g.toml"
    g.write_text('[sweep]\narchs = ["alexnet"]\nlayers = ["E"]\nseeds = [-1]\n[benchmarks.autoencoder]\n')
    with pytest.raises(LossnetError, match="seed must be >= 0"):
        plan_file(g)


def test_l10_layer_alias_and_its_esml_name_are_one_run(tmp_path):
    from lossnet.runs import plan_file

    g = tmp_path / "g.toml"
    g.write_text(
        '[sweep]\narchs = ["alexnet"]\nlayers = ["E", "E", "relu1", "features.1", "L"]\nseeds = [0]\n'
        '[benchmarks.similarity]\ndata = "."\nsubsets_2afc = ["traditional"]\nsubsets_jnd = ["traditional"]\n'
    )
    runs = plan_file(g)
    assert len(runs) == 2  # E = relu1 = features.1, and L
    assert sorted(r.config["layer"] for r in runs) == ["E", "L"]


def test_l12_sweep_estimate_says_what_it_times_before_timing(tmp_path, monkeypatch):
    from lossnet.bench.similarity import timing
    from lossnet.runs.estimate import estimate_grid

    g = tmp_path / "g.toml"
    g.write_text(
        '[sweep]\narchs = ["alexnet", "vgg16"]\nlayers = ["E", "L"]\nseeds = [0, 1, 2]\n[benchmarks.similarity]\n'
        'subsets_2afc = ["traditional"]\nsubsets_jnd = ["traditional"]\n'
    )
    said = []

    class Stop(Exception):
        pass

    def first_point(*a, **k):
        assert said, "nothing was said before the first point was timed"
        raise Stop

    monkeypatch.setattr(timing, "time_evaluation", first_point)
    with pytest.raises(Stop):
        estimate_grid(g, progress=False, log=said.append, synthetic_root=tmp_path / "synth")
    assert said[0].startswith("timing 4 point(s) (distinct benchmark, net, layer, preset) for 12 runs")


def test_last_round_json_to_an_unwritable_pseudo_fs_is_refused_up_front(tmp_path):
    from lossnet.outputs import check_output_dir, check_output_file

    with pytest.raises(LossnetError, match=r"--json /proc/x.json: folder /proc is not writable"):
        check_output_file("/proc/x.json", "--json")  # root passes os.access here
    with pytest.raises(LossnetError, match="not writable"):
        check_output_dir("/proc/newdir", "-o/--out")
    check_output_file(tmp_path / "ok.json", "--json")
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing
