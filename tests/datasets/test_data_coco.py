"""COCO without 13 GB: the seeded subset is fetched member by member with HTTP range requests on the
zip's central directory."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import pytest
from _helpers.loopback import LoopbackServer, jpeg_bytes, serve_dataset, zip_bytes

from lossnet.datasets import coco_subset, locate, part_info
from lossnet.datasets.fetch import fetch, parse_subset
from lossnet.datasets.remotezip import RangeNotSupported, RemoteZip, parse_central_directory
from lossnet.errors import DataError


@pytest.fixture
def server():
    with LoopbackServer() as s:
        yield s


def _coco(server, n=200, size=64):
    return serve_dataset(server, "coco2014", n=n, member_size=size)


def test_subset_of_20_from_200_members_transfers_under_15_percent(server, tmp_path):
    ds, files = _coco(server)
    blob = files["train"]["train2014.zip"]
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = [i.filename for i in zf.infolist()]
        originals = {n: zf.read(n) for n in names}
    assert len(names) == 200
    root = tmp_path / "root"
    results = fetch(ds, ["train"], root=root, subset=20, seed=7, progress=False, log=None)
    served = server.served["/coco2014/train2014.zip"]
    assert served < 0.15 * len(blob), (served, len(blob))
    # Only range requests; never the whole file.
    assert all(r[2] and r[2].startswith("bytes=") for r in server.requests if r[1] == "/coco2014/train2014.zip")
    folder = locate("coco2014", "train", root=root)
    assert folder == root / "coco2014" / "train2014"
    expected = coco_subset(names, 20, 7)
    got = sorted(p.name for p in folder.iterdir())
    assert got == sorted(n.split("/")[-1] for n in expected)
    for n in expected:
        assert (folder / n.split("/")[-1]).read_bytes() == originals[n]
    info = part_info("coco2014", "train", root=root)
    assert info["subset"]["n"] == 20 and info["subset"]["seed"] == 7 and info["subset"]["of"] == 200
    assert results[0].subset["n"] == 20
    # Same request again: nothing transferred; another seed: replaced by the other subset.
    before = server.served_total()
    assert fetch(ds, ["train"], root=root, subset=20, seed=7, progress=False, log=None)[0].status == "present"
    assert server.served_total() == before
    fetch(ds, ["train"], root=root, subset=20, seed=8, progress=False, log=None)
    assert sorted(p.name for p in folder.iterdir()) == sorted(n.split("/")[-1] for n in coco_subset(names, 20, 8))


def test_subset_is_the_choice_the_superres_benchmark_makes():
    from lossnet.bench.superres.data import select

    names = [f"train2014/COCO_train2014_{i * 13 % 997:012d}.jpg" for i in range(300)]
    files_in_name_order = sorted(n.split("/")[-1] for n in names)  # what list_images(train2014) returns
    for n, seed in ((20, 0), (100, 42), (299, 3)):
        ours = [s.split("/")[-1] for s in coco_subset(names, n, seed)]
        assert ours == select(files_in_name_order, n, seed)
    assert coco_subset(names, 1000, 0) == sorted(names)
    with pytest.raises(ValueError):
        coco_subset(names, 0, 0)


def test_subset_resumes_after_an_interruption(server, tmp_path, monkeypatch):
    ds, files = _coco(server)
    root = tmp_path / "root"
    calls = {"n": 0}
    real_read = RemoteZip.extract  # the fetch streams each member to a file

    def flaky(self, entry, out, session=None, stop=None):
        calls["n"] += 1
        if calls["n"] > 8:
            raise DataError("simulated failure")
        return real_read(self, entry, out, session, stop)

    monkeypatch.setattr(RemoteZip, "extract", flaky)
    with pytest.raises(DataError, match="simulated"):
        fetch(ds, ["train"], root=root, subset=20, seed=1, progress=False, log=None)
    assert locate("coco2014", "train", root=root) is None
    staged = list((root / ".lossnet-staging").rglob("*.jpg"))
    assert 1 <= len(staged) <= 8
    monkeypatch.setattr(RemoteZip, "extract", real_read)
    member_gets_before = _member_gets(server)
    fetch(ds, ["train"], root=root, subset=20, seed=1, progress=False, log=None)
    # The rest of the members, plus one read of the central directory.
    assert _member_gets(server) - member_gets_before == 20 - len(staged) + 1
    assert len(list(locate("coco2014", "train", root=root).iterdir())) == 20
    assert not (root / ".lossnet-staging").exists()


def _member_gets(server) -> int:
    # Explicit "a-b" ranges: one per member, plus the central directory (the end record is read with "-n").
    return sum(
        1 for r in server.requests if r[1] == "/coco2014/train2014.zip" and r[2] and not r[2].startswith("bytes=-")
    )


def test_deflated_members_and_the_paper_preset_sizes(server, tmp_path):
    members = {f"val2014/COCO_val2014_{i:012d}.jpg": jpeg_bytes(16, 16, seed=i) for i in range(150)}
    members["val2014/"] = b""
    members["val2014/readme.txt"] = b"not an image"
    blob = zip_bytes(members, method=zipfile.ZIP_DEFLATED)
    ds, _ = serve_dataset(server, "coco2014", data={"val": {"val2014.zip": blob}})
    root = tmp_path / "r"
    fetch(ds, ["val"], root=root, subset="paper", seed=42, progress=False, log=None)
    folder = locate("coco2014", "val", root=root)
    got = sorted(p.name for p in folder.iterdir())
    assert len(got) == 100  # the paper's 100 val2014 images
    names = [n for n in members if n.endswith(".jpg")]
    # The superres benchmark draws its validation images with seed + 1.
    assert got == [n.split("/")[-1] for n in coco_subset(names, 100, 43)]
    assert part_info("coco2014", "val", root=root)["subset"]["seed"] == 43
    assert (folder / got[0]).read_bytes() == members["val2014/" + got[0]]


def test_server_without_range_support_is_a_clear_error(tmp_path):
    with LoopbackServer(ranges=False) as server:
        ds, _ = serve_dataset(server, "coco2014", n=10, member_size=16)
        with pytest.raises(RangeNotSupported, match="ignores HTTP Range.*without --subset"):
            fetch(ds, ["train"], root=tmp_path / "r", subset=3, seed=0, progress=False, log=None)


def test_zip64_end_record_is_read(server):
    """More than 65,535 members: the end record points to a zip64 end record (as for train2014.zip's offsets)."""
    buf = io.BytesIO()
    n = 65_540
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"d/{i}", b"")
        zf.writestr("d/last.jpg", b"payload")
    blob = buf.getvalue()
    assert b"PK\x06\x06" in blob[-200:]
    url = server.add("big.zip", blob)
    rz = RemoteZip(url)
    entries = rz.entries()
    assert len(entries) == n + 1
    assert rz.read(entries[-1]) == b"payload"
    assert server.served["/big.zip"] < len(blob) * 0.75  # central directory + one member, not the local headers


