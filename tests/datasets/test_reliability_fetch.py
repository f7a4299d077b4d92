"""The hostile-server suite of issue #32: ``lossnet data fetch`` against a loopback server that
mistypes, redirects badly, loops, stalls, lies, changes files between attempts and sends slowly; and
against interruptions (Ctrl-C in the unpack and in parallel transfers), concurrent fetches, stale
locks and decompression bombs. Each test names the defect id of ``../shared/reference/UX-TESTS.md``
it reproduces (``test_h1_...``, ``test_m3_...``, ``test_l2_...``).

Run it alone with ``pytest tests/datasets/test_reliability_fetch.py``. The server is the appendix's, adapted:
in-process, files from a dict, a strong ``ETag`` and ``Last-Modified`` per file, ``If-Range`` honoured
(``plain`` mode), and the body bytes it sends counted per file.
"""

from __future__ import annotations

import _thread
import dataclasses
import errno
import hashlib
import importlib
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lossnet.datasets import download as dl
from lossnet.datasets.download import DiskSpaceError, InterruptedDownload, OfflineError
from lossnet.datasets.extract import UnpackLimitError
from lossnet.datasets.fetch import UNPACK_FACTOR, fetch
from lossnet.datasets.registry import get_dataset
from lossnet.datasets.store import read_marker
from lossnet.errors import DataError

fetch_mod = importlib.import_module("lossnet.datasets.fetch")  # the package re-exports the function under this name


# ------------------------------------------------------------------------------------------------
# The hostile loopback server (UX-TESTS.md appendix, in-process)
# ------------------------------------------------------------------------------------------------
class HostileServer:
    """``http://127.0.0.1:PORT/<mode>/<name>`` serves ``files[name]`` the way ``mode`` says.

    Modes: plain, noranges, lieshort, liemore, loop, redir2, badredir (302 to ftp://), stall (headers +
    1000 bytes, then silence), slowN (N KB per 0.1 s).

    Attributes:
        sent: body bytes sent per file name, all requests together.
        log: ``(method, path, Range, If-Range)`` per request.
    """

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = dict(files or {})
        self.sent: dict[str, int] = {}
        self.log: list[tuple[str, str, str | None, str | None]] = []
        self.release = threading.Event()  # ends stalls at shutdown
        lock = threading.Lock()
        srv = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_HEAD(self):
                self.serve(True)

            def do_GET(self):
                self.serve(False)

            def redirect(self, loc):
                self.send_response(302)
                self.send_header("Location", loc)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def count(self, name, n):
                with lock:
                    srv.sent[name] = srv.sent.get(name, 0) + n

            def serve(self, head):
                mode, _, name = self.path.split("?")[0].lstrip("/").partition("/")
                with lock:
                    srv.log.append(
                        ("HEAD" if head else "GET", self.path, self.headers.get("Range"), self.headers.get("If-Range"))
                    )
                if mode == "loop":
                    return self.redirect(self.path)
                if mode == "redir2":
                    return self.redirect("/plain/" + name)
                if mode == "badredir":
                    return self.redirect("ftp://127.0.0.1/" + name)
                data = srv.files.get(name)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
                size, start, status, body = len(data), 0, 200, data
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and if_range is not None and if_range != etag:
                    rng = None  # RFC 9110 13.1.5: the representation changed -> the whole of it, 200
                if rng and mode != "noranges":
                    ms = re.fullmatch(r"bytes=-(\d+)", rng.strip())
                    if ms:
                        rng = f"bytes={max(size - int(ms.group(1)), 0)}-"
                    m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
                    if m:
                        start = int(m.group(1))
                        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                        if start >= size:
                            self.send_response(416)
                            self.send_header("Content-Range", f"bytes */{size}")
                            self.send_header("Content-Length", "0")
                            self.end_headers()
                            return
                        status, body = 206, data[start : end + 1]
                declared = len(body) + (100000 if mode == "lieshort" else -1000 if mode == "liemore" else 0)
                self.send_response(status)
                self.send_header("Accept-Ranges", "none" if mode == "noranges" else "bytes")
                self.send_header("Content-Length", str(max(declared, 0)))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", "Mon, 07 Dec 2026 10:00:00 GMT")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{size}")
                self.end_headers()
                if head:
                    return
                try:
                    if mode == "stall":
                        self.wfile.write(body[:1000])
                        self.wfile.flush()
                        self.count(name, min(1000, len(body)))
                        srv.release.wait(120)  # longer than any read timeout; ends at shutdown
                        self.close_connection = True
                        return
                    if mode.startswith("slow"):
                        step = int(mode[4:]) * 1000 if mode[4:] else 5000
                        for i in range(0, len(body), step):
                            self.wfile.write(body[i : i + step])
                            self.wfile.flush()
                            self.count(name, len(body[i : i + step]))
                            if srv.release.wait(0.1):
                                break
                        return
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.count(name, len(body))
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                    return
                if mode in ("lieshort", "liemore"):
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, mode: str, name: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/{name}"

    def gets(self, name: str) -> list[tuple]:
        return [e for e in self.log if e[0] == "GET" and e[1].endswith("/" + name)]

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C (``_thread.interrupt_main``) raises KeyboardInterrupt even when the test run was started
    with SIGINT ignored (a background job of a non-interactive shell): Python then leaves SIGINT at
    SIG_IGN and ``interrupt_main`` does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def srv():
    s = HostileServer()
    yield s
    s.stop()


