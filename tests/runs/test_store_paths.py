"""Store paths with URI-special characters, and errors that name the user's path (not a temp file)."""

from __future__ import annotations

import errno

import pytest

from lossnet.atomic import atomic_path, atomic_write_json
from lossnet.errors import LossnetError
from lossnet.runs.record import RunRecord
from lossnet.runs.store import ResultsStore


@pytest.mark.parametrize("name", ["a#b.db", "what?.db", "100%.db", "x%23y?mode=rw#f.db", "sp ace.db"])
def test_store_path_with_uri_characters(tmp_path, name):
    path = tmp_path / name
    with ResultsStore(path) as store:
        store.record(RunRecord("k", "fake_bench", {"net": "vgg16"}, metrics={"s": 1.0}))
    with ResultsStore(path, readonly=True) as store:
        assert store.get_run("k")["metrics"] == {"s": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        name
    ]  # no stray file


def test_atomic_errors_name_the_destination(tmp_path):
    target = tmp_path / "result.json"
    # an OSError about the temporary file, raised by the caller's writer
    with pytest.raises(OSError) as info:
        with atomic_path(target) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert ".tmp" not in str(info.value) and str(target) in str(info.value)
    # os.replace onto a non-empty directory
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("")
    with pytest.raises(OSError) as info:
        atomic_write_json(tmp_path / "d", {"a": 1})
    assert str(tmp_path / "d") in str(info.value) and ".tmp" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # temp file removed
    # other exceptions pass unchanged, with a note naming the destination
    with pytest.raises(ValueError) as info:
        with atomic_path(target):
            raise ValueError("bad value")
    assert str(info.value) == "bad value" and f"while writing {target}" in getattr(info.value, "__notes__", [])


def test_readonly_store_errors_name_the_path(tmp_path):
    with pytest.raises(LossnetError, match=f"--store {tmp_path / 'nope#1.db'} does not exist"):
        ResultsStore(tmp_path / "nope#1.db", readonly=True, what="--store")
    assert list(tmp_path.iterdir()) == []
