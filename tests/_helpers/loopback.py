"""Test helpers: a loopback HTTP server and tiny synthetic datasets in each dataset's real format.

Used by ``tests/datasets/test_data_*.py`` (and usable by benchmark tests: fetch a synthetic dataset, then run
the benchmark on ``locate(...)``). Nothing here touches the network beyond ``127.0.0.1``.

:class:`LoopbackServer` serves in-memory files, honours ``Range`` (``a-b``, ``a-``, ``-n``), answers
``HEAD``, counts the body bytes it sends per path, and can cut a response after ``k`` bytes.

:func:`serve_dataset` builds a synthetic copy of a registry dataset (same part names, archive layout,
member prefixes and destinations as the real one), puts its files on the server, and returns a
:class:`~lossnet.datasets.registry.Dataset` whose URLs point at the server and whose checksums are
those of the synthetic files (same checksum kind as the real entry).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lossnet.datasets.registry import Dataset, Part, get_dataset

__all__ = [
    "LoopbackServer",
    "serve_dataset",
    "tar_bytes",
    "zip_bytes",
    "png_bytes",
    "jpeg_bytes",
    "svhn_mat_bytes",
    "tiff_bytes",
    "SYNTHETIC_BUILDERS",
]


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (random port) serving ``files`` (path -> bytes).

    Attributes:
        served: body bytes sent per path (all requests).
        requests: ``(method, path, Range header or None)`` in arrival order.
        cut: ``{path: k}``: the next GET of ``path`` sends ``k`` body bytes then drops the connection
            (the entry is consumed).
        ranges: honour Range requests (False: always answer 200 with the whole file).
    """

    def __init__(self, files: dict[str, bytes] | None = None, ranges: bool = True) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.served: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.cut: dict[str, int] = {}
        self.ranges = ranges
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve(head=False)

            def _serve(self, head: bool):
                path = self.path.split("?", 1)[0]
                rng = self.headers.get("Range")
                with server._lock:
                    server.requests.append(("HEAD" if head else "GET", path, rng))
                data = server.files.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                size = len(data)
                start, end, status = 0, size - 1, 200
                if rng and server.ranges:
                    m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
                    if m and (m.group(1) or m.group(2)):
                        if m.group(1):
                            start = int(m.group(1))
                            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                        else:
                            start = max(size - int(m.group(2)), 0)
                        if start >= size or start > end:
                            self.send_response(416)
                            self.send_header("Content-Range", f"bytes */{size}")
                            self.send_header("Content-Length", "0")
                            self.end_headers()
                            return
                        status = 206
                body = data[start : end + 1]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes" if server.ranges else "none")
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if head:
                    return
                with server._lock:
                    limit = server.cut.pop(path, None)
                if limit is not None and limit < len(body):
                    self.wfile.write(body[:limit])
                    self.wfile.flush()
                    with server._lock:
                        server.served[path] = server.served.get(path, 0) + limit
                    self.close_connection = True
                    import socket

                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                self.wfile.write(body)
                with server._lock:
                    server.served[path] = server.served.get(path, 0) + len(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def add(self, path: str, data: bytes) -> str:
        self.files["/" + path.lstrip("/")] = data
        return self.url(path)

    def served_total(self) -> int:
        return sum(self.served.values())

    def start(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ------------------------------------------------------------------------------------------------
# Files in the real formats
# ------------------------------------------------------------------------------------------------
def _rng(seed: int):
    import numpy as np

    return np.random.default_rng(seed)


def png_bytes(h: int, w: int, seed: int = 0, mode: str = "RGB") -> bytes:
    from PIL import Image

    arr = _rng(seed).integers(0, 256, size=(h, w, 3) if mode == "RGB" else (h, w), dtype="uint8")
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(h: int, w: int, seed: int = 0) -> bytes:
    from PIL import Image

    arr = _rng(seed).integers(0, 256, size=(h, w, 3), dtype="uint8")
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def tiff_bytes(h: int, w: int, seed: int = 0, mask: bool = False) -> bytes:
    import numpy as np
    from PIL import Image

    rng = _rng(seed)
    if mask:
        arr = np.where(rng.random((h, w)) > 0.8, 255, 0).astype("uint8")
        img = Image.fromarray(arr, "L")
    else:
        img = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype="uint8"), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    return buf.getvalue()


def npy_bytes(value: float) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.array([value], dtype=np.float32))
    return buf.getvalue()


def svhn_mat_bytes(n: int, seed: int = 0) -> bytes:
    """MATLAB v5 file as SVHN's: ``X`` uint8 (32, 32, 3, N), ``y`` (N, 1) in 1..10 (10 = digit 0)."""
    import numpy as np
    from scipy.io import savemat

    rng = _rng(seed)
    buf = io.BytesIO()
    savemat(
        buf,
        {
            "X": rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8),
            "y": rng.integers(1, 11, size=(n, 1)).astype(np.uint8),
        },
    )
    return buf.getvalue()


