"""Downloads: pooch for caching, checksum verification and the atomic move into place; our downloader
for HTTP Range resumption and progress bars.

Why pooch plus a downloader of ours: ``pooch.retrieve`` gives the checks we want (existing file with
the right hash is reused, a download lands under a temporary name and is moved into place only when
its MD5/SHA-256 matches, the mismatch message names both hashes), and it accepts any callable as its
downloader. Its own ``HTTPDownloader`` restarts from byte 0 after an interruption, which is costly for
13 GB zips, so :class:`ResumableDownloader` keeps the bytes received in ``<file>.part`` next to the
download and continues with ``Range: bytes=<n>-`` (falling back to a full transfer when the server
ignores ranges).

Failure policy: a source that cannot be reached at all (DNS, refused, connect timeout, HTTP error) is
skipped for the next mirror at once; a transfer cut mid-way is resumed up to ``retries`` times; a
checksum mismatch deletes the download and raises :class:`ChecksumError` naming the file, the URL and
both hashes. When no source is reachable, :class:`OfflineError` lists every URL and the manual steps.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path

from lossnet.errors import DataError

from .registry import Remote

__all__ = [
    "ChecksumError", "OfflineError", "InterruptedDownload", "DiskSpaceError", "ResumableDownloader",
    "download_remote", "new_session", "check_free_space", "format_bytes", "mirror_urls", "USER_AGENT",
]

USER_AGENT = "lossnet-data/0.1 (+https://github.com/; dataset fetcher)"
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 60.0
_CHUNK = 1 << 20


class ChecksumError(DataError):
    """A downloaded file's checksum differs from the registry's; the download was deleted."""


class OfflineError(DataError):
    """No source of a file could be reached."""


class InterruptedDownload(DataError):
    """A transfer stopped before the end; the bytes received are kept for a resume."""


class DiskSpaceError(DataError):
    """Not enough free disk space for a fetch; raised before any download starts."""


class _Unreachable(Exception):
    """A source failed before sending any data (internal: try the next mirror)."""


def format_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def new_session():
    import requests

    s = requests.Session()
    s.headers["User-Agent"] = USER_AGENT
    return s


_local = threading.local()


def thread_session():
    """One requests session per thread (sessions are not thread-safe)."""
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = new_session()
    return s


def mirror_urls(remote: Remote, mirror: str | None, relpath: str | None = None) -> list[str]:
    """``--mirror BASE`` first (``BASE/<relpath or file name>``), then the registry's URLs in order."""
    urls = []
    if mirror:
        urls.append(mirror.rstrip("/") + "/" + (relpath or remote.filename))
    urls.extend(u for u in remote.urls if u not in urls)
    return urls


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``bytes a-b/n`` -> (a, b, n); ``bytes */n`` -> (None, None, n)."""
    if not value:
        return None, None, None
    m = re.match(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", value)
    if not m:
        return None, None, None
    a, b, n = m.groups()
    return (int(a) if a else None, int(b) if b else None, int(n) if n and n != "*" else None)


class ResumableDownloader:
    """A pooch downloader (``downloader(url, output_file, pooch)``) that resumes from ``part_path``.

    The bytes received are appended to ``part_path``; when the transfer is complete the file is
    moved onto pooch's ``output_file`` (pooch then checks the hash and moves it into place). After an
    interruption ``part_path`` stays, and the next call asks for the rest with an HTTP Range request.

    Attributes:
        received: body bytes received by the last call (0 means the source sent nothing).
    """

    def __init__(self, part_path: Path, *, progress: bool | None = None, timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
                 desc: str | None = None, session=None) -> None:
        self.part_path = Path(part_path)
        self.progress = progress
        self.timeout = timeout
        self.desc = desc or self.part_path.name.removesuffix(".part")
        self.session = session
        self.received = 0

    def __call__(self, url: str, output_file, pooch=None, check_only: bool = False):
        import requests
        from urllib3.exceptions import HTTPError as Urllib3Error

        session = self.session or thread_session()
        if check_only:  # pooch's availability check
            try:
                r = session.head(url, timeout=self.timeout, allow_redirects=True)
                return r.status_code < 400
            except requests.RequestException:
                return False
        self.received = 0
        have = self.part_path.stat().st_size if self.part_path.exists() else 0
        try:
            self._transfer(session, url, have)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, Urllib3Error) as exc:
            if self.received == 0 and not isinstance(exc, requests.exceptions.ChunkedEncodingError):
                raise _Unreachable(f"{type(exc).__name__}: {_short(exc)}") from exc
            got = self.part_path.stat().st_size if self.part_path.exists() else 0
            raise InterruptedDownload(f"transfer of {url} stopped after {format_bytes(got)} ({_short(exc)})") from exc
        os.replace(self.part_path, output_file)
        return None

    def _transfer(self, session, url: str, have: int) -> None:
        import requests
        from tqdm.auto import tqdm

        headers = {"Accept-Encoding": "identity"}  # ranges and checksums refer to the stored bytes
        if have:
            headers["Range"] = f"bytes={have}-"
        r = session.get(url, headers=headers, stream=True, timeout=self.timeout, allow_redirects=True)
        with r:
            if r.status_code == 416 and have:
                _, _, total = _content_range(r.headers.get("Content-Range"))
                if total == have:  # the previous transfer had already received everything
                    return
                self.part_path.unlink()
                return self._transfer(session, url, 0)
            if r.status_code >= 400:
                try:
                    r.raise_for_status()
                except requests.HTTPError as exc:
                    raise _Unreachable(f"HTTP {r.status_code} {r.reason}") from exc
            total = None
            if have and r.status_code == 206:
                start, _, total = _content_range(r.headers.get("Content-Range"))
                if start != have:  # a server answering another range than asked: start over
                    self.part_path.unlink()
                    r.close()
                    return self._transfer(session, url, 0)
                mode = "ab"
            else:
                have, mode = 0, "wb"
                length = r.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            self.part_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.part_path, mode) as fh, tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                                                       desc=self.desc, leave=False,
                                                       disable=None if self.progress is None else not self.progress) as bar:
                for block in r.raw.stream(_CHUNK, decode_content=False):
                    fh.write(block)
                    self.received += len(block)
                    bar.update(len(block))
                fh.flush()
                os.fsync(fh.fileno())
            size = self.part_path.stat().st_size
            if total is not None and size != total:
                raise InterruptedDownload(f"transfer of {url} ended at {size:,} of {total:,} bytes")


def _short(exc: BaseException) -> str:
    """A short reason: urllib3's root cause for connection errors (``NameResolutionError``...), else the text."""
    text = " ".join(str(exc).split())
    m = re.search(r"Caused by (\w+)\(", text)
    if m:
        return m.group(1)
    return text[:160] + ("..." if len(text) > 160 else "")