@pytest.fixture
def root(tmp_path):
    return tmp_path / "root"


# ------------------------------------------------------------------------------------------------
# Synthetic files and registry entries pointing at the server
# ------------------------------------------------------------------------------------------------
def _tar(members: dict[str, bytes], compression: str = "gz", level: int = 1) -> bytes:
    buf = io.BytesIO()
    kw = {"compresslevel": level} if compression == "gz" else {}
    with tarfile.open(fileobj=buf, mode=f"w:{compression}" if compression else "w", **kw) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _bsds_members(n: int = 3, size: int = 2000, seed: int = 0) -> dict[str, bytes]:
    rnd = __import__("random").Random(seed)
    return {f"BSDS300/images/test/{100 + i}.jpg": rnd.randbytes(size) for i in range(n)}


def _archive_ds(
    srv: HostileServer,
    blob: bytes,
    mode: str = "plain",
    *,
    checksum: bool = False,
    extracted: int | None = None,
    urls: tuple[str, ...] | None = None,
):
    """bsds300 with its ``test`` part's archive on the server (no checksum, as the real entry)."""
    name = "BSDS300-images.tgz"
    srv.files[name] = blob
    real = get_dataset("bsds300")
    parts = []
    for p in real.parts:
        r = p.remotes[0]
        r = dataclasses.replace(
            r,
            urls=urls or (srv.url(mode, name),),
            size=len(blob),
            approx_size=len(blob),
            md5=None,
            sha256=hashlib.sha256(blob).hexdigest() if checksum else None,
        )
        parts.append(dataclasses.replace(p, remotes=(r,), extracted_size=extracted or 4 * len(blob) + 1_000_000))
    return dataclasses.replace(real, parts=tuple(parts))


def _file_ds(srv: HostileServer, name: str, blob: bytes, urls: tuple[str, ...], checksum: bool = True):
    """svhn with its ``test`` part's one file served."""
    srv.files[name] = blob
    real = get_dataset("svhn")
    parts = []
    for p in real.parts:
        if p.name == "test":
            r = dataclasses.replace(
                p.remotes[0],
                filename=name,
                urls=urls,
                size=len(blob),
                approx_size=len(blob),
                md5=hashlib.md5(blob).hexdigest() if checksum else None,
                sha256=None,
            )
            p = dataclasses.replace(p, remotes=(r,), path=name)
        parts.append(p)
    return dataclasses.replace(real, parts=tuple(parts))


def _downloads(root: Path, ds: str = "svhn") -> Path:
    return root / ".lossnet-downloads" / ds


def _quiet(**kw):
    return dict(progress=False, log=None, backoff=0, space_check=False, **kw)


