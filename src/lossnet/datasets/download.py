"""Downloads: pooch for caching, checksum verification and the atomic move into place; our downloader
for HTTP Range resumption and progress bars.

Why pooch plus a downloader of ours: ``pooch.retrieve`` gives the checks we want (existing file with
the right hash is reused, a download lands under a temporary name and is moved into place only when
its MD5/SHA-256 matches, the mismatch message names both hashes), and it accepts any callable as its
downloader. Its own ``HTTPDownloader`` restarts from byte 0 after an interruption, which is costly for
13 GB zips, so :class:`ResumableDownloader` keeps the bytes received in ``<file>.part`` next to the
download and continues with ``Range: bytes=<n>-`` (falling back to a full transfer when the server
ignores ranges).

Failure policy: a source that cannot be reached at all (DNS, refused, connect timeout, HTTP error, an
unusable URL such as ``htp://...``, a redirect to a non-HTTP URL or a redirect loop) is skipped for the
next mirror at once and never touches the ``.part``; a transfer cut mid-way is resumed up to ``retries`` times; a
checksum mismatch deletes the download and raises :class:`ChecksumError` naming the file, the URL and
both hashes. When no source is reachable, :class:`OfflineError` lists every URL and the manual steps.

Resume validation (``<file>.part.json`` next to the ``.part``): when a transfer starts, the URL, the
total size and the server's validator (a strong ``ETag``, else ``Last-Modified``) are recorded. A
resume sends ``Range`` with ``If-Range: <validator>``, so a server whose file changed answers 200 and
the transfer restarts from byte 0. Where the server gave no validator, a resume is made only from the
same URL and only when the ``Content-Range`` total equals the recorded size. A ``.part`` without its
record (left by hand, or by another tool) is never spliced in: the transfer starts over.
"""

from __future__ import annotations

import contextlib
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
    "ChecksumError",
    "OfflineError",
    "InterruptedDownload",
    "DiskSpaceError",
    "ResumableDownloader",
    "DownloadCancelled",
    "download_remote",
    "check_mirror",
    "part_meta_path",
    "source_path",
    "new_session",
    "check_free_space",
    "format_bytes",
    "mirror_urls",
    "USER_AGENT",
]

USER_AGENT = "lossnet-data/0.1 (+https://github.com/; dataset fetcher)"
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 60.0
_CHUNK = 1 << 20  # most bytes read per call; read1 returns what has arrived, so a stall or Ctrl-C keeps them


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


class DownloadCancelled(Exception):
    """A transfer stopped because the fetch was interrupted (its ``stop`` event was set); the bytes
    received are kept in the ``.part``."""


def part_meta_path(part_path: Path) -> Path:
    """The resume record of a ``.part`` file: ``<file>.part.json``."""
    part_path = Path(part_path)
    return part_path.with_name(part_path.name + ".json")


def source_path(file_path: Path) -> Path:
    """Where the URL a finished download came from is recorded: ``<file>.source.json``."""
    file_path = Path(file_path)
    return file_path.with_name(file_path.name + ".source.json")


def _read_json(path: Path) -> dict | None:
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    import json

    from lossnet.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(data, sort_keys=True) + "\n")