def _quiet_pooch() -> None:
    import pooch

    pooch.get_logger().setLevel(logging.WARNING)


def download_remote(remote: Remote, folder: Path, *, mirror: str | None = None, relpath: str | None = None,
                    retries: int = 3, progress: bool | None = None, what: str = "", manual_hint: str = "",
                    command: str = "", backoff: float = 1.0, session=None) -> Path:
    """Download ``remote`` into ``folder`` (resuming a ``.part`` there), verified against its checksum.

    A file already at ``folder/<filename>`` with the right checksum (or any file, when the registry has
    none) is used without a download: that is also the manual route when offline.

    Raises:
        ChecksumError: the checksum differs at every source that answered (nothing is kept).
        InterruptedDownload: the transfer kept breaking off (the ``.part`` stays; rerun to resume).
        OfflineError: no source could be reached; the message lists the URLs and the manual steps.
    """
    import pooch

    _quiet_pooch()
    folder.mkdir(parents=True, exist_ok=True)
    part_path = folder / f"{remote.filename}.part"
    urls = mirror_urls(remote, mirror, relpath)
    failures: list[str] = []
    mismatch: ChecksumError | None = None
    for url in urls:
        attempt = 0
        while True:
            downloader = ResumableDownloader(part_path, progress=progress, desc=f"{what or remote.filename}", session=session)
            try:
                path = pooch.retrieve(url, known_hash=remote.known_hash, fname=remote.filename, path=folder,
                                      downloader=downloader, progressbar=False)
                return Path(path)
            except _Unreachable as exc:
                failures.append(f"{url} ({exc})")
                break
            except InterruptedDownload as exc:
                if attempt >= retries:
                    got = part_path.stat().st_size if part_path.exists() else 0
                    raise InterruptedDownload(
                        f"{what or remote.filename}: {exc}; gave up after {attempt + 1} tries; {format_bytes(got)} kept in "
                        f"{part_path}; run the same command again to resume") from exc
                attempt += 1
                time.sleep(min(backoff * attempt, 10.0))
            except ValueError as exc:  # pooch: checksum mismatch (the download was deleted)
                part_path.unlink(missing_ok=True)
                m = re.search(r"expected (\S+) but got (\S+?)\.", str(exc))
                expected, got = (m.group(1), m.group(2)) if m else (remote.known_hash, "?")
                algo = expected.split(":")[0] if ":" in expected else "sha256"
                mismatch = ChecksumError(
                    f"checksum mismatch for {remote.filename} ({what or 'download'}) from {url}: expected {expected}, "
                    f"got {algo}:{got.split(':')[-1]} ({remote.checksum_source}); the download was deleted")
                break
    if mismatch is not None:
        raise mismatch
    raise OfflineError(
        f"cannot download {remote.filename} ({what}): no source could be reached or had the file (offline?). Tried: "
        + "; ".join(failures)
        + f". Manual steps: 1) on a machine with internet, download {remote.filename} from "
        + " or ".join(remote.urls)
        + (f" (expected {remote.known_hash})" if remote.known_hash else "")
        + f"; 2) copy it to {folder / remote.filename}; 3) run {command or 'the same lossnet data fetch command'} again: "
        "the file is checked and used without a download" + (f". {manual_hint}" if manual_hint else ""))


def check_free_space(root: Path, need: int, what: str) -> None:
    """Refuse (before any download) when the file system of ``root`` has less than ``need`` bytes
    free, plus a margin of 2 % + 50 MB.

    Raises:
        DiskSpaceError: naming the folder, the space needed and the space free.
    """
    if need <= 0:
        return
    probe = Path(root)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    margin = int(need * 0.02) + 50_000_000
    if free < need + margin:
        raise DiskSpaceError(
            f"not enough free disk space for {what} under {root}: needs about {format_bytes(need)} "
            f"(+{format_bytes(margin)} margin), {format_bytes(free)} free on {probe}; free some space or choose another "
            "folder with --root DIR or LOSSNET_DATA (estimates: `lossnet data list`; --no-space-check skips this check)")
