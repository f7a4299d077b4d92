"""Safe unpacking: archives with ``..``, absolute paths, links or devices are refused as a whole and
nothing is written outside (or, through ``fetch``, anywhere under) the data root."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from _helpers.loopback import LoopbackServer, serve_dataset, tar_bytes, zip_bytes

from lossnet.datasets import locate
from lossnet.datasets.extract import UnsafeArchiveError, extract_archive, safe_relpath
from lossnet.datasets.fetch import fetch


@pytest.fixture
def server():
    with LoopbackServer() as s:
        yield s


def _all_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*")) if path.exists() else []


def _evil_cases(outside: Path) -> dict[str, bytes]:
    """tar.gz archives, each with a harmless member first and one evil member (in the BAPPS 2afc-val layout)."""
    good = {"val/traditional/ref/000000.png": b"ok"}
    return {
        "dotdot": tar_bytes({**good, "../../../../evil": b"pwned"}),
        "dotdot_in_prefix": tar_bytes({**good, "val/../../../../../evil": b"pwned"}),
        "absolute": tar_bytes({**good, str(outside / "abs_evil"): b"pwned"}),
        "symlink_out": tar_bytes(good, links={"val/link": str(outside)}),
        "symlink_then_write": _tar_link_then_file(outside),
        "hardlink": tar_bytes(good, hardlinks={"val/hard": "/etc/passwd"}),
        "device": _tar_device(),
    }


def _tar_link_then_file(outside: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        link = tarfile.TarInfo("val/escape")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../../../"
        tf.addfile(link)
        data = b"pwned"
        f = tarfile.TarInfo("val/escape/link_evil")
        f.size = len(data)
        tf.addfile(f, io.BytesIO(data))
    return buf.getvalue()


def _tar_device() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        dev = tarfile.TarInfo("val/null")
        dev.type = tarfile.CHRTYPE
        dev.devmajor, dev.devminor = 1, 3
        tf.addfile(dev)
    return buf.getvalue()


@pytest.mark.parametrize(
    "case", ["dotdot", "dotdot_in_prefix", "absolute", "symlink_out", "symlink_then_write", "hardlink", "device"]
)
def test_fetch_refuses_unsafe_tar_and_writes_nothing(server, tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    blob = _evil_cases(outside)[case]
    ds, _ = serve_dataset(server, "bapps", data={"2afc-val": {"twoafc_val.tar.gz": blob}})
    with pytest.raises(UnsafeArchiveError, match="twoafc_val.tar.gz.*refused"):
        fetch(ds, ["2afc-val"], root=root, progress=False, log=None)
    assert _all_files(outside) == []
    assert not (tmp_path / "evil").exists() and not (tmp_path / "link_evil").exists()
    assert _all_files(root) == []  # staging and the download are gone too
    assert locate("bapps", "2afc-val", root=root) is None


def test_unsafe_tar_refused_even_when_the_evil_member_comes_after_good_ones(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_bytes({"val/a.png": b"1", "val/b.png": b"2", "../evil": b"x"}))
    dest = tmp_path / "stage" / "content"
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./evil'.*'\.\.'"):
        extract_archive(archive, dest, "val/", progress=False)
    assert not (tmp_path / "stage" / "evil").exists() and not (tmp_path / "evil").exists()


def _zip_cases(outside: Path) -> dict[str, bytes]:
    good = {"val/traditional/ref/000000.png": b"ok"}
    return {
        "dotdot": zip_bytes({**good, "../../../../evil": b"pwned"}),
        "backslash_dotdot": zip_bytes({**good, "..\\..\\..\\..\\evil": b"pwned"}),
        "absolute": zip_bytes({**good, str(outside / "abs_evil"): b"pwned"}),
        "symlink": zip_bytes(good, symlinks={"val/link": str(outside)}),
    }


@pytest.mark.parametrize("case", ["dotdot", "backslash_dotdot", "absolute", "symlink"])
def test_fetch_refuses_unsafe_zip_and_writes_nothing(server, tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    blob = _zip_cases(outside)[case]
    # Served under the BAPPS name: the format is detected from the content, not the file name.
    ds, _ = serve_dataset(server, "bapps", data={"2afc-val": {"twoafc_val.tar.gz": blob}})
    with pytest.raises(UnsafeArchiveError, match="refused"):
        fetch(ds, ["2afc-val"], root=root, progress=False, log=None)
    assert _all_files(outside) == [] and not (tmp_path / "evil").exists()
    assert _all_files(root) == []


def test_python_zipfile_would_have_sanitised_but_we_refuse(tmp_path):
    """zipfile.extractall strips '..' silently; an archive that tries it is refused outright here."""
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes({"a/../../x": b"1"}))
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, tmp_path / "d", progress=False)


def test_safe_zip_and_tar_extract_with_prefix_and_hashes(tmp_path):
    import hashlib

    members = {"stl10_binary/train_X.bin": b"abc", "stl10_binary/sub/x.txt": b"hello", "other/skip.txt": b"no"}
    for name, blob in (("a.tar.gz", tar_bytes(members)), ("a.zip", zip_bytes(members, method=zipfile.ZIP_DEFLATED))):
        archive = tmp_path / name
        archive.write_bytes(blob)
        dest = tmp_path / f"out-{name}"
        files, nbytes, tops = extract_archive(archive, dest, "stl10_binary/", progress=False)
        assert files == {
            "train_X.bin": hashlib.sha256(b"abc").hexdigest(),
            "sub/x.txt": hashlib.sha256(b"hello").hexdigest(),
        }
        assert nbytes == 8 and sorted(tops) == ["other", "stl10_binary"]
        assert (dest / "sub" / "x.txt").read_bytes() == b"hello" and not (dest / "other").exists()
        assert (dest / "train_X.bin").stat().st_mode & 0o777 == 0o644


def test_corrupt_archive_is_a_data_error(tmp_path):
    from lossnet.errors import DataError

    archive = tmp_path / "a.tar.gz"
    blob = tar_bytes({"x/" + str(i): bytes(range(256)) * 40 for i in range(5)})
    archive.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        extract_archive(archive, tmp_path / "d", progress=False)
    (tmp_path / "b.bin").write_bytes(b"not an archive at all")
    with pytest.raises(DataError, match="not a readable tar or zip"):
        extract_archive(tmp_path / "b.bin", tmp_path / "e", progress=False)


@pytest.mark.parametrize("name,expected", [("./a/b", "a/b"), ("a//b/", "a/b"), (".", None), ("a/./b", "a/b")])
def test_safe_relpath_normalises(name, expected):
    assert safe_relpath(name) == expected


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "C:/x", "a\\..\\..\\x", "a\x00b"])
def test_safe_relpath_refuses(name):
    with pytest.raises(UnsafeArchiveError):
        safe_relpath(name)