def _validator(headers) -> tuple[str | None, str | None]:
    """(strong ETag, Last-Modified) of a response; a weak ETag (``W/...``) cannot be used in If-Range."""
    etag = headers.get("ETag")
    if etag and etag.strip().startswith("W/"):
        etag = None
    return (etag.strip() if etag else None), headers.get("Last-Modified")


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

    def __init__(
        self,
        part_path: Path,
        *,
        progress: bool | None = None,
        timeout: tuple[float, float] | None = None,
        desc: str | None = None,
        session=None,
        stop: threading.Event | None = None,
    ) -> None:
        self.part_path = Path(part_path)
        self.progress = progress
        self.timeout = timeout or (CONNECT_TIMEOUT, READ_TIMEOUT)  # read at call time (tests shorten them)
        self.desc = desc or self.part_path.name.removesuffix(".part")
        self.session = session
        self.stop = stop
        self.received = 0
        self.called_with: str | None = None  # the URL of the last transfer (None: pooch used a file already there)
        self.restarted = False  # the last call threw away a .part it could not validate

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
        self.called_with = url
        have = self.part_path.stat().st_size if self.part_path.exists() else 0
        try:
            self._transfer(session, url, have)
        except (
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidHeader,
        ) as exc:
            # requests raises these (ValueError subclasses) for a mistyped URL or a redirect to ftp://...:
            # the source is unusable, and the .part is left as it is.
            raise _Unreachable(f"invalid URL or redirect: {_short(exc)}") from exc
        except requests.exceptions.TooManyRedirects as exc:
            raise _Unreachable(f"redirect loop: {_short(exc)}") from exc
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            Urllib3Error,
        ) as exc:
            if self.received == 0 and not isinstance(exc, requests.exceptions.ChunkedEncodingError):
                raise _Unreachable(f"{type(exc).__name__}: {_short(exc)}") from exc
            got = self.part_path.stat().st_size if self.part_path.exists() else 0
            raise InterruptedDownload(f"transfer of {url} stopped after {format_bytes(got)} ({_short(exc)})") from exc
        os.replace(self.part_path, output_file)
        part_meta_path(self.part_path).unlink(missing_ok=True)
        return None

    def _start_over(self) -> None:
        self.part_path.unlink(missing_ok=True)
        part_meta_path(self.part_path).unlink(missing_ok=True)
        self.restarted = True

    def _transfer(self, session, url: str, have: int) -> None:
        from tqdm.auto import tqdm

        headers = {"Accept-Encoding": "identity"}  # ranges and checksums refer to the stored bytes
        meta = _read_json(part_meta_path(self.part_path)) if have else None
        if have:
            validator = (meta or {}).get("etag") or (meta or {}).get("last_modified")
            if meta is None or (validator is None and meta.get("url") != url):
                # Nothing tells whether these bytes belong to this file at this URL: never splice them in.
                self._start_over()
                have, meta = 0, None
            else:
                headers["Range"] = f"bytes={have}-"
                if validator:
                    headers["If-Range"] = validator  # a changed file is answered with 200 and the whole body
        r = session.get(url, headers=headers, stream=True, timeout=self.timeout, allow_redirects=True)
        with r:
            if r.status_code == 416 and have:
                _, _, total = _content_range(r.headers.get("Content-Range"))
                if total == have:  # everything had been received already (a Content-Length lie may have said more)
                    return
                r.close()
                self._start_over()
                return self._transfer(session, url, 0)
            if r.status_code >= 400:
                import requests

                try:
                    r.raise_for_status()
                except requests.HTTPError as exc:
                    raise _Unreachable(f"HTTP {r.status_code} {r.reason}") from exc
            total = None
            if have and r.status_code == 206:
                start, _, total = _content_range(r.headers.get("Content-Range"))
                recorded = meta.get("total")
                if start != have or (recorded is not None and total is not None and total != recorded):
                    # another range than asked, or a file of another size than the one the .part began: start over
                    r.close()
                    self._start_over()
                    return self._transfer(session, url, 0)
                mode = "ab"
            else:
                if have:  # 200 to a resume: the server ignores ranges or (If-Range) the file changed
                    self.restarted = True
                have, mode = 0, "wb"
                length = r.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                etag, modified = _validator(r.headers)
                self.part_path.parent.mkdir(parents=True, exist_ok=True)
                _write_json(
                    part_meta_path(self.part_path),
                    {"url": url, "etag": etag, "last_modified": modified, "total": total},
                )
            self.part_path.parent.mkdir(parents=True, exist_ok=True)
            read1 = getattr(r.raw, "read1", None)
            with (
                open(self.part_path, mode) as fh,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=self.desc,
                    leave=False,
                    disable=None if self.progress is None else not self.progress,
                ) as bar,
            ):
                blocks = (
                    iter(lambda: read1(_CHUNK, decode_content=False), b"")
                    if read1 is not None
                    else r.raw.stream(1 << 16, decode_content=False)
                )
                for block in blocks:
                    fh.write(block)
                    self.received += len(block)
                    bar.update(len(block))
                    if self.stop is not None and self.stop.is_set():
                        raise DownloadCancelled(f"transfer of {url} stopped: the fetch was interrupted")
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


