"""Optional extras: a feature whose extra is missing says, in one line, what to install."""

from __future__ import annotations

import pytest

import lossnet.extras as extras
from lossnet.cli.main import main


def _without_bench(monkeypatch):
    real = extras.missing
    monkeypatch.setattr(
        extras, "missing", lambda modules: [m for m in real(modules)] + [m for m in modules if m == "scipy"]
    )


def test_missing_lists_what_cannot_be_found():
    assert extras.missing(["json", "no_such_module_lossnet_test"]) == ["no_such_module_lossnet_test"]


def test_require_raises_one_line_naming_the_extra():
    with pytest.raises(extras.MissingExtraError) as info:
        extras.require("bench", "lossnet thing", ["no_such_module_lossnet_test"])
    message = str(info.value)
    assert (
        "\n" not in message and 'pip install "lossnet[bench]"' in message and "no_such_module_lossnet_test" in message
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "similarity", "--help"],
        ["bench", "roads", "--data", "x"],
        ["sweep", "plan", "g.toml"],
        ["report", "--source", "paper"],
        ["data", "list"],
        ["runs", "list"],
    ],
)
def test_application_commands_without_bench_extra_say_what_to_install(monkeypatch, capsys, argv):
    _without_bench(monkeypatch)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert (
        f"lossnet {argv[0]} needs the [bench] extra" in err and 'pip install "lossnet[bench]"' in err and "scipy" in err
    )


def test_heads_fit_without_bench_extra_says_what_to_install(monkeypatch, capsys, tmp_path):
    _without_bench(monkeypatch)
    assert (
        main(
            [
                "heads",
                "fit",
                "--net",
                "alexnet",
                "--layers",
                "E",
                "--data",
                str(tmp_path),
                "-o",
                str(tmp_path / "h.safetensors"),
            ]
        )
        == 2
    )
    assert "lossnet heads fit needs the [bench] extra" in capsys.readouterr().err


def test_core_commands_stay_registered_without_bench_extra(monkeypatch, capsys):
    _without_bench(monkeypatch)
    with pytest.raises(SystemExit):
        main(["similarity", "--help"])
    assert "--preset" in capsys.readouterr().out
