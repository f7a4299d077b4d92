"""Reading single members of a remote zip file with HTTP Range requests.

A zip file ends with its *central directory*: one record per member with its name, sizes, CRC-32,
compression method and the offset of its local header. Reading the end of the file (the "end of
central directory" record, and for files over 4 GB or 65,535 members its zip64 variant) gives the
directory's offset and size; one more range request reads the directory; after that every member is
one range request (``local header + data``). This is how ``lossnet data fetch coco2014 --subset N``
fetches 10,000 of the 82,783 images of ``train2014.zip`` without the other 12 GB (APPNOTE.TXT 6.3).

Members are checked against the CRC-32 and size of the central directory.
"""

from __future__ import annotations

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
    if loc >= 0 and tail[loc:loc + 4] == _ZIP64_LOCATOR:
        _, _, zip64_offset, _ = struct.unpack_from("<4sIQI", tail, loc)
        rel = zip64_offset - tail_start
        if 0 <= rel and rel + 56 <= len(tail):
            n, cd_size, cd_offset = _zip64_record(tail[rel:rel + 56])
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
    while pos + 46 <= len(data) and data[pos:pos + 4] == _CENTRAL:
        (_, _, _, flags, method, _, _, crc, csize, usize, nlen, xlen, clen, _, _, ext_attr, offset) = struct.unpack_from(
            "<4sHHHHHHIIIHHHHHII", data, pos)
        raw_name = data[pos + 46:pos + 46 + nlen]
        extra = data[pos + 46 + nlen:pos + 46 + nlen + xlen]
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
            body = extra[pos + 4:pos + 4 + size]
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

    def _get(self, range_value: str, session=None) -> tuple[bytes, int | None, int | None]:
        """GET with ``Range: bytes=<range_value>``; returns (body, start offset, total size)."""
        from .download import _content_range

        s = session or self.session
        r = s.get(self.url, headers={"Range": f"bytes={range_value}", "Accept-Encoding": "identity"}, timeout=self.timeout)
        if r.status_code == 200:
            raise RangeNotSupported(f"{self.url}: the server ignores HTTP Range requests, so single members cannot be "
                                    "fetched; fetch the whole archive (without --subset)")
        if r.status_code != 206:
            r.raise_for_status()
            raise DataError(f"{self.url}: unexpected HTTP {r.status_code} for a range request")
        start, _, total = _content_range(r.headers.get("Content-Range"))
        body = r.content
        self.bytes_received += len(body)
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
            cd = tail[cd_offset - start:cd_offset - start + cd_size]
        else:
            cd = self._range(cd_offset, cd_offset + cd_size)
        return parse_central_directory(cd, n)

    def read(self, entry: ZipEntry, session=None) -> bytes:
        """One member's uncompressed bytes, checked against its CRC-32 and size (1-2 range requests)."""
        if entry.flags & 0x1:
            raise DataError(f"{self.url}: member {entry.name!r} is encrypted")
        name_len = len(entry.name.encode("utf-8" if entry.flags & 0x800 else "cp437"))
        guess_extra = 64  # local extra fields are short (zip64: 20 bytes; timestamps: 9-36)
        end = entry.header_offset + 30 + name_len + guess_extra + entry.compressed_size
        if self.size is not None:
            end = min(end, self.size)
        blob = self._range(entry.header_offset, end, session)
        if blob[:4] != _LOCAL:
            raise DataError(f"{self.url}: no local header for member {entry.name!r} at offset {entry.header_offset}")
        nlen, xlen = struct.unpack_from("<HH", blob, 26)
        data_start = 30 + nlen + xlen
        data = blob[data_start:data_start + entry.compressed_size]
        if len(data) < entry.compressed_size:
            more_from = entry.header_offset + len(blob)
            data += self._range(more_from, entry.header_offset + data_start + entry.compressed_size, session)
        if entry.method == 0:
            raw = data
        elif entry.method == 8:
            d = zlib.decompressobj(-15)
            raw = d.decompress(data) + d.flush()
        else:
            raise DataError(f"{self.url}: member {entry.name!r} uses compression method {entry.method} (only stored and deflate are supported)")
        if len(raw) != entry.file_size or (zlib.crc32(raw) & 0xFFFFFFFF) != entry.crc:
            raise DataError(f"{self.url}: member {entry.name!r} failed its CRC-32/size check "
                            f"(got {len(raw)} bytes, crc {zlib.crc32(raw) & 0xFFFFFFFF:08x}; expected {entry.file_size}, {entry.crc:08x})")
        return raw
