"""``lossnet data fetch`` against a loopback HTTP server with synthetic archives in the real formats:
layouts the benchmarks read, resume, checksum mismatch, offline, full disk, verify."""

from __future__ import annotations

import hashlib
import shutil
import socket
import time
from collections import namedtuple
from pathlib import Path

import pytest
from _helpers.loopback import LoopbackServer, serve_dataset, with_remote

from lossnet.datasets import locate, missing_error, part_info
from lossnet.datasets.download import ChecksumError, DiskSpaceError, InterruptedDownload, OfflineError
from lossnet.datasets.fetch import fetch
from lossnet.datasets.store import verify_part
from lossnet.errors import DataError, LossnetError


@pytest.fixture
def server():
    with LoopbackServer() as s:
        yield s


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = tmp_path / "root"
    monkeypatch.setenv("LOSSNET_DATA", str(r))
    return r


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink()) if path.exists() else []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# fetch -> the layout each benchmark reads (checked with the benchmarks' own readers)
# ------------------------------------------------------------------------------------------------
def test_bapps_fetch_gives_the_lpips_layout_read_by_the_similarity_benchmark(server, root):
    from lossnet.bench.similarity.bapps import SUBSETS_2AFC_VAL, SUBSETS_JND_VAL, list_items, load_subset

    ds, files = serve_dataset(server, "bapps")
    assert locate("bapps") is None
    results = fetch(ds, root=root, progress=False, log=None)
    assert [r.part for r in results] == ["2afc-val", "jnd-val"] and all(r.status == "fetched" for r in results)
    bapps = locate("bapps")
    assert bapps == root / "bapps"
    assert sorted(p.name for p in (bapps / "2afc" / "val").iterdir()) == sorted(SUBSETS_2AFC_VAL)
    for subset in SUBSETS_2AFC_VAL:
        items = list_items(bapps, "2afc", "val", subset)
        assert len(items) == 3
    for subset in SUBSETS_JND_VAL:
        data = load_subset(bapps, "jnd", "val", subset, progress=False)
        assert len(data) == 3 and data.images["p0"].shape[1:] == (3, 64, 64)
    # Byte-exact copies of the archive members.
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(files["2afc-val"]["twoafc_val.tar.gz"])) as tf:
        m = tf.getmember("val/cnn/judge/000001.npy")
        assert (bapps / "2afc/val/cnn/judge/000001.npy").read_bytes() == tf.extractfile(m).read()
    # Nothing left besides the dataset: downloads deleted after unpacking, staging removed.
    assert sorted(p.name for p in root.iterdir()) == ["bapps"]
    # The training split is not a default part; fetching it adds 2afc/train without touching val.
    assert locate("bapps", "2afc-train") is None
    fetch(ds, ["2afc-train"], root=root, progress=False, log=None)
    assert locate("bapps", "2afc-train") == bapps and (bapps / "2afc/train/mix/ref").is_dir()
    assert len(list_items(bapps, "2afc", "val", "traditional")) == 3