def download_remote(
    remote: Remote,
    folder: Path,
    *,
    mirror: str | None = None,
    relpath: str | None = None,
    retries: int = 3,
    progress: bool | None = None,
    what: str = "",
    manual_hint: str = "",
    command: str = "",
    backoff: float = 1.0,
    session=None,
    stop: threading.Event | None = None,
    source: dict | None = None,
) -> Path:
    """Download ``remote`` into ``folder`` (resuming a ``.part`` there), verified against its checksum.

    A file already at ``folder/<filename>`` with the right checksum (or any file, when the registry has
    none) is used without a download: that is also the manual route when offline, and how an archive
    kept after an interrupted unpack is reused.

    Args:
        stop: set by the caller to stop the transfer between two reads (Ctrl-C in a parallel fetch).
        source: filled with ``{"url": ...}``: the URL the bytes came from (recorded next to the file
            as ``<file>.source.json``, so a later reuse still knows it; None when unknown).

    Raises:
        ChecksumError: the checksum differs at every source that answered (nothing is kept).
        InterruptedDownload: the transfer kept breaking off (the ``.part`` stays; rerun to resume).
        OfflineError: no source could be reached; the message lists the URLs and the manual steps.
        DownloadCancelled: ``stop`` was set (the ``.part`` stays).
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
            if stop is not None and stop.is_set():
                raise DownloadCancelled(f"{remote.filename}: the fetch was interrupted")
            downloader = ResumableDownloader(
                part_path, progress=progress, desc=f"{what or remote.filename}", session=session, stop=stop
            )
            try:
                path = Path(
                    pooch.retrieve(
                        url,
                        known_hash=remote.known_hash,
                        fname=remote.filename,
                        path=folder,
                        downloader=downloader,
                        progressbar=False,
                    )
                )
            except _Unreachable as exc:
                failures.append(f"{url} ({exc})")
                break
            except InterruptedDownload as exc:
                if attempt >= retries:
                    got = part_path.stat().st_size if part_path.exists() else 0
                    raise InterruptedDownload(
                        f"{what or remote.filename}: {exc}; gave up after {attempt + 1} tries; {format_bytes(got)} kept in "
                        f"{part_path}; run the same command again to resume"
                    ) from exc
                attempt += 1
                time.sleep(min(backoff * attempt, 10.0))
                continue
            except ValueError as exc:
                if not remote.known_hash or "hash" not in str(exc):
                    # Not pooch's checksum failure (a URL requests could not use, ...): the .part stays.
                    failures.append(f"{url} ({type(exc).__name__}: {_short(exc)})")
                    break
                # pooch: checksum mismatch (the download was deleted)
                part_path.unlink(missing_ok=True)
                part_meta_path(part_path).unlink(missing_ok=True)
                m = re.search(r"expected (\S+) but got (\S+?)\.", str(exc))
                expected, got = (m.group(1), m.group(2)) if m else (remote.known_hash, "?")
                algo = expected.split(":")[0] if ":" in expected else "sha256"
                mismatch = ChecksumError(
                    f"checksum mismatch for {remote.filename} ({what or 'download'}) from {url}: expected {expected}, "
                    f"got {algo}:{got.split(':')[-1]} ({remote.checksum_source}); the download was deleted"
                )
                break
            record = source_path(path)
            if downloader.called_with is not None:
                used = {"url": downloader.called_with}
                with contextlib.suppress(OSError):
                    _write_json(record, used)
            else:  # pooch found the file in place: the record of the download that left it, if any
                used = _read_json(record) or {"url": None}
            if source is not None:
                source.update(used)
            return path
    if mismatch is not None:
        raise mismatch
    raise OfflineError(
        f"cannot download {remote.filename} ({what}): no source could be reached or had the file (offline?). Tried: "
        + "; ".join(failures)
        + f". Manual steps: 1) on a machine with internet, download {remote.filename} from "
        + " or ".join(remote.urls)
        + (f" (expected {remote.known_hash})" if remote.known_hash else "")
        + f"; 2) copy it to {folder / remote.filename}; 3) run {command or 'the same lossnet data fetch command'} again: "
        "the file is checked and used without a download" + (f". {manual_hint}" if manual_hint else "")
    )


def check_mirror(mirror: str | None) -> None:
    """Refuse a ``--mirror`` that is not an ``http(s)://host/...`` URL before anything is touched.

    Raises:
        DataError: naming the value ("invalid mirror URL").
    """
    if mirror is None:
        return
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(mirror)
        host = parts.hostname
    except ValueError as exc:
        raise DataError(f"invalid mirror URL --mirror {mirror!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise DataError(f"invalid mirror URL --mirror {mirror!r}: give http://HOST/PATH or https://HOST/PATH")


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
            "folder with --root DIR or LOSSNET_DATA (estimates: `lossnet data list`; --no-space-check skips this check)"
        )