def tar_bytes(
    members: dict[str, bytes],
    compression: str = "gz",
    links: dict[str, str] | None = None,
    hardlinks: dict[str, str] | None = None,
    dirs: tuple[str, ...] = (),
) -> bytes:
    """A tar archive (``compression`` ``gz``/``""``) with regular files, folders, and optional links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}" if compression else "w") as tf:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tf.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
        for name, target in (hardlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.LNKTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


def zip_bytes(
    members: dict[str, bytes], method: int = zipfile.ZIP_STORED, symlinks: dict[str, str] | None = None
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            info.create_system = 3
            zf.writestr(info, target)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------
# Synthetic datasets: {remote file name or relative URL path: bytes}, per registry part
# ------------------------------------------------------------------------------------------------
def _bapps(items: int = 3) -> dict[str, dict[str, bytes]]:
    out: dict[str, dict[str, bytes]] = {}
    k = 0
    subsets = {
        "2afc-val": ("traditional", "cnn", "superres", "deblur", "color", "frameinterp"),
        "2afc-train": ("traditional", "cnn", "mix"),
        "jnd-val": ("traditional", "cnn"),
    }
    for part, prefix, kind in (
        ("2afc-val", "val", "2afc"),
        ("2afc-train", "train", "2afc"),
        ("jnd-val", "jnd/val", "jnd"),
    ):
        members: dict[str, bytes] = {}
        for subset in subsets[part]:
            for i in range(items):
                stem = f"{i:06d}"
                folders = ("ref", "p0", "p1") if kind == "2afc" else ("p0", "p1")
                for f in folders:
                    k += 1
                    members[f"{prefix}/{subset}/{f}/{stem}.png"] = png_bytes(16, 16, seed=k)
                judge = "judge" if kind == "2afc" else "same"
                members[f"{prefix}/{subset}/{judge}/{stem}.npy"] = npy_bytes((i + 1) / (items + 1))
        # As in the LPIPS tarballs, members may carry a leading "./".
        members = {(f"./{k}" if part == "jnd-val" else k): v for k, v in members.items()}
        name = {"2afc-val": "twoafc_val.tar.gz", "2afc-train": "twoafc_train.tar.gz", "jnd-val": "jnd.tar.gz"}[part]
        out[part] = {name: tar_bytes(members)}
    return out


def _svhn(n: int = 12) -> dict[str, dict[str, bytes]]:
    return {
        split: {f"{split}_32x32.mat": svhn_mat_bytes(n, seed=i)} for i, split in enumerate(("train", "test", "extra"))
    }


def _stl10(n: int = 4) -> dict[str, dict[str, bytes]]:
    import numpy as np

    rng = _rng(1)
    members = {}
    for split, count in (("train", n), ("test", n), ("unlabeled", 2 * n)):
        members[f"stl10_binary/{split}_X.bin"] = rng.integers(
            0, 256, size=count * 3 * 96 * 96, dtype=np.uint8
        ).tobytes()
        if split != "unlabeled":
            members[f"stl10_binary/{split}_y.bin"] = rng.integers(1, 11, size=count, dtype=np.uint8).tobytes()
    members["stl10_binary/class_names.txt"] = b"airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n"
    return {"binary": {"stl10_binary.tar.gz": tar_bytes(members)}}


def _bsds300(n: int = 3) -> dict[str, dict[str, bytes]]:
    members = {}
    for split, ids in (("train", range(100, 100 + 2 * n)), ("test", range(200, 200 + n))):
        for i in ids:
            members[f"BSDS300/images/{split}/{i}.jpg"] = jpeg_bytes(24, 32, seed=i)
    members["BSDS300/iids_train.txt"] = b"\n".join(str(i).encode() for i in range(100, 100 + 2 * n))
    data = tar_bytes(members, dirs=("BSDS300", "BSDS300/images"))
    return {"test": {"BSDS300-images.tgz": data}, "train": {"BSDS300-images.tgz": data}}


def _sets(n: int) -> dict[str, dict[str, bytes]]:
    return {"images": {f"img_{i:03d}.png": png_bytes(24, 24, seed=i) for i in range(1, n + 1)}}


def _coco(n: int = 200, member_size: int = 48) -> dict[str, dict[str, bytes]]:
    out = {}
    for part, folder in (("train", "train2014"), ("val", "val2014")):
        members = {
            f"{folder}/COCO_{folder}_{i * 7 + 9:012d}.jpg": jpeg_bytes(member_size, member_size, seed=i)
            for i in range(n)
        }
        out[part] = {f"{folder}.zip": zip_bytes(members)}
    return out


def _mrd(tiles: dict[str, int] | None = None) -> dict[str, dict[str, bytes]]:
    tiles = tiles or {"train": 3, "valid": 1, "test": 2}
    out = {}
    for split, n in tiles.items():
        files = {}
        for folder, ext, mask in (("sat", "tiff", False), ("map", "tif", True)):
            names = [f"{10078660 + i}_15.{ext}" for i in range(n)]
            for i, name in enumerate(names):
                files[f"{split}/{folder}/{name}"] = tiff_bytes(32, 32, seed=i + (100 if mask else 0), mask=mask)
            # The Toronto pages: one absolute link per line.
            lines = [
                f'<a href="https://www.cs.toronto.edu/~vmnih/data/mass_roads/{split}/{folder}/{nm}">{nm}</a><br />'
                for nm in names
            ]
            files[f"{split}/{folder}/index.html"] = ("\n".join(lines) + "\n").encode()
        out[split] = files
    return out


SYNTHETIC_BUILDERS = {
    "bapps": _bapps,
    "svhn": _svhn,
    "stl10": _stl10,
    "bsds300": _bsds300,
    "coco2014": _coco,
    "mrd": _mrd,
    "set5": lambda: _sets(5),
    "set14": lambda: _sets(14),
    "bsd100": lambda: _sets(6),
}


def serve_dataset(
    server: LoopbackServer,
    name: str,
    data: dict[str, dict[str, bytes]] | None = None,
    prefix: str | None = None,
    **build_kwargs,
) -> tuple[Dataset, dict[str, dict[str, bytes]]]:
    """Put a synthetic copy of dataset ``name`` on ``server``.

    Returns:
        ``(dataset, files)``: the registry entry with its URLs replaced by the server's (under
        ``/<prefix or name>/``) and checksums/sizes of the synthetic files, and the files
        (``{part: {file name or relative path: bytes}}``).
    """
    real = get_dataset(name)
    files = data if data is not None else SYNTHETIC_BUILDERS[real.name](**build_kwargs)
    base = prefix or real.name
    parts = []
    for p in real.parts:
        pf = files.get(p.name, {})
        if p.kind == "listing":
            for rel, blob in pf.items():
                server.add(f"{base}/{rel}", blob)
            remotes = tuple(
                dataclasses.replace(r, urls=(server.url(f"{base}/{p.dest}/{r.filename}/index.html"),))
                for r in p.remotes
            )
        else:
            remotes = []
            for r in p.remotes:
                blob = pf.get(r.filename)
                if blob is None:
                    remotes.append(r)
                    continue
                url = server.add(f"{base}/{r.filename}", blob)
                kw = {"urls": (url,), "size": len(blob), "approx_size": len(blob)}
                # The same kind of checksum as the real entry (none where none is published).
                if r.md5 is not None:
                    kw["md5"] = hashlib.md5(blob).hexdigest()
                if r.sha256 is not None:
                    kw["sha256"] = hashlib.sha256(blob).hexdigest()
                remotes.append(dataclasses.replace(r, **kw))
            remotes = tuple(remotes)
        member_md5 = ()
        if p.member_md5:  # the synthetic files' own MD5s, for the same check as the real ones
            member_md5 = tuple(
                _synthetic_member_md5(pf, p, rel) for rel, _ in p.member_md5 if _synthetic_member_md5(pf, p, rel)
            )
        parts.append(
            dataclasses.replace(
                p,
                remotes=remotes,
                member_md5=member_md5,
                extracted_size=sum(len(b) for b in pf.values()) * 4 if p.kind == "archive" else 0,
            )
        )
    return dataclasses.replace(real, parts=tuple(parts)), files


def _synthetic_member_md5(pf: dict[str, bytes], p: Part, rel: str):
    for blob in pf.values():
        try:
            with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
                m = tf.extractfile(p.members + rel)
                if m is not None:
                    return (rel, hashlib.md5(m.read()).hexdigest())
        except (tarfile.TarError, KeyError):
            continue
    return None


def without_checksums(dataset: Dataset) -> Dataset:
    """The same dataset with every checksum removed (as for sources that publish none)."""
    parts = tuple(
        dataclasses.replace(p, remotes=tuple(dataclasses.replace(r, md5=None, sha256=None) for r in p.remotes))
        for p in dataset.parts
    )
    return dataclasses.replace(dataset, parts=parts)


def with_remote(dataset: Dataset, part: str, **changes) -> Dataset:
    """The dataset with the first remote of ``part`` changed (e.g. a wrong ``sha256``)."""
    parts = []
    for p in dataset.parts:
        if p.name == part:
            r0 = dataclasses.replace(p.remotes[0], **changes)
            p = dataclasses.replace(p, remotes=(r0,) + p.remotes[1:])
        parts.append(p)
    return dataclasses.replace(dataset, parts=tuple(parts))