def test_zip64_extra_fields_are_parsed():
    name = b"train2014/big.jpg"
    extra = struct.pack("<HHQQQ", 0x0001, 24, 5_000_000_000, 4_900_000_000, 6_000_000_000)
    record = (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            45,
            45,
            0,
            8,
            0,
            0,
            0x1234,
            0xFFFFFFFF,
            0xFFFFFFFF,
            len(name),
            len(extra),
            0,
            0,
            0,
            0,
            0xFFFFFFFF,
        )
        + name
        + extra
    )
    (e,) = parse_central_directory(record, 1)
    assert (e.file_size, e.compressed_size, e.header_offset, e.method, e.crc) == (
        5_000_000_000,
        4_900_000_000,
        6_000_000_000,
        8,
        0x1234,
    )


def test_member_crc_is_checked(server):
    blob = bytearray(zip_bytes({"train2014/a.jpg": b"A" * 100}))
    i = blob.find(b"A" * 100)
    blob[i] = ord("B")  # corrupt the data, keep the directory
    url = server.add("c.zip", bytes(blob))
    rz = RemoteZip(url)
    (e,) = rz.entries()
    with pytest.raises(DataError, match="CRC-32"):
        rz.read(e)
    assert zlib.crc32(b"A" * 100) == e.crc


def test_parse_subset_values():
    assert parse_subset(None) is None
    assert parse_subset(["10000"]) == 10000
    assert parse_subset(["paper"]) == "paper"
    assert parse_subset(["train=10000", "val=100"]) == {"train": 10000, "val": 100}
    with pytest.raises(DataError):
        parse_subset(["lots"])
    with pytest.raises(DataError):
        parse_subset(["0"])


def test_issue_command_subset_without_parts_gives_train_n_and_the_paper_val(server, tmp_path):
    """`lossnet data fetch coco2014 --subset N --seed 42`: N train images (seed 42) + 100 val images (seed 43)."""
    ds, files = _coco(server, size=16)
    root = tmp_path / "r"
    results = fetch(ds, root=root, subset=20, seed=42, progress=False, log=None)
    assert {r.part: (r.subset["n"], r.subset["seed"]) for r in results} == {"train": (20, 42), "val": (100, 43)}
    with zipfile.ZipFile(io.BytesIO(files["val"]["val2014.zip"])) as zf:
        val_names = zf.namelist()
    got = sorted(p.name for p in locate("coco2014", "val", root=root).iterdir())
    assert got == [n.split("/")[-1] for n in coco_subset(val_names, 100, 43)]


def test_a_complete_full_part_serves_any_subset_request(server, tmp_path):
    ds, _ = _coco(server, n=30, size=16)
    root = tmp_path / "r"
    fetch(ds, ["train"], root=root, progress=False, log=None)
    assert len(list(locate("coco2014", "train", root=root).iterdir())) == 30
    before = server.served_total()
    res = fetch(ds, ["train"], root=root, subset=5, seed=3, progress=False, log=None)
    assert res[0].status == "present" and res[0].subset is None and server.served_total() == before
    assert len(list(locate("coco2014", "train", root=root).iterdir())) == 30  # the full set is kept
