"""A tenant's local log file, for tenants acknowledged after a local fsync (durability
``local``): batches are appended and fdatasync'ed here, then uploaded behind the
acknowledgement as ordinary chunks of the tenant log (``pageserver/tenant_log.py``).

On disk: ``<state_dir>/tenant-logs/<tenant>/<generation:08x>-<number:08x>.seg``, each a
segment preallocated with zeros and fsynced before use, so an fdatasync after an append
writes data blocks only and never grows the file. Layout, integers big-endian::

    8 bytes    SEGMENT_MAGIC, the format name and version
    u64        generation of the writer
    u64        segment number (the name's, repeated)
    records    framed exactly as in log chunks (``log_chunk.encode_record``)
    zeros      the rest of the preallocated segment

A record whose length field is zero ends a segment. Only the segment written last can
end in a torn record (each group of records is fsynced before the next is written): it
ends the log there. A bad record anywhere else is ``CorruptionError``.

A segment is deleted once every record in it is in the object store; the directory is
deleted when the tenant's log has nothing left here (``remove``).
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.durable import fsync_dir
from common.errors import CorruptionError
from pageserver.log_chunk import LogRecord, decode_record_at

log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"STRLLG\x00\x01"
_HEADER = struct.Struct(">8sQQ")
_NAME = re.compile(r"^([0-9a-f]{8})-([0-9a-f]{8})\.seg$")
_ZERO_BLOCK = bytes(1 << 20)

# fdatasync persists the data, all a reader needs (the size is fixed); macOS lacks it.
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


@dataclass
class _Segment:
    number: int
    path: Path
    fd: int
    capacity: int
    used: int = _HEADER.size
    last_seqno: int = 0  # of the newest record in it; 0: none yet


@dataclass(frozen=True)
class LocalTail:
    """What a local log holds for one generation, as found at start-up."""

    generation: int
    records: list[LogRecord] = field(default_factory=list)
    size_bytes: int = 0


class LocalLog:
    """The local log of one tenant at one generation. ``append`` is called by one thread
    at a time (the group commit leader); ``reclaim`` and ``prepare_spare`` may run beside it."""

    def __init__(self, directory: Path, generation: int, segment_bytes: int) -> None:
        self.directory = directory
        self._generation = generation
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._spare: _Segment | None = None
        self._next_number = 1
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fsync_dir(directory.parent)  # the tenant's directory, and
        fsync_dir(directory.parent.parent)  # ``tenant-logs`` itself if it was just made

    @property
    def last_seqno(self) -> int:
        """The sequence number of the newest record appended; 0 if none."""
        with self._lock:
            return max((s.last_seqno for s in self._segments), default=0)

    def append(self, framed: list[bytes], last_seqno: int) -> None:
        """Write framed records (the last numbered ``last_seqno``) and fdatasync them:
        durable on this disk when this returns. OSError if the disk failed them."""
        data = b"".join(framed)
        with self._lock:
            segment = self._segments[-1] if self._segments else None
            if segment is None or segment.used + len(data) > segment.capacity:
                segment = self._roll(len(data))
            os.pwrite(segment.fd, data, segment.used)
            _datasync(segment.fd)
            segment.used += len(data)
            segment.last_seqno = last_seqno

    def prepare_spare(self) -> None:
        """Zero-fill the next segment ahead of need once the current one is half used, so
        that rolling over costs no write of zeros on an acknowledgement's path."""
        with self._lock:
            current = self._segments[-1] if self._segments else None
            if self._spare is not None or current is None or \
                    current.used < current.capacity // 2:
                return
            number = self._next_number
            self._next_number += 1
        spare = self._create(number, self._segment_bytes)
        with self._lock:
            self._spare = spare

    def reclaim(self, stored_seqno: int) -> int:
        """Delete the segments whose records are all in the object store (never the one
        written to); returns how many went."""
        with self._lock:
            doomed = [s for s in self._segments[:-1] if s.last_seqno <= stored_seqno]
            for segment in doomed:
                self._segments.remove(segment)
        for segment in doomed:
            os.close(segment.fd)
            segment.path.unlink(missing_ok=True)
        if doomed:
            fsync_dir(self.directory)
        return len(doomed)

    def remove(self) -> None:
        """Delete every segment and the directory: nothing here is needed any more."""
        self.close()
        remove_directory(self.directory)

    def close(self) -> None:
        """Close the files and keep them, for the next start-up to recover."""
        with self._lock:
            segments = [*self._segments, *([self._spare] if self._spare else [])]
            self._segments, self._spare = [], None
        for segment in segments:
            os.close(segment.fd)

    def _roll(self, need: int) -> _Segment:
        """Start writing to the next segment, big enough for ``need`` bytes (locked)."""
        spare, self._spare = self._spare, None
        behind = spare is not None and bool(self._segments) and \
            spare.number < self._segments[-1].number  # made while this rolled without it
        if spare is None or behind or spare.capacity - spare.used < need:
            if spare is not None:
                os.close(spare.fd)
                spare.path.unlink(missing_ok=True)
            number = self._next_number
            self._next_number += 1
            spare = self._create(number, max(self._segment_bytes, _HEADER.size + need))
        self._segments.append(spare)
        return spare

    def _create(self, number: int, capacity: int) -> _Segment:
        """A new segment: header, then zeros up to ``capacity``, all fsynced, and its
        directory entry fsynced."""
        path = self.directory / f"{self._generation:08x}-{number:08x}.seg"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.pwrite(fd, _HEADER.pack(SEGMENT_MAGIC, self._generation, number), 0)
            offset = _HEADER.size
            while offset < capacity:
                offset += os.pwrite(fd, _ZERO_BLOCK[:capacity - offset], offset)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        fsync_dir(self.directory)
        return _Segment(number, path, fd, capacity)