def test_bench_similarity_runs_on_fetched_bapps(server, root, capsys):
    from lossnet.cli.main import main

    ds, _ = serve_dataset(server, "bapps", items=2)
    fetch(ds, root=root, progress=False, log=None)
    out = root / "out"
    rc = main(
        [
            "bench",
            "similarity",
            "--data",
            str(locate("bapps")),
            "--net",
            "alexnet",
            "--layer",
            "E",
            "--weights",
            "none",
            "--device",
            "cpu",
            "--no-progress",
            "--out",
            str(out),
            "--json",
            str(root / "r.json"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    import json

    text = (root / "r.json").read_text()
    assert "bapps/2afc" in text and "jnd_map" in text
    json.loads(text)


def test_svhn_fetch_gives_the_mat_files_the_autoencoder_reads(server, root):
    from lossnet.bench.autoencoder.datasets import load_dataset

    ds, files = serve_dataset(server, "svhn")
    assert all(r.md5 for p in ds.parts for r in p.remotes)  # checked by MD5, like the real entry
    fetch(ds, root=root, progress=False, log=None)
    svhn = locate("svhn")
    assert sorted(p.name for p in svhn.iterdir() if not p.name.startswith(".")) == [
        "extra_32x32.mat",
        "test_32x32.mat",
        "train_32x32.mat",
    ]
    assert locate("svhn", "train") == svhn / "train_32x32.mat"
    data = load_dataset("svhn", svhn)
    assert data.train_x.shape[0] == 12 and tuple(data.train_x.shape[1:]) == (3, 32, 32)
    assert (svhn / "test_32x32.mat").read_bytes() == files["test"]["test_32x32.mat"]


def test_stl10_fetch_strips_stl10_binary_and_checks_member_md5(server, root):
    from lossnet.bench.autoencoder.datasets import load_dataset

    ds, _ = serve_dataset(server, "stl10")
    assert ds.parts[0].member_md5  # synthetic MD5s for the same five files as torchvision's list
    fetch(ds, root=root, progress=False, log=None)
    data = load_dataset("stl10", locate("stl10"))
    assert tuple(data.train_x.shape) == (4, 3, 96, 96) and data.unlabeled.shape[0] == 8


def test_stl10_member_md5_mismatch_is_refused(server, root):
    import dataclasses

    ds, _ = serve_dataset(server, "stl10")
    p = ds.parts[0]
    bad = dataclasses.replace(p, member_md5=(("train_X.bin", "0" * 32),))
    ds = dataclasses.replace(ds, parts=(bad,))
    with pytest.raises(DataError, match=r"train_X\.bin.*expected md5:0{32}, got md5:[0-9a-f]{32}"):
        fetch(ds, root=root, progress=False, log=None)
    assert _files_under(root) == []


def test_mrd_fetch_from_index_pages_gives_split_sat_map(server, root):
    from lossnet.bench.roads.data import find_tiles, load_tile

    ds, files = serve_dataset(server, "mrd")
    results = fetch(ds, root=root, progress=False, log=None)
    assert {r.part: r.files for r in results} == {"train": 6, "valid": 2, "test": 4}
    mrd = locate("mrd")
    tiles = find_tiles(mrd, "train")
    assert [t.name for t in tiles] == ["10078660_15", "10078661_15", "10078662_15"]
    image, mask = load_tile(tiles[0])
    assert image.shape == (32, 32, 3) and mask.dtype == bool
    assert len(find_tiles(mrd, "valid")) == 1 and len(find_tiles(mrd, "test")) == 2
    assert (mrd / "test/map/10078661_15.tif").read_bytes() == files["test"]["test/map/10078661_15.tif"]
    # No checksum is published: the marker records the SHA-256 of every file instead.
    manifest = (mrd / ".lossnet" / "train.sha256").read_text().splitlines()
    assert len(manifest) == 6
    digest, rel = manifest[0].split("  ")
    assert hashlib.sha256((mrd / rel).read_bytes()).hexdigest() == digest


def test_set5_and_bsds300_give_the_image_folders_superres_reads(server, root):
    from lossnet.bench.superres.data import load_folder

    ds5, _ = serve_dataset(server, "set5")
    assert all(r.sha256 for r in ds5.parts[0].remotes)
    fetch(ds5, root=root, progress=False, log=None)
    assert len(load_folder(locate("set5"))) == 5
    dsb, _ = serve_dataset(server, "bsds300")
    results = fetch(dsb, root=root, progress=False, log=None)
    assert {r.part for r in results} == {"test", "train"}
    test_dir = locate("bsds300", "test")
    assert test_dir == root / "bsds300" / "images" / "test"
    assert len(load_folder(test_dir)) == 3 and len(load_folder(locate("bsds300", "train"))) == 6
    # One archive served both parts, and was downloaded once.
    assert [r for r in server.requests if r[1].endswith(".tgz")].__len__() == 1


def test_fetch_is_idempotent_and_force_refetches(server, root):
    ds, _ = serve_dataset(server, "svhn")
    fetch(ds, ["test"], root=root, progress=False, log=None)
    n = len(server.requests)
    again = fetch(ds, ["test"], root=root, progress=False, log=None)
    assert again[0].status == "present" and len(server.requests) == n
    fetch(ds, ["test"], root=root, progress=False, log=None, force=True)
    assert len(server.requests) > n


# ------------------------------------------------------------------------------------------------
# resume, checksum, offline, disk
# ------------------------------------------------------------------------------------------------
def test_cut_transfer_resumes_with_range_and_serves_under_1_2x(server, root):
    ds, files = serve_dataset(server, "bapps")
    blob = files["2afc-val"]["twoafc_val.tar.gz"]
    path = "/bapps/twoafc_val.tar.gz"
    ds = with_remote(ds, "2afc-val", sha256=hashlib.sha256(blob).hexdigest())
    server.cut[path] = len(blob) // 2
    # First run: the transfer breaks off, no retries -> an error that says how to resume, partial bytes kept.
    with pytest.raises(InterruptedDownload, match="run the same command again to resume"):
        fetch(ds, ["2afc-val"], root=root, progress=False, log=None, retries=0)
    part = root / ".lossnet-downloads" / "bapps" / "twoafc_val.tar.gz.part"
    assert 0 < part.stat().st_size <= len(blob) // 2
    assert locate("bapps", "2afc-val") is None
    # Second run: resumes with a Range request and completes.
    fetch(ds, ["2afc-val"], root=root, progress=False, log=None)
    assert locate("bapps", "2afc-val") == root / "bapps"
    gets = [r for r in server.requests if r[1] == path and r[0] == "GET"]
    assert len(gets) == 2 and gets[0][2] is None and gets[1][2] == f"bytes={len(blob) // 2}-"
    assert server.served[path] < 1.2 * len(blob)
    assert server.served[path] == len(blob)  # every byte exactly once
    assert not part.exists()


def test_cut_transfer_resumes_within_one_fetch(server, root):
    ds, files = serve_dataset(server, "svhn")
    blob = files["extra"]["extra_32x32.mat"]
    server.cut["/svhn/extra_32x32.mat"] = len(blob) // 3
    fetch(ds, ["extra"], root=root, progress=False, log=None, retries=2, backoff=0)
    assert (locate("svhn", "extra")).read_bytes() == blob
    assert server.served["/svhn/extra_32x32.mat"] < 1.2 * len(blob)


def test_checksum_mismatch_leaves_nothing_and_names_file_and_hashes(server, root):
    ds, files = serve_dataset(server, "bapps")
    blob = files["2afc-val"]["twoafc_val.tar.gz"]
    actual = hashlib.sha256(blob).hexdigest()
    ds = with_remote(ds, "2afc-val", sha256="ab" * 32)
    with pytest.raises(ChecksumError) as info:
        fetch(ds, ["2afc-val"], root=root, progress=False, log=None)
    msg = str(info.value)
    assert "twoafc_val.tar.gz" in msg and "sha256:" + "ab" * 32 in msg and actual in msg and "127.0.0.1" in msg
    assert _files_under(root) == [] and list(root.iterdir()) == []
    assert locate("bapps", "2afc-val") is None


def test_md5_mismatch_of_a_plain_file(server, root):
    ds, files = serve_dataset(server, "svhn")
    ds = with_remote(ds, "train", md5="0" * 32)
    with pytest.raises(
        ChecksumError,
        match=r"train_32x32\.mat.*expected md5:0{32}, got md5:"
        + hashlib.md5(files["train"]["train_32x32.mat"]).hexdigest(),
    ):
        fetch(ds, ["train"], root=root, progress=False, log=None)
    assert _files_under(root) == []


def test_offline_fails_at_once_with_url_and_manual_steps(root):
    from lossnet.datasets import get_dataset

    port = _closed_port()
    real = get_dataset("svhn")
    url = f"http://127.0.0.1:{port}/housenumbers/train_32x32.mat"
    ds = with_remote(real, "train", urls=(url,))
    t0 = time.monotonic()
    with pytest.raises(OfflineError) as info:
        fetch(ds, ["train"], root=root, progress=False, log=None, space_check=False)
    assert time.monotonic() - t0 < 5
    msg = str(info.value)
    assert url in msg and "Manual steps" in msg and "train_32x32.mat" in msg
    assert str(root / ".lossnet-downloads" / "svhn" / "train_32x32.mat") in msg
    assert "e26dedcc434d2e4c54c9b2d4a06d8373" in msg  # the expected checksum of the manual download
    assert "run lossnet data fetch svhn train" in msg


def test_offline_manual_route_uses_a_placed_file(server, root):
    """The manual steps work: a file placed where the message says is checked and used, no download."""
    ds, files = serve_dataset(server, "svhn")
    blob = files["test"]["test_32x32.mat"]
    port = _closed_port()
    ds = with_remote(ds, "test", urls=(f"http://127.0.0.1:{port}/test_32x32.mat",))
    target = root / ".lossnet-downloads" / "svhn" / "test_32x32.mat"
    target.parent.mkdir(parents=True)
    target.write_bytes(blob)
    fetch(ds, ["test"], root=root, progress=False, log=None)
    assert locate("svhn", "test").read_bytes() == blob


def test_mirror_is_tried_first_then_registry_urls(server, root):
    ds, files = serve_dataset(server, "svhn")
    server.add("mirror/test_32x32.mat", files["test"]["test_32x32.mat"])
    fetch(ds, ["test"], root=root, progress=False, log=None, mirror=server.url("mirror"))
    assert [r[1] for r in server.requests if r[0] == "GET"] == ["/mirror/test_32x32.mat"]
    # A dead mirror falls through to the registry URL.
    port = _closed_port()
    fetch(ds, ["train"], root=root, progress=False, log=None, mirror=f"http://127.0.0.1:{port}/x")
    assert locate("svhn", "train") is not None


def test_full_disk_is_refused_before_any_download(server, root, monkeypatch):
    ds, _ = serve_dataset(server, "bapps")
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**12, 10**12 - 1000, 1000))
    with pytest.raises(DiskSpaceError, match=r"not enough free disk space for bapps 2afc-val jnd-val.*1.0 KB free"):
        fetch(ds, root=root, progress=False, log=None)
    assert server.requests == []
    assert _files_under(root) == []


def test_full_disk_refused_for_real_sizes_too(root, monkeypatch):
    """The real registry's estimates drive the check: 20 GB free is not enough for COCO 2014."""
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**13, 0, 20 * 10**9))
    with pytest.raises(DiskSpaceError, match="coco2014"):
        fetch("coco2014", root=root, progress=False, log=None)


