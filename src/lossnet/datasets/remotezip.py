"""Reading single members of a remote zip file with HTTP Range requests.

A zip file ends with its *central directory*: one record per member with its name, sizes, CRC-32,
compression method and the offset of its local header. Reading the end of the file (the "end of
central directory" record, and for files over 4 GB or 65,535 members its zip64 variant) gives the
directory's offset and size; one more range request reads the directory; after that every member is
one range request (``local header + data``). This is how ``lossnet data fetch coco2014 --subset N``
fetches 10,000 of the 82,783 images of ``train2014.zip`` without the other 12 GB (APPNOTE.TXT 6.3).

Members are checked against the CRC-32 and size of the central directory, *while they stream*: a
response body is read in 64 KiB blocks and never beyond the bytes asked for, and a deflated member is
inflated with ``max_length`` so that no more than its declared size (+1 byte, to detect the excess)
is ever produced; a member that inflates to more is refused at that point. Memory per member is a few
blocks, whatever the archive claims (a member declaring 1,000 bytes once inflated to 2.66 GB in memory
before its size was checked). :meth:`RemoteZip.extract` writes a member straight to a file.

PyPI ``remotezip`` (0.12.6, read for issue #32) was evaluated: it keeps both guarantees (its
non-streamed reads stop at the range size asked for; members are read through
:class:`zipfile.ZipExtFile`, which stops at the declared size and checks the CRC-32), so it could
replace this module. It was not swapped in this round because it is a ``zipfile.ZipFile`` over one
shared file position: the 8 parallel member reads need one instance per thread, each re-reading the
central directory (about 7 MB for COCO ``train2014.zip``), and it would be a new runtime dependency
while the package's extras are being reorganised (#27). Revisit when that settles.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from lossnet.errors import DataError

__all__ = ["ZipEntry", "RemoteZip", "RangeNotSupported", "parse_central_directory", "find_end_record"]

_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_TAIL_GUESS = 4096  # the end records without a long comment fit easily
_MAX_TAIL = 65_535 + 22 + 20 + 56
_BLOCK = 1 << 16


class RangeNotSupported(DataError):
    """The server ignored a Range request (answered 200 with the whole file)."""


@dataclass(frozen=True)
class ZipEntry:
    """One central-directory record."""

    name: str
    method: int
    flags: int
    crc: int
    compressed_size: int
    file_size: int
    header_offset: int
    external_attr: int = 0

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


def find_end_record(tail: bytes, tail_start: int) -> tuple[int, int, int, int | None]:
    """Parse the end-of-central-directory record(s) found in ``tail`` (bytes ending at the end of file).

    Returns:
        ``(entries, cd_size, cd_offset, zip64_eocd_offset)``; the last is the absolute offset of a zip64
        end record still to be read (None when the values are final).

    Raises:
        DataError: no end record in ``tail``.
    """
    pos = len(tail)
    while True:
        pos = tail.rfind(_EOCD, 0, pos)
        if pos < 0:
            raise DataError("no zip end-of-central-directory record found")
        if pos + 22 <= len(tail):
            (_, disk, cd_disk, n_disk, n, cd_size, cd_offset, comment_len) = struct.unpack_from("<4sHHHHIIH", tail, pos)
            if pos + 22 + comment_len == len(tail):  # a real record: its comment runs to the end of the file
                break
        if pos == 0:
            raise DataError("no zip end-of-central-directory record found")
    if disk != 0 or cd_disk != 0 or n_disk != n:
        raise DataError("multi-disk (split) zip archives are not supported")
    loc = pos - 20
    if loc >= 0 and tail[loc : loc + 4] == _ZIP64_LOCATOR:
        _, _, zip64_offset, _ = struct.unpack_from("<4sIQI", tail, loc)
        rel = zip64_offset - tail_start
        if 0 <= rel and rel + 56 <= len(tail):
            n, cd_size, cd_offset = _zip64_record(tail[rel : rel + 56])
            return n, cd_size, cd_offset, None
        return n, cd_size, cd_offset, zip64_offset
    if n == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        raise DataError("zip64 archive without a zip64 end-of-central-directory locator")
    return n, cd_size, cd_offset, None


def _zip64_record(data: bytes) -> tuple[int, int, int]:
    if data[:4] != _ZIP64_EOCD:
        raise DataError("corrupt zip64 end-of-central-directory record")
    (_, _, _, _, disk, cd_disk, n_disk, n, cd_size, cd_offset) = struct.unpack_from("<4sQHHIIQQQQ", data, 0)
    if disk != 0 or cd_disk != 0 or n_disk != n:
        raise DataError("multi-disk (split) zip archives are not supported")
    return n, cd_size, cd_offset


def parse_central_directory(data: bytes, expected: int | None = None) -> list[ZipEntry]:
    """Parse central-directory records (with zip64 extra fields)."""
    out: list[ZipEntry] = []
    pos = 0
    while pos + 46 <= len(data) and data[pos : pos + 4] == _CENTRAL:
        (_, _, _, flags, method, _, _, crc, csize, usize, nlen, xlen, clen, _, _, ext_attr, offset) = (
            struct.unpack_from("<4sHHHHHHIIIHHHHHII", data, pos)
        )
        raw_name = data[pos + 46 : pos + 46 + nlen]
        extra = data[pos + 46 + nlen : pos + 46 + nlen + xlen]
        name = raw_name.decode("utf-8") if flags & 0x800 else raw_name.decode("cp437")
        if 0xFFFFFFFF in (csize, usize, offset):
            usize, csize, offset = _zip64_extra(extra, usize, csize, offset, name)
        out.append(ZipEntry(name, method, flags, crc, csize, usize, offset, ext_attr))
        pos += 46 + nlen + xlen + clen
    if expected is not None and len(out) != expected:
        raise DataError(f"zip central directory holds {len(out)} records, its end record says {expected}")
    return out


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int, name: str) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        if tag == 0x0001:
            body = extra[pos + 4 : pos + 4 + size]
            values = list(struct.unpack_from(f"<{len(body) // 8}Q", body)) if len(body) >= 8 else []
            # Present only for the fields that are 0xFFFFFFFF, in this order (APPNOTE 4.5.3).
            if usize == 0xFFFFFFFF:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF:
                offset = values.pop(0)
            return usize, csize, offset
        pos += 4 + size
    raise DataError(f"zip member {name!r}: 32-bit field overflow without a zip64 extra field")


class RemoteZip:
    """A zip file on an HTTP server that supports Range requests.

    Args:
        url: the zip's URL.
        session: a requests session (default: a new one).
        timeout: (connect, read) seconds.
    """

    def __init__(self, url: str, session=None, timeout: tuple[float, float] = (15.0, 60.0)) -> None:
        from .download import new_session

        self.url = url
        self.session = session or new_session()
        self.timeout = timeout
        self.size: int | None = None
        self.bytes_received = 0

    def _open(self, range_value: str, session=None):
        """A streamed GET with ``Range: bytes=<range_value>`` answered 206; returns (response, start, total)."""
        from .download import _content_range

        s = session or self.session
        r = s.get(
            self.url,
            headers={"Range": f"bytes={range_value}", "Accept-Encoding": "identity"},
            timeout=self.timeout,
            stream=True,
        )
        if r.status_code == 200:
            r.close()
            raise RangeNotSupported(
                f"{self.url}: the server ignores HTTP Range requests, so single members cannot be "
                "fetched; fetch the whole archive (without --subset)"
            )
        if r.status_code != 206:
            r.close()
            r.raise_for_status()
            raise DataError(f"{self.url}: unexpected HTTP {r.status_code} for a range request")
        start, end, total = _content_range(r.headers.get("Content-Range"))
        return r, start, end, total

    def _blocks(self, r, cap: int, stop=None):
        """The body of ``r`` in blocks, refusing more than ``cap`` bytes (a server must send what was asked)."""
        got = 0
        with r:
            for block in r.raw.stream(_BLOCK, decode_content=False):
                got += len(block)
                if got > cap:
                    raise DataError(f"{self.url}: the server sent more than the {cap:,} bytes asked for")
                self.bytes_received += len(block)
                if stop is not None and stop.is_set():
                    from .download import DownloadCancelled

                    raise DownloadCancelled(f"{self.url}: the fetch was interrupted")
                yield block

    def _get(self, range_value: str, session=None) -> tuple[bytes, int | None, int | None]:
        """GET with ``Range: bytes=<range_value>``; returns (body, start offset, total size)."""
        r, start, end, total = self._open(range_value, session)
        if range_value.startswith("-"):
            cap = int(range_value[1:])
        else:
            a, _, b = range_value.partition("-")
            cap = int(b) - int(a) + 1
        body = b"".join(self._blocks(r, cap))
        return body, start, total

    def _range(self, start: int, end: int, session=None) -> bytes:
        """Bytes ``start`` .. ``end - 1``."""
        body, got_start, _ = self._get(f"{start}-{end - 1}", session)
        if got_start != start or len(body) != end - start:
            raise DataError(f"{self.url}: asked for bytes {start}-{end - 1}, got {len(body)} bytes from {got_start}")
        return body

    def entries(self) -> list[ZipEntry]:
        """Read the central directory (2-3 range requests)."""
        tail, start, total = self._get(f"-{_TAIL_GUESS}")
        self.size = total
        if start is None:
            start = (total or len(tail)) - len(tail)
        try:
            n, cd_size, cd_offset, zip64_at = find_end_record(tail, start)
        except DataError:
            if total is None or len(tail) >= total:
                raise DataError(f"{self.url}: not a zip file (no end-of-central-directory record)") from None
            tail, start, _ = self._get(f"-{min(_MAX_TAIL, total)}")  # a long archive comment
            try:
                n, cd_size, cd_offset, zip64_at = find_end_record(tail, start)
            except DataError as exc:
                raise DataError(f"{self.url}: not a zip file ({exc})") from None
        if zip64_at is not None:
            n, cd_size, cd_offset = _zip64_record(self._range(zip64_at, zip64_at + 56))
        if cd_offset >= start and cd_offset + cd_size <= start + len(tail):
            cd = tail[cd_offset - start : cd_offset - start + cd_size]
        else:
            cd = self._range(cd_offset, cd_offset + cd_size)
        return parse_central_directory(cd, n)

    def read(self, entry: ZipEntry, session=None, stop=None) -> bytes:
        """One member's uncompressed bytes, checked against its CRC-32 and size (1-2 range requests)."""
        buf = io.BytesIO()
        self.extract(entry, buf, session, stop)
        return buf.getvalue()

    def extract(self, entry: ZipEntry, out, session=None, stop=None) -> int:
        """Stream one member into the binary file object ``out``, checked against its CRC-32 and size.

        At most ``entry.file_size + 1`` bytes are ever inflated, in 64 KiB steps; memory stays a few
        blocks. Returns the member's size.

        Raises:
            DataError: no local header, an unsupported method, or the CRC-32/size check failed (the
                excess is detected as it streams).
        """
        if entry.flags & 0x1:
            raise DataError(f"{self.url}: member {entry.name!r} is encrypted")
        if entry.method not in (0, 8):
            raise DataError(
                f"{self.url}: member {entry.name!r} uses compression method {entry.method} (only stored and deflate are supported)"
            )
        name_len = len(entry.name.encode("utf-8" if entry.flags & 0x800 else "cp437"))
        guess_extra = 64  # local extra fields are short (zip64: 20 bytes; timestamps: 9-36)
        end = entry.header_offset + 30 + name_len + guess_extra + entry.compressed_size
        if self.size is not None:
            end = min(end, self.size)
        r, got_start, _, _ = self._open(f"{entry.header_offset}-{end - 1}", session)
        if got_start != entry.header_offset:
            r.close()
            raise DataError(f"{self.url}: asked for bytes from {entry.header_offset}, got bytes from {got_start}")
        blocks = self._blocks(r, end - entry.header_offset, stop)
        head = bytearray()
        for block in blocks:  # the local header: 30 bytes + name + extra field
            head += block
            if len(head) >= 30 and len(head) >= 30 + sum(struct.unpack_from("<HH", head, 26)):
                break
        if head[:4] != _LOCAL:
            raise DataError(f"{self.url}: no local header for member {entry.name!r} at offset {entry.header_offset}")
        if len(head) < 30:
            raise DataError(f"{self.url}: member {entry.name!r}: truncated local header")
        nlen, xlen = struct.unpack_from("<HH", head, 26)
        data_start = 30 + nlen + xlen
        first = bytes(head[data_start:])
        left = entry.compressed_size

        def compressed():
            nonlocal left
            pieces = [first] if first else []
            for piece in pieces:
                take = piece[:left]
                left -= len(take)
                yield take
            for block in blocks:
                if left <= 0:
                    break
                take = block[:left]
                left -= len(take)
                yield take
            if left > 0:  # the extra field was longer than guessed: one more request for the rest
                more_from = entry.header_offset + data_start + entry.compressed_size - left
                r2, s2, _, _ = self._open(f"{more_from}-{more_from + left - 1}", session)
                if s2 != more_from:
                    r2.close()
                    raise DataError(f"{self.url}: asked for bytes from {more_from}, got bytes from {s2}")
                for block in self._blocks(r2, left, stop):
                    left -= len(block)
                    yield block
            if left > 0:
                raise DataError(f"{self.url}: member {entry.name!r} is cut short ({left:,} compressed bytes missing)")

        limit = entry.file_size + 1  # one byte more than declared is enough to know it lies
        d = zlib.decompressobj(-15) if entry.method == 8 else None
        try:
            size, crc = self._inflate(entry, compressed(), d, out, limit)
        finally:
            blocks.close()  # leaves the response's `with` (the connection goes back to the pool or is closed)
        if size != entry.file_size or crc != entry.crc:
            raise DataError(
                f"{self.url}: member {entry.name!r} failed its CRC-32/size check "
                f"(got {size} bytes, crc {crc:08x}; expected {entry.file_size}, {entry.crc:08x})"
            )
        return size

    def _inflate(self, entry: ZipEntry, chunks, d, out, limit: int) -> tuple[int, int]:
        size, crc = 0, 0

        def excess(n: int) -> DataError:
            return DataError(
                f"{self.url}: member {entry.name!r} failed its CRC-32/size check (it inflates to more than its "
                f"declared {entry.file_size:,} bytes; stopped after {n:,}); refused"
            )

        for chunk in chunks:
            while chunk:
                if d is None:
                    raw, chunk = chunk, b""
                else:
                    raw = d.decompress(chunk, max(limit - size, 1))
                    chunk = d.unconsumed_tail
                size += len(raw)
                if size > entry.file_size:
                    raise excess(size)
                crc = zlib.crc32(raw, crc)
                out.write(raw)
                if d is not None and d.eof:
                    chunk = b""
        if d is not None:
            raw = d.flush()
            size += len(raw)
            if size > entry.file_size:
                raise excess(size)
            crc = zlib.crc32(raw, crc)
            out.write(raw)
        return size, crc & 0xFFFFFFFF
