"""What a write into a WAL segment says about PostgreSQL's WAL position.

PostgreSQL writes WAL in whole 8 KB pages and rewrites a partly filled page from its
start on every flush, so the end of a write is a page boundary, not a position: two
commits on one page would look alike. The position is where the last complete record in
the write ends. Records are found by walking the page headers and each record's total
length (``xl_tot_len``); the first page's address (``xlp_pageaddr``) must match the
segment, so a write the walk cannot read falls back to the write's end.

Each commit rewrites its page from the start, so a walk from the page's first record
would cost O(records on the page) per commit. ``WalPositions`` remembers where its last
walk stopped and the bytes it walked over; a write at the same place that begins with
those very bytes resumes there, so a commit walks only the records it added. The
comparison makes the shortcut exact whatever is written.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Walk:
    """Where a walk stopped: the next record to read (``position`` in the stream of
    record bytes), the end of the last complete record, and the bytes of the write
    (``prefix``, from its start) that determined both."""

    path: str
    offset: int
    prefix: bytes
    position: int
    last_end: int | None


class WalPositions:
    """PostgreSQL's WAL position from its writes into WAL segments; one per mount,
    called under the view's lock (not thread-safe itself)."""

    def __init__(self) -> None:
        self._last: _Walk | None = None

    def position(self, path: str, offset: int, data: bytes) -> int | None:
        """PostgreSQL's WAL position after writing ``data`` at ``offset`` of ``path``.

        None for files that are not WAL segments and for writes in which no record ends.
        """
        start = segment_start(path)
        if start is None:
            return None
        last = self._last
        resume = (last.position, last.last_end) if (
            last is not None and last.path == path and last.offset == offset
            and data.startswith(last.prefix)) else None
        walk = _records_end(start, offset, data, resume)
        if walk is None:
            self._last = None
            return start + offset + len(data)
        end, position, last_end, walked = walk
        self._last = _Walk(path, offset, data[:walked], position, last_end)
        return None if end is None else start + end


# The segment offset just past the last complete record (or None), the stream position
# where the walk stopped, the last record end in the stream (or None), and how many bytes
# of the write, from its start, the walk depended on.
_WalkResult = tuple[int | None, int, int | None, int]


def _records_end(segment: int, offset: int, data: bytes,
                 resume: tuple[int, int | None] | None) -> _WalkResult | None:
    """Offset in the segment just past the last complete record in the write, aligned
    (None if no record ends in it), with where the walk stopped; None if the write does
    not hold WAL pages. ``resume`` starts the walk at a stream position whose preceding
    bytes an earlier walk read, with that walk's last record end (in the stream)."""
    if offset % WAL_PAGE_BYTES or len(data) < WAL_PAGE_BYTES:
        return None
    # The payload of every page (headers stripped) as one stream of record bytes.
    pieces: list[tuple[int, int, int]] = []  # (stream offset, segment offset, length)
    stream = bytearray()
    first_record = 0
    for page in range(offset, offset + len(data) - WAL_PAGE_BYTES + 1, WAL_PAGE_BYTES):
        at = page - offset
        magic, info, _tli, address, rem_len = _PAGE_HEADER.unpack_from(data, at)
        if magic < _PAGE_MAGIC_MIN or address != segment + page:
            if page == offset:
                return None
            break  # a page not written yet in this round (zeros): the stream ends here
        header = _LONG_HEADER if info & _XLP_LONG_HEADER else _SHORT_HEADER
        if page == offset:
            first_record = _maxalign(rem_len)  # the tail of a record begun earlier
        pieces.append((len(stream), page + header, WAL_PAGE_BYTES - header))
        stream += data[at + header:at + WAL_PAGE_BYTES]
    if resume is not None:
        position, last_end = resume
    else:
        position = first_record
        last_end = first_record if 0 < first_record <= len(stream) else None
    while position + 4 <= len(stream):
        (total,) = struct.unpack_from("<I", stream, position)
        if total < _RECORD_HEADER or position + total > len(stream):
            break  # no record here yet, or one that this write holds only in part
        position = _maxalign(position + total)
        last_end = min(position, len(stream))
    walked = _data_offset(pieces, offset, min(position, len(stream)))
    if last_end is not None:
        for stream_at, segment_at, length in pieces:
            if stream_at < last_end <= stream_at + length:
                return segment_at + last_end - stream_at, position, last_end, walked
    return None, position, last_end, walked


def _data_offset(pieces: list[tuple[int, int, int]], offset: int, stream_at: int) -> int:
    """How many bytes of the write, from its start, hold the stream up to ``stream_at``
    (page headers included)."""
    for piece_at, segment_at, length in pieces:
        if stream_at <= piece_at + length:
            return segment_at - offset + stream_at - piece_at
    return 0  # an empty stream: nothing was read past the headers
