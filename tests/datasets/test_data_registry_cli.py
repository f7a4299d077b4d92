"""The dataset registry (sources, checksums, provenance), docs/data.md, and the ``lossnet data`` CLI."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers.loopback import LoopbackServer, serve_dataset

from lossnet.cli.main import main
from lossnet.datasets import DATASETS, get_dataset, locate
from lossnet.datasets.registry import NO_CHECKSUM

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    with LoopbackServer() as s:
        yield s


def test_registry_covers_every_benchmark_dataset():
    assert {"bapps", "coco2014", "svhn", "stl10", "mrd", "bsds300", "set5", "set14"} <= set(DATASETS)
    assert [p.name for p in get_dataset("bapps").parts] == ["2afc-val", "jnd-val", "2afc-train"]
    assert [p.name for p in get_dataset("mrd").parts] == ["train", "valid", "test"]
    assert [p.name for p in get_dataset("svhn").parts] == ["train", "test", "extra"]
    assert [p.name for p in get_dataset("coco2014").parts] == ["train", "val"]
    assert get_dataset("bsds300").part("bsd100").name == "test"


def test_every_checksum_says_where_it_came_from_and_none_is_invented():
    for ds in DATASETS.values():
        assert ds.sources_note and ds.license and ds.layout
        for p in ds.parts:
            assert p.remotes
            for r in p.remotes:
                assert r.urls and all(u.startswith(("http://", "https://")) for u in r.urls)
                if r.md5 or r.sha256:
                    assert r.checksum_source != NO_CHECKSUM
                    assert r.md5 is None or re.fullmatch(r"[0-9a-f]{32}", r.md5)
                    assert r.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", r.sha256)
                else:
                    assert r.checksum_source == NO_CHECKSUM
    # Sources that publish no checksum carry none.
    for name in ("bapps", "coco2014", "mrd", "bsds300"):
        assert all(r.known_hash is None for p in get_dataset(name).parts for r in p.remotes)


def test_svhn_and_stl10_checksums_equal_torchvisions():
    from torchvision.datasets import STL10, SVHN

    for split, (url, fname, md5) in SVHN.split_list.items():
        (r,) = get_dataset("svhn").part(split).remotes
        assert (r.urls[0], r.filename, r.md5) == (url, fname, md5)
    (r,) = get_dataset("stl10").part("binary").remotes
    assert (r.urls[0], r.md5) == (STL10.url, STL10.tgz_md5)
    assert dict(get_dataset("stl10").part("binary").member_md5) == dict(STL10.train_list + STL10.test_list)


@pytest.mark.parametrize("name,folder", [("set5", "set5"), ("set14", "set14"), ("bsd100", "bsd100")])
def test_selfexsr_sha256s_match_the_real_files_in_shared(shared_dir, name, folder):
    real = shared_dir / "data" / "sr" / folder
    if not real.is_dir():
        pytest.skip(f"needs {real}")
    remotes = get_dataset(name).parts[0].remotes
    assert sorted(r.filename for r in remotes) == sorted(p.name for p in real.glob("*.png"))
    for r in remotes:
        blob = (real / r.filename).read_bytes()
        assert len(blob) == r.size and hashlib.sha256(blob).hexdigest() == r.sha256, r.filename


def test_cli_fetch_real_set5_entry_through_a_mirror_then_path_and_verify(shared_dir, server, tmp_path, capsys):
    """The real registry entry (real SHA-256s) end to end: the loopback server plays the mirror with
    the real Set5 files from ../shared."""
    real = shared_dir / "data" / "sr" / "set5"
    if not real.is_dir():
        pytest.skip(f"needs {real}")
    for f in real.glob("*.png"):
        server.add(f"set5/{f.name}", f.read_bytes())
    root = tmp_path / "root"
    assert main(["data", "fetch", "set5", "--root", str(root), "--mirror", server.url("set5"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "set5 images: fetched, 5 files" in out
    assert main(["data", "path", "set5", "--root", str(root)]) == 0
    assert capsys.readouterr().out.strip() == str(root / "set5")
    assert main(["data", "verify", "set5", "--root", str(root), "--no-progress"]) == 0
    assert "set5 images: ok" in capsys.readouterr().out
    # Only the mirror was asked (never GitHub).
    assert {r[1] for r in server.requests} == {f"/set5/{f.name}" for f in real.glob("*.png")}
    f = root / "set5" / "img_002.png"
    f.write_bytes(b"changed")
    assert main(["data", "verify", "set5", "--root", str(root), "--no-progress"]) == 2
    io = capsys.readouterr()
    assert "img_002.png" in io.out and "failed verification" in io.err


def test_cli_path_of_a_missing_dataset_prints_the_fetch_command(tmp_path, capsys):
    root = tmp_path / "empty"
    assert main(["data", "path", "bapps", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"lossnet data fetch bapps --root {root}" in err
    assert main(["data", "path", "coco2014", "train", "--root", str(root)]) == 2
    assert f"lossnet data fetch coco2014 train --root {root}" in capsys.readouterr().err


def test_cli_fetch_and_list_with_a_synthetic_registry_entry(server, tmp_path, monkeypatch, capsys):
    ds, _ = serve_dataset(server, "svhn")
    monkeypatch.setitem(DATASETS, "svhn", ds)
    monkeypatch.setenv("LOSSNET_DATA", str(tmp_path / "d"))
    assert main(["data", "fetch", "svhn", "train", "test", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "svhn train: fetched" in out and "svhn test: fetched" in out
    assert locate("svhn", "train") == tmp_path / "d" / "svhn" / "train_32x32.mat"
    assert locate("svhn") is None  # 'extra' (a default part) is still missing
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert f"data root: {tmp_path / 'd'}" in out
    assert "train:complete test:complete extra:absent" in out
    for name in DATASETS:
        assert f"\n{name}: " in out
    assert main(["data", "list", "--sources"]) == 0
    out = capsys.readouterr().out
    assert "e26dedcc434d2e4c54c9b2d4a06d8373" not in out  # the synthetic entry replaced the real one here
    assert "https://perceptual-similarity.s3.us-west-2.amazonaws.com/dataset/jnd.tar.gz" in out


def test_cli_help_stays_cheap():
    code = (
        "import sys; from lossnet.cli.main import build_parser; p = build_parser(); "
        "p.parse_args(['data', 'fetch', 'bapps']); "
        "print(sorted(m for m in ('torch', 'numpy', 'pooch', 'requests', 'tqdm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_docs_table_lists_every_url_and_checksum():
    text = (REPO / "docs" / "data.md").read_text(encoding="utf-8")
    for ds in DATASETS.values():
        assert f"`{ds.name}`" in text
        for p in ds.parts:
            for r in p.remotes:
                if ds.name in ("set5", "set14", "bsd100"):
                    continue  # one row per set (URL pattern); the per-file SHA-256s live in the registry
                assert r.urls[0] in text, r.urls[0]
                for h in (r.md5, r.sha256):
                    if h:
                        assert h in text, (ds.name, r.filename)


def test_kaggle_route_messages(tmp_path, monkeypatch):
    import importlib.util

    from lossnet.datasets.fetch import fetch, kaggle_credentials_problem
    from lossnet.errors import DataError

    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert "kaggle.json" in kaggle_credentials_problem()
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    assert kaggle_credentials_problem() is None
    monkeypatch.delenv("KAGGLE_KEY")
    if importlib.util.find_spec("kaggle") is None:
        with pytest.raises(DataError, match=r"pip install 'lossnet\[kaggle\]'"):
            fetch("bapps", root=tmp_path / "r", source="kaggle", log=None, space_check=False)
    else:
        with pytest.raises(DataError, match="no Kaggle API credentials"):
            fetch("bapps", root=tmp_path / "r", source="kaggle", log=None, space_check=False)
    with pytest.raises(DataError, match="no Kaggle mirror"):
        fetch("svhn", root=tmp_path / "r", source="kaggle", log=None)
