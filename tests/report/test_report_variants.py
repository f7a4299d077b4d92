"""Report: runs of different configs are different variants; same-seed repeats are not replicates;
report text (validation PSNR is no stand-in dataset, cross-benchmark prose sits above its own table)."""

from __future__ import annotations

import pytest
from test_report_store import StoreBuilder, _fake_arch_attributes, _fake_layer_stats, _paper_value

from lossnet.errors import InputError
from lossnet.report.render import build_report
from lossnet.report.sources import store_scores

SR = {"net": "alexnet", "layer": "E", "scale": 4, "seed": 0, "protocol": "reference"}


def test_runs_of_different_epochs_are_not_averaged(tmp_path):
    b = StoreBuilder(tmp_path / "r.db")
    b.add("superres", {**SR, "epochs": 2, "device": "cpu"}, {"set5/psnr": 20.0})
    b.add("superres", {**SR, "epochs": 3, "device": "cuda"}, {"set5/psnr": 22.0})
    with pytest.raises(InputError, match="several variants would be mixed") as exc:
        store_scores(b.path)
    msg = str(exc.value)
    assert "epochs=2" in msg and "epochs=3" in msg
    assert "device" not in msg  # runtime keys neither split nor label variants
    # runtime keys do not split variants, and the label names only the keys that differ
    b = StoreBuilder(tmp_path / "r2.db")
    b.add(
        "superres",
        {**SR, "epochs": 2, "lr": 1e-3, "device": "cpu", "threads": 2, "num_workers": 0},
        {"set5/psnr": 20.0},
    )
    b.add(
        "superres", {**SR, "epochs": 2, "lr": 1e-3, "seed": 1, "device": "cuda", "progress": True}, {"set5/psnr": 22.0}
    )
    rows, info = store_scores(b.path)
    assert [(r["value"], r["n"]) for r in rows] == [(21.0, 2)]
    assert "epochs" not in info.variant and "lr" not in info.variant  # only keys that differ are named


def test_same_seed_duplicates_are_not_replicates(tmp_path):
    b = StoreBuilder(tmp_path / "r.db")
    b.add("superres", {**SR, "epochs": 2}, {"set5/psnr": 20.0})
    b.add("superres", {**SR, "epochs": 2, "device": "cuda"}, {"set5/psnr": 22.0})  # same config and seed
    b.add("superres", {**SR, "epochs": 2, "seed": 1}, {"set5/psnr": 30.0})
    rows, info = store_scores(b.path)
    assert [r["n"] for r in rows] == [2]
    assert rows[0]["value"] == pytest.approx((21.0 + 30.0) / 2)
    assert any("same config and seed" in n for n in info.notes)


def test_validation_psnr_is_not_a_stand_in(tmp_path):
    b = StoreBuilder(tmp_path / "r.db")
    b.add("superres", SR, {"set5/psnr": 20.0, "val/psnr": 19.0})
    _, info = store_scores(b.path)
    assert not any(n.startswith("val ") or "val is" in n for n in info.skip_notes)
    b.add("autoencoder", {"net": "alexnet", "layer": "E"}, {"digits/accuracy": 0.5})
    _, info = store_scores(b.path)
    assert any(n.startswith("digits is a stand-in") for n in info.skip_notes)


def test_cross_benchmark_prose_precedes_its_table(tmp_path):
    b = StoreBuilder(tmp_path / "r.db")
    for arch in ("alexnet", "vgg16", "squeezenet1_1"):
        for layer in "ESML":
            b.add(
                "similarity",
                {"net": arch, "layer": layer, "distance": "mse"},
                {
                    "bapps/2afc": _paper_value("similarity", "2afc", "bapps", arch, layer),
                    "bapps/jnd_map_pooled": _paper_value("similarity", "jnd_map", "bapps", arch, layer),
                },
            )
            b.add(
                "autoencoder",
                {"net": arch, "layer": layer},
                {
                    "svhn/accuracy": _paper_value("autoencoder", "accuracy", "svhn", arch, layer),
                    "stl10/accuracy": _paper_value("autoencoder", "accuracy", "stl10", arch, layer),
                },
            )
    rows, _ = store_scores(b.path)
    paths = build_report(
        rows,
        tmp_path / "rep",
        source="x",
        structure=True,
        make_figures=False,
        layer_stats_fn=_fake_layer_stats,
        arch_attributes_fn=_fake_arch_attributes,
    )
    for kind, table_start in (("md", "\n|---"), ("html", "<table>")):
        text = paths[kind].read_text(encoding="utf-8")
        section = text[text.rindex("Cross-benchmark correlation (Spearman") :]  # the heading, not the contents list
        between = section.index("Between benchmarks")
        columns = section.index("Columns: s1")
        first_table = section.index(table_start)
        second_table = section.index(table_start, first_table + 1)
        assert columns < first_table < between < second_table
