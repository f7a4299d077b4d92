"""One rule for output paths (--json, --store, -o/--out, --runs-dir): lossnet.outputs, checked before work."""

from __future__ import annotations

import os

import pytest

from lossnet.errors import LossnetError
from lossnet.outputs import check_output_dir, check_output_file

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def test_output_file_rules(tmp_path):
    assert check_output_file(tmp_path / "new.json", "--json") == tmp_path / "new.json"
    (tmp_path / "old.json").write_text("{}")
    assert check_output_file(str(tmp_path / "old.json"), "--json") == tmp_path / "old.json"  # replaced later
    missing = tmp_path / "no" / "such" / "x.json"
    with pytest.raises(LossnetError, match=f"--json {missing}: folder {missing.parent} does not exist"):
        check_output_file(missing, "--json")
    assert not (tmp_path / "no").exists()  # nothing created
    with pytest.raises(LossnetError, match=f"--json {tmp_path} is a directory"):
        check_output_file(tmp_path, "--json")
    (tmp_path / "file").write_text("")
    with pytest.raises(
        LossnetError, match=f"--store {tmp_path / 'file' / 'r.db'}: {tmp_path / 'file'} is not a folder"
    ):
        check_output_file(tmp_path / "file" / "r.db", "--store")
    with pytest.raises(LossnetError, match="empty path"):
        check_output_file("", "--json")


def test_output_dir_rules(tmp_path):
    assert check_output_dir(tmp_path, "--out") == tmp_path  # existing folder
    assert check_output_dir(tmp_path / "new", "--out") == tmp_path / "new" and not (tmp_path / "new").exists()
    with pytest.raises(LossnetError, match=f"--out {tmp_path / 'a' / 'b'}: folder {tmp_path / 'a'} does not exist"):
        check_output_dir(tmp_path / "a" / "b", "--out")
    (tmp_path / "f").write_text("")
    with pytest.raises(LossnetError, match=f"--runs-dir {tmp_path / 'f'} exists and is not a directory"):
        check_output_dir(tmp_path / "f", "--runs-dir")


@pytest.mark.skipif(ROOT, reason="root may write anywhere")
def test_unwritable_targets(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "x.json").write_text("")
    ro.chmod(0o500)
    try:
        with pytest.raises(LossnetError, match="is not writable"):
            check_output_file(ro / "y.json", "--json")
        with pytest.raises(LossnetError, match="is not writable"):
            check_output_dir(ro / "sub", "--out")
    finally:
        ro.chmod(0o700)


def test_results_store_uses_the_same_rule(tmp_path):
    from lossnet.runs.store import ResultsStore

    with pytest.raises(
        LossnetError, match=f"--store {tmp_path / 'no' / 'r.db'}: folder {tmp_path / 'no'} does not exist"
    ):
        ResultsStore(tmp_path / "no" / "r.db", what="--store")
    with pytest.raises(LossnetError, match=f"results store {tmp_path} is a directory"):
        ResultsStore(tmp_path)
    assert not (tmp_path / "no").exists()


def test_cli_outputs_checked_before_work(tmp_path, capsys):
    from lossnet.cli.runs import register
    from lossnet.cli.sweep import standalone_main
    from lossnet.runs.store import ResultsStore

    ResultsStore(tmp_path / "r.db").close()
    out = tmp_path / "missing" / "out.csv"
    assert (
        standalone_main(
            register, "runs", ["runs", "export", "--csv", "-o", str(out), "--store", str(tmp_path / "r.db")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"-o/--output {out}: folder {out.parent} does not exist" in err and not out.parent.exists()