# ------------------------------------------------------------------------------------------------
# H1: a mistyped mirror scheme or a redirect to ftp:// never deletes the .part nor claims a checksum mismatch
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mirror", ["htp://mirror.example/svhn", "ftp://127.0.0.1/svhn", "notaurl", "file:///etc", "http://[::1"]
)
def test_h1_mistyped_mirror_is_refused_up_front_and_keeps_the_part(root, mirror):
    part = _downloads(root) / "test_32x32.mat.part"
    part.parent.mkdir(parents=True)
    data = os.urandom(50_000)
    part.write_bytes(data)
    with pytest.raises(DataError, match="invalid mirror URL") as err:
        fetch("svhn", ["test"], root=root, mirror=mirror, **_quiet())
    assert "checksum" not in str(err.value)
    assert part.read_bytes() == data


def test_h1_redirect_to_ftp_is_an_unreachable_source_and_the_part_resumes_from_the_next(srv, root):
    blob = os.urandom(300_000)
    plain = srv.url("plain", "t.mat")
    ds = _file_ds(srv, "t.mat", blob, urls=(plain,))
    # A transfer from the registry URL was cut at 100 kB earlier (with its resume record).
    part = _downloads(root) / "t.mat.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(blob[:100_000])
    etag = '"' + hashlib.sha256(blob).hexdigest()[:16] + '"'
    dl.part_meta_path(part).write_text(
        json.dumps({"url": plain, "etag": etag, "last_modified": None, "total": len(blob)})
    )
    # The mirror redirects to ftp://: skipped, .part kept, the registry URL resumes it.
    (r,) = fetch(ds, ["test"], root=root, mirror=srv.url("badredir"), **_quiet())
    assert r.path.read_bytes() == blob
    assert srv.sent["t.mat"] == len(blob) - 100_000  # resumed, not restarted
    assert srv.gets("t.mat")[-1][2:] == ("bytes=100000-", etag)


def test_h1_redirect_to_ftp_without_a_checksum_gives_offline_not_typeerror(srv, root):
    ds = _archive_ds(srv, _tar(_bsds_members()), mode="badredir")
    with pytest.raises(OfflineError, match="invalid URL or redirect"):
        fetch(ds, ["test"], root=root, **_quiet())


# ------------------------------------------------------------------------------------------------
# L1: a redirect loop is one unreachable source; the next one is tried
# ------------------------------------------------------------------------------------------------
def test_l1_redirect_loop_goes_on_to_the_next_source(srv, root):
    blob = _tar(_bsds_members())
    ds = _archive_ds(srv, blob)
    (r,) = fetch(ds, ["test"], root=root, mirror=srv.url("loop"), **_quiet())
    assert r.status == "fetched" and r.files == 3
    with pytest.raises(OfflineError, match="redirect loop"):
        fetch(_archive_ds(srv, blob, mode="loop"), ["test"], root=root / "b", **_quiet())


# ------------------------------------------------------------------------------------------------
# L2: a resume is validated (If-Range with the recorded ETag; no record: start over)
# ------------------------------------------------------------------------------------------------
def test_l2_a_stale_part_without_its_record_is_not_spliced_in(srv, root):
    blob = os.urandom(200_000)
    ds = _file_ds(srv, "t0.tiff", blob, urls=(srv.url("plain", "t0.tiff"),), checksum=False)
    part = _downloads(root) / "t0.tiff.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(os.urandom(500))  # left by hand / another tool
    (r,) = fetch(ds, ["test"], root=root, **_quiet())
    assert r.path.read_bytes() == blob
    assert srv.gets("t0.tiff")[0][2] is None  # no Range: started over


def test_l2_a_file_changed_since_the_part_began_restarts_via_if_range(srv, root):
    old, new = os.urandom(200_000), os.urandom(200_000)
    url = srv.url("plain", "t.mat")
    ds = _file_ds(srv, "t.mat", new, urls=(url,), checksum=False)
    part = _downloads(root) / "t.mat.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(old[:80_000])
    old_etag = '"' + hashlib.sha256(old).hexdigest()[:16] + '"'
    dl.part_meta_path(part).write_text(
        json.dumps({"url": url, "etag": old_etag, "last_modified": None, "total": len(old)})
    )
    (r,) = fetch(ds, ["test"], root=root, **_quiet())
    assert r.path.read_bytes() == new  # not old[:80000] + new[80000:]
    assert srv.gets("t.mat")[0][2:] == ("bytes=80000-", old_etag)
    assert not part.exists() and not dl.part_meta_path(part).exists()