def read_local_logs(directory: Path) -> list[LocalTail]:
    """Every record the segments in ``directory`` hold, per generation, oldest first;
    [] if there is no such directory."""
    if not directory.is_dir():
        return []
    named = sorted((int(m[1], 16), int(m[2], 16), directory / m[0])
                   for m in map(_NAME.match, os.listdir(directory)) if m)
    records: dict[int, list[LogRecord]] = {}
    sizes: dict[int, int] = {}
    for index, (generation, number, path) in enumerate(named):
        last = index == len(named) - 1 or named[index + 1][0] != generation
        found, size = _read_segment(path, generation, number, last)
        records.setdefault(generation, []).extend(found)
        sizes[generation] = sizes.get(generation, 0) + size
    return [LocalTail(generation, records[generation], sizes[generation])
            for generation in sorted(records)]


def _read_segment(path: Path, generation: int, number: int,
                  last: bool) -> tuple[list[LogRecord], int]:
    """The records of one segment and their bytes; a bad record ends the last segment."""
    view = memoryview(path.read_bytes())
    if len(view) < _HEADER.size:
        if last:  # created, not yet fsynced whole: nothing was written to it
            return [], 0
        raise CorruptionError(f"local log segment {path}: shorter than its header")
    magic, stored_generation, stored_number = _HEADER.unpack_from(view)
    if (magic, stored_generation, stored_number) != (SEGMENT_MAGIC, generation, number):
        if last and not any(view[: _HEADER.size]):
            return [], 0
        raise CorruptionError(f"local log segment {path}: bad header")
    records: list[LogRecord] = []
    pos = _HEADER.size
    while pos + 4 <= len(view) and any(view[pos : pos + 4]):
        try:
            record, end = decode_record_at(view, pos, f"local log segment {path}")
        except CorruptionError:
            if not last:
                raise
            log.warning("local log segment %s ends in a torn record at %d", path, pos)
            break
        records.append(record)
        pos = end
    return records, pos - _HEADER.size


def remove_directory(directory: Path) -> None:
    """Delete a tenant's local log directory and make that durable."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        entry.unlink(missing_ok=True)
    directory.rmdir()
    fsync_dir(directory.parent)