def test_verify_detects_a_changed_file(server, root):
    ds, _ = serve_dataset(server, "set5")
    fetch(ds, root=root, progress=False, log=None)
    part = ds.parts[0]
    assert verify_part(ds, part, root, progress=False) == []
    f = locate("set5") / "img_003.png"
    f.write_bytes(f.read_bytes() + b"x")
    problems = verify_part(ds, part, root, progress=False)
    assert len(problems) == 1 and "img_003.png" in problems[0] and "expected" in problems[0]
    (locate("set5") / "img_001.png").unlink()
    assert locate("set5") is None  # a listed top-level path is gone: not complete any more


def test_missing_error_prints_the_exact_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSNET_DATA", str(tmp_path / "d"))
    err = missing_error("bapps", "similarity benchmark")
    assert isinstance(err, LossnetError)
    assert str(err).endswith("fetch it with: lossnet data fetch bapps")
    assert str(tmp_path / "d") in str(err)
    err = missing_error(
        "coco2014", "superres training set", "train", root=tmp_path / "other", extra="--subset paper --seed 42"
    )
    assert f"lossnet data fetch coco2014 train --root {tmp_path / 'other'} --subset paper --seed 42" in str(err)


def test_data_root_default_and_env(monkeypatch, tmp_path):
    from lossnet.datasets import data_root

    monkeypatch.setenv("LOSSNET_DATA", str(tmp_path / "x"))
    assert data_root() == tmp_path / "x"
    monkeypatch.delenv("LOSSNET_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_root() == tmp_path / "cache" / "lossnet" / "data"


def test_unknown_names_are_user_errors(root):
    with pytest.raises(DataError, match="unknown dataset 'imagenet'; known: bapps"):
        fetch("imagenet", root=root, log=None)
    with pytest.raises(DataError, match="has no part 'nope'; parts: train, test, extra"):
        fetch("svhn", ["nope"], root=root, log=None)
    with pytest.raises(DataError, match="--subset works only"):
        fetch("svhn", ["train"], root=root, log=None, subset=10)
    assert part_info("svhn", "train", root) is None


def test_resume_against_a_server_without_ranges_restarts_and_completes(tmp_path):
    with LoopbackServer(ranges=False) as server:
        ds, files = serve_dataset(server, "svhn")
        blob = files["train"]["train_32x32.mat"]
        server.cut["/svhn/train_32x32.mat"] = len(blob) // 2
        root = tmp_path / "root"
        fetch(ds, ["train"], root=root, progress=False, log=None, backoff=0)
        assert locate("svhn", "train", root=root).read_bytes() == blob
        assert server.served["/svhn/train_32x32.mat"] == len(blob) + len(blob) // 2  # the restart re-sent the start


def test_a_complete_part_file_is_finished_by_a_416_answer(server, root):
    ds, files = serve_dataset(server, "svhn")
    blob = files["test"]["test_32x32.mat"]
    part = root / ".lossnet-downloads" / "svhn" / "test_32x32.mat.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(blob)  # everything arrived, but the run died before the rename
    # ... with the resume record the transfer wrote when it started (a .part without one is not trusted)
    import json

    part.with_name(part.name + ".json").write_text(
        json.dumps({"url": ds.part("test").remotes[0].urls[0], "etag": None, "last_modified": None, "total": len(blob)})
    )
    fetch(ds, ["test"], root=root, progress=False, log=None)
    assert locate("svhn", "test").read_bytes() == blob
    assert server.served.get("/svhn/test_32x32.mat", 0) == 0
    assert [r[2] for r in server.requests] == [f"bytes={len(blob)}-"]


def test_a_failed_refetch_keeps_the_complete_copy(server, root):
    ds, files = serve_dataset(server, "bapps")
    fetch(ds, ["jnd-val"], root=root, progress=False, log=None)
    before = sorted(p.relative_to(root) for p in _files_under(root))
    dead = with_remote(ds, "jnd-val", urls=(f"http://127.0.0.1:{_closed_port()}/jnd.tar.gz",))
    with pytest.raises(OfflineError):
        fetch(dead, ["jnd-val"], root=root, progress=False, log=None, force=True)
    assert locate("bapps", "jnd-val") == root / "bapps"
    assert sorted(p.relative_to(root) for p in _files_under(root)) == before


def test_a_half_installed_part_is_cleaned_and_refetched(server, root):
    ds, _ = serve_dataset(server, "bapps")
    fetch(ds, ["jnd-val"], root=root, progress=False, log=None)
    meta = root / "bapps" / ".lossnet"
    # Simulate a crash after the files moved in but before the marker was written.
    (meta / "jnd-val.json").unlink()
    (meta / "jnd-val.pending").write_text('["jnd/val"]')
    (root / "bapps" / "jnd" / "val" / "stray.txt").write_text("half-installed")
    assert locate("bapps", "jnd-val") is None
    fetch(ds, ["jnd-val"], root=root, progress=False, log=None)
    assert locate("bapps", "jnd-val") == root / "bapps"
    assert not (root / "bapps" / "jnd" / "val" / "stray.txt").exists() and not (meta / "jnd-val.pending").exists()
    assert verify_part(ds, ds.part("jnd-val"), root, progress=False) == []
