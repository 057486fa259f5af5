"""What a write into a WAL segment says about PostgreSQL's WAL position.

PostgreSQL writes WAL in whole 8 KB pages and rewrites a partly filled page from its
start on every flush, so the end of a write is a page boundary, not a position: two
commits on one page would look alike. The position is where the last complete record in
the write ends. Records are found by walking the page headers and each record's total
length (``xl_tot_len``); the first page's address (``xlp_pageaddr``) must match the
segment, so a write the walk cannot read falls back to the write's end.
"""

from __future__ import annotations

import re
import struct
from typing import Final

WAL_SEGMENT_BYTES: Final = 16 * 1024 * 1024
WAL_PAGE_BYTES: Final = 8192
_SEGMENTS_PER_XLOGID: Final = 0x1_0000_0000 // WAL_SEGMENT_BYTES
_WAL_FILE: Final = re.compile(r"^pg_wal/([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_PAGE_MAGIC_MIN: Final = 0xD000  # XLOG_PAGE_MAGIC of every release since 9.x is 0xD0xx
_XLP_LONG_HEADER: Final = 0x0002
_SHORT_HEADER: Final = 24  # MAXALIGN(sizeof(XLogPageHeaderData))
_LONG_HEADER: Final = 40  # MAXALIGN(sizeof(XLogLongPageHeaderData))
_RECORD_HEADER: Final = 24  # sizeof(XLogRecord)
_PAGE_HEADER = struct.Struct("<HHIQI")  # magic, info, timeline, page address, rem_len


def _maxalign(value: int) -> int:
    return (value + 7) & ~7


def segment_start(path: str) -> int | None:
    """The WAL position where the segment file at ``path`` begins; None if not a segment."""
    match = _WAL_FILE.match(path)
    if match is None:
        return None
    segno = int(match.group(2), 16) * _SEGMENTS_PER_XLOGID + int(match.group(3), 16)
    return segno * WAL_SEGMENT_BYTES


def wal_position(path: str, offset: int, data: bytes) -> int | None:
    """PostgreSQL's WAL position after writing ``data`` at ``offset`` of ``path``.

    None for files that are not WAL segments and for writes in which no record ends.
    """
    start = segment_start(path)
    if start is None:
        return None
    end = _records_end(start, offset, data)
    if end == _UNREADABLE:
        return start + offset + len(data)
    return None if end is None else start + end


_UNREADABLE: Final = -1


def _records_end(segment: int, offset: int, data: bytes) -> int | None:
    """Offset in the segment just past the last complete record in the write, aligned;
    None if no record ends in it, ``_UNREADABLE`` if it does not hold WAL pages."""
    if offset % WAL_PAGE_BYTES or len(data) < WAL_PAGE_BYTES:
        return _UNREADABLE
    # The payload of every page (headers stripped) as one stream of record bytes.
    pieces: list[tuple[int, int, int]] = []  # (stream offset, segment offset, length)
    stream = bytearray()
    first_record = 0
    for page in range(offset, offset + len(data) - WAL_PAGE_BYTES + 1, WAL_PAGE_BYTES):
        at = page - offset
        magic, info, _tli, address, rem_len = _PAGE_HEADER.unpack_from(data, at)
        if magic < _PAGE_MAGIC_MIN or address != segment + page:
            if page == offset:
                return _UNREADABLE
            break  # a page not written yet in this round (zeros): the stream ends here
        header = _LONG_HEADER if info & _XLP_LONG_HEADER else _SHORT_HEADER
        if page == offset:
            first_record = _maxalign(rem_len)  # the tail of a record begun earlier
        pieces.append((len(stream), page + header, WAL_PAGE_BYTES - header))
        stream += data[at + header:at + WAL_PAGE_BYTES]
    position = first_record
    last_end = first_record if 0 < first_record <= len(stream) else None
    while position + 4 <= len(stream):
        (total,) = struct.unpack_from("<I", stream, position)
        if total < _RECORD_HEADER or position + total > len(stream):
            break  # no record here yet, or one that this write holds only in part
        position = _maxalign(position + total)
        last_end = min(position, len(stream))
    if last_end is None:
        return None
    for stream_at, segment_at, length in pieces:
        if stream_at < last_end <= stream_at + length:
            return segment_at + last_end - stream_at
    return None