def test_l2_a_cut_transfer_resumes_with_if_range_and_every_byte_once(srv, root):
    blob = os.urandom(400_000)
    ds = _file_ds(srv, "t.mat", blob, urls=(srv.url("lieshort", "t.mat"),), checksum=True)
    # lieshort: Content-Length 100 kB too long, then the connection closes -> a cut transfer.
    with pytest.raises(InterruptedDownload):
        fetch(ds, ["test"], root=root, retries=0, **_quiet())
    part = _downloads(root) / "t.mat.part"
    assert part.stat().st_size == len(blob)
    meta = json.loads(dl.part_meta_path(part).read_text())
    assert meta["etag"] and meta["url"].endswith("/lieshort/t.mat")
    ds = _file_ds(srv, "t.mat", blob, urls=(srv.url("lieshort", "t.mat"),), checksum=True)
    (r,) = fetch(ds, ["test"], root=root, **_quiet())  # 416 with the full size: complete
    assert r.path.read_bytes() == blob and srv.sent["t.mat"] == len(blob)


# ------------------------------------------------------------------------------------------------
# L6: bytes received before a stall are kept (read1, not 1 MiB blocks)
# ------------------------------------------------------------------------------------------------
def test_l6_an_early_stall_keeps_the_bytes_received(srv, root, monkeypatch):
    monkeypatch.setattr(dl, "READ_TIMEOUT", 1.0)
    blob = os.urandom(100_000)
    ds = _file_ds(srv, "t.mat", blob, urls=(srv.url("stall", "t.mat"),))
    with pytest.raises(InterruptedDownload, match="kept"):
        fetch(ds, ["test"], root=root, retries=0, **_quiet())
    part = _downloads(root) / "t.mat.part"
    assert part.read_bytes() == blob[:1000]


# ------------------------------------------------------------------------------------------------
# M1: only the holder removes the lock; stale locks are taken over
# ------------------------------------------------------------------------------------------------
def test_m1_a_refused_fetch_leaves_the_running_fetchs_lock_alone(srv, root):
    import fcntl

    ds = _archive_ds(srv, _tar(_bsds_members()))
    root.mkdir()
    lock = root / ".lossnet-lock-bsds300"
    holder = open(lock, "a+")  # fetch A, running
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        for _ in range(2):  # B, then C: both refused, and the lock stays A's
            with pytest.raises(DataError, match="another 'lossnet data fetch bsds300' is running"):
                fetch(ds, ["test"], root=root, **_quiet())
            assert lock.exists() and os.path.samestat(os.stat(lock), os.fstat(holder.fileno()))
        assert srv.gets("BSDS300-images.tgz") == []
    finally:
        holder.close()


def test_m1_a_lock_left_by_a_killed_fetch_is_taken_over(srv, root):
    ds = _archive_ds(srv, _tar(_bsds_members()))
    root.mkdir()
    lock = root / ".lossnet-lock-bsds300"
    # A fetch process holding the lock is killed with SIGKILL: the file stays, the flock goes with it.
    code = (
        "import fcntl,sys,time; f=open(sys.argv[1],'a+'); fcntl.flock(f.fileno(), fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(DataError, match="is running"):
            fetch(ds, ["test"], root=root, **_quiet())
    finally:
        p.kill()
        p.wait()
    assert lock.exists()  # stale
    (r,) = fetch(ds, ["test"], root=root, **_quiet())
    assert r.status == "fetched" and not lock.exists()


# ------------------------------------------------------------------------------------------------
# M2: a fetch touches only its own dataset's downloads and staging folders
# ------------------------------------------------------------------------------------------------
def test_m2_another_datasets_empty_staging_and_download_folders_survive(srv, root):
    ds = _archive_ds(srv, _tar(_bsds_members()))
    other_staging = root / ".lossnet-staging" / "set5-images" / "content"
    other_dl = root / ".lossnet-downloads" / "set5"
    other_staging.mkdir(parents=True)
    other_dl.mkdir(parents=True)
    fetch(ds, ["test"], root=root, **_quiet())
    assert other_staging.is_dir() and other_dl.is_dir()
    assert (
        not (root / ".lossnet-downloads" / "bsds300").exists()
        and not (root / ".lossnet-staging" / "bsds300-test").exists()
    )


# ------------------------------------------------------------------------------------------------
# M3: the archive is kept until its unpack completed (Ctrl-C, full disk); the rerun downloads 0 bytes
# ------------------------------------------------------------------------------------------------
def test_m3_ctrl_c_during_the_unpack_of_a_50mb_archive_then_rerun_downloads_nothing(
    srv, root, monkeypatch, ctrl_c_raises
):
    members = {f"BSDS300/images/test/{100 + i}.jpg": os.urandom(5_000_000) for i in range(10)}  # 50 MB
    blob = _tar(members, compression="")
    ds = _archive_ds(srv, blob)
    from lossnet.datasets import extract

    real_write = extract._write
    written = {"n": 0}

    def write_then_ctrl_c(stream, target, bar, budget=None):
        out = real_write(stream, target, bar, budget)
        written["n"] += 1
        if written["n"] == 3:  # Ctrl-C arrives in the middle of the unpack
            _thread.interrupt_main()
            time.sleep(1)  # the KeyboardInterrupt is raised here
        return out

    monkeypatch.setattr(extract, "_write", write_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        fetch(ds, ["test"], root=root, **_quiet())
    archive = root / ".lossnet-downloads" / "bsds300" / "BSDS300-images.tgz"
    assert written["n"] == 3 and archive.stat().st_size == len(blob) == srv.sent["BSDS300-images.tgz"]
    assert not (root / ".lossnet-staging").exists()
    monkeypatch.setattr(extract, "_write", real_write)
    before = srv.sent["BSDS300-images.tgz"]
    (r,) = fetch(ds, ["test"], root=root, **_quiet())
    rerun_bytes = srv.sent["BSDS300-images.tgz"] - before
    print(f"M3: archive {len(blob):,} bytes; bytes downloaded on the rerun: {rerun_bytes}")
    assert rerun_bytes == 0 and r.files == 10 and r.bytes == 50_000_000
    assert not archive.exists()  # deleted once installed
    marker = read_marker(ds, ds.part("test"), root)
    assert marker["sources"][0]["urls"] == [srv.url("plain", "BSDS300-images.tgz")]  # the record survived the reuse


def test_m3_l4_full_disk_during_the_unpack_is_one_line_and_keeps_the_archive(srv, root, monkeypatch):
    blob = _tar(_bsds_members())
    ds = _archive_ds(srv, blob)
    from lossnet.datasets import extract

    def full(stream, target, bar, budget=None):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(extract, "_write", full)
    with pytest.raises(DiskSpaceError, match="disk full while unpacking .*archive is kept.*no new download"):
        fetch(ds, ["test"], root=root, **_quiet())
    assert (root / ".lossnet-downloads" / "bsds300" / "BSDS300-images.tgz").stat().st_size == len(blob)


def test_m3_a_corrupt_archive_is_deleted_not_kept(srv, root):
    blob = _tar(_bsds_members())[:-3000]  # truncated
    ds = _archive_ds(srv, blob)
    with pytest.raises(DataError, match="corrupt or truncated"):
        fetch(ds, ["test"], root=root, **_quiet())
    assert not (root / ".lossnet-downloads").exists()


# ------------------------------------------------------------------------------------------------
# M4: decompression is bounded: the tar bomb and the lying remote-zip member
# ------------------------------------------------------------------------------------------------
def test_m4_a_tar_bomb_stops_at_the_bound_and_leaves_nothing(srv, root):
    members = _bsds_members()
    members["BSDS300/images/test/zeros.jpg"] = bytes(64_000_000)
    blob = _tar(members, level=9)
    assert len(blob) < 200_000
    ds = _archive_ds(srv, blob, extracted=1_000_000)  # registry: about 1 MB unpacked
    with pytest.raises(
        UnpackLimitError, match=rf"unpacks to more than 4.0 MB \({UNPACK_FACTOR}x the registry's estimate"
    ):
        fetch(ds, ["test"], root=root, **_quiet())
    assert not (root / ".lossnet-staging").exists() and not (root / "bsds300").exists()
    assert not (root / ".lossnet-downloads").exists()  # a bomb is not kept for a rerun


def _lying_zip(members: dict[str, bytes], claim: int) -> bytes:
    """A zip whose deflated members' local and central headers claim ``claim`` bytes uncompressed."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, data in members.items():
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        comp = c.compress(data) + c.flush()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        off = out.tell()
        nb = name.encode()
        out.write(
            struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(comp), claim, len(nb), 0) + nb + comp
        )
        central.write(
            struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                20,
                20,
                0,
                8,
                0,
                0,
                crc,
                len(comp),
                claim,
                len(nb),
                0,
                0,
                0,
                0,
                0,
                off,
            )
            + nb
        )
    cd = central.getvalue()
    cd_off = out.tell()
    out.write(cd)
    out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(cd), cd_off, 0))
    return out.getvalue()


def test_m4_a_remote_zip_member_that_inflates_past_its_declared_size_stops_there(srv, root):
    import tracemalloc

    blob = _lying_zip({f"train2014/COCO_train2014_{i:012d}.jpg": bytes(64_000_000) for i in range(2)}, claim=1000)
    srv.files["train2014.zip"] = blob
    real = get_dataset("coco2014")
    ds = dataclasses.replace(
        real,
        parts=tuple(
            dataclasses.replace(
                p, remotes=(dataclasses.replace(p.remotes[0], urls=(srv.url("plain", "train2014.zip"),)),)
            )
            for p in real.parts
        ),
    )
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="inflates to more than its declared 1,000 bytes; stopped after 1,001"):
            fetch(ds, ["train"], root=root, subset=2, **_quiet())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16_000_000, peak  # was: the whole member (64 MB each, 2.66 GB in the report) in memory


def test_m4_remote_zip_honest_members_still_read(srv):
    import zipfile

    from lossnet.datasets.remotezip import RemoteZip

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/x.jpg", os.urandom(300_000))
        zf.writestr("a/y.jpg", bytes(200_000))
        zf.writestr("a/z.jpg", b"stored", compress_type=zipfile.ZIP_STORED)
    srv.files["ok.zip"] = buf.getvalue()
    rz = RemoteZip(srv.url("plain", "ok.zip"))
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
        for e in rz.entries():
            assert rz.read(e) == zf.read(e.name)


# ------------------------------------------------------------------------------------------------
# M5: the marker names the URL the bytes came from
# ------------------------------------------------------------------------------------------------
def test_m5_marker_records_the_mirror_used_for_archives_and_files(srv, root):
    blob = _tar(_bsds_members())
    ds = _archive_ds(srv, blob, urls=("http://127.0.0.1:9/registry/BSDS300-images.tgz",))
    fetch(ds, ["test"], root=root, mirror=srv.url("plain"), **_quiet())
    assert read_marker(ds, ds.part("test"), root)["sources"][0]["urls"] == [srv.url("plain", "BSDS300-images.tgz")]
    fblob = os.urandom(10_000)
    fds = _file_ds(srv, "t.mat", fblob, urls=("http://127.0.0.1:9/registry/t.mat",))
    fetch(fds, ["test"], root=root, mirror=srv.url("redir2"), **_quiet())
    assert read_marker(fds, fds.part("test"), root)["sources"][0]["urls"] == [srv.url("redir2", "t.mat")]


# ------------------------------------------------------------------------------------------------
# M8: Ctrl-C during a parallel fetch exits within a second or two
# ------------------------------------------------------------------------------------------------
def _tiff_like(n: int) -> bytes:
    return b"II*\x00" + os.urandom(n - 4)


def test_m8_ctrl_c_during_a_parallel_listing_fetch_exits_promptly(srv, root, ctrl_c_raises):
    names = [f"1007866{i}_15.tiff" for i in range(6)]
    for folder in ("sat", "map"):
        for nm in names:
            srv.files[f"mrdbig/test/{folder}/{nm}"] = _tiff_like(1_000_000)  # 20 s each at 50 KB/s
        srv.files[f"mrdbig/test/{folder}/index.html"] = "".join(f'<a href="{nm}">{nm}</a>\n' for nm in names).encode()
    timer = threading.Timer(1.0, _thread.interrupt_main)
    t0 = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        fetch("mrd", ["test"], root=root, mirror=srv.url("slow5", "mrdbig"), **_quiet())
    after = time.monotonic() - t0 - 1.0
    print(f"M8: exited {after:.2f} s after Ctrl-C")
    assert after < 3.0  # was: until every running transfer ended (57 s in the report)
    parts = list((root / ".lossnet-downloads" / "mrd").rglob("*.part"))
    assert parts and all(p.stat().st_size > 0 for p in parts)  # the bytes received are kept


# ------------------------------------------------------------------------------------------------
# L3: a read-only root: complete parts are reported without a lock; otherwise one line
# ------------------------------------------------------------------------------------------------
def test_l3_complete_parts_need_no_lock_and_an_unwritable_root_is_one_line(srv, root, monkeypatch):
    ds = _archive_ds(srv, _tar(_bsds_members()))
    fetch(ds, ["test"], root=root, **_quiet())

    def no_lock(*a, **k):
        raise AssertionError("took a lock")

    monkeypatch.setattr(fetch_mod, "_lock", no_lock)
    (r,) = fetch(ds, ["test"], root=root, **_quiet())
    assert r.status == "present"
    monkeypatch.undo()
    real_open = open

    def ro_open(path, *a, **k):
        if str(path).endswith(".lossnet-lock-bsds300"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", ro_open)
    with pytest.raises(DataError, match=r"is on a read-only file system.*--root DIR"):
        fetch(ds, ["test"], root=root, force=True, **_quiet())


# ------------------------------------------------------------------------------------------------
# L7: an oversized --subset says so
# ------------------------------------------------------------------------------------------------
def test_l7_oversized_subset_is_reported(srv, root):
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(5):
            zf.writestr(f"train2014/COCO_train2014_{i:012d}.jpg", os.urandom(500))
    srv.files["train2014.zip"] = buf.getvalue()
    real = get_dataset("coco2014")
    ds = dataclasses.replace(
        real,
        parts=tuple(
            dataclasses.replace(
                p, remotes=(dataclasses.replace(p.remotes[0], urls=(srv.url("plain", "train2014.zip"),)),)
            )
            for p in real.parts
        ),
    )
    said = []
    (r,) = fetch(ds, ["train"], root=root, subset=50, progress=False, log=said.append, space_check=False)
    assert r.files == 5
    assert any("--subset 50 asked for more members" in m and "fetching all 5" in m for m in said)


# ------------------------------------------------------------------------------------------------
# L5: verify reports added files, and its advice keeps --root
# ------------------------------------------------------------------------------------------------
def test_l5_verify_reports_extra_files_and_its_advice_keeps_root(srv, root, capsys):
    from lossnet.cli.main import main

    srv.files["BSDS300-images.tgz"] = _tar(_bsds_members())
    fetch(
        "bsds300", ["test"], root=root, mirror=srv.url("plain"), **_quiet()
    )  # the registry entry, bytes from the mirror
    test_dir = root / "bsds300" / "images" / "test"
    assert main(["data", "verify", "bsds300", "test", "--root", str(root), "--no-progress"]) == 0
    (test_dir / "extra.jpg").write_bytes(b"added later")
    rc = main(["data", "verify", "bsds300", "test", "--root", str(root), "--no-progress"])
    cap = capsys.readouterr()
    assert rc != 0
    assert "extra.jpg: extra file" in cap.out
    assert f"lossnet data fetch bsds300 test --root {root} --force" in cap.err
