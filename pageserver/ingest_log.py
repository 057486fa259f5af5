"""The page server's local ingest log: segmented, append-only, with group commit.

Every ingest batch is appended here and made durable before it is acknowledged,
so the engine can keep recent data in memory and flush it into layer files
later; after a crash, ``replay()`` hands back what was not flushed yet.

Durability: ``append`` only writes; ``wait_durable`` fsyncs. Concurrent waiters
share fsyncs (group commit): one waiter becomes the leader and fsyncs
everything written before its fsync started, the others wait on a condition
and either find their record covered or elect the next leader. A failed fsync
poisons the log for good: the kernel may already have dropped the dirty pages,
so retrying the fsync could report success for data that is gone.

On disk: a directory of segment files named ``<20-digit number>.log`` with
increasing numbers. A segment starts with ``SEGMENT_MAGIC`` followed by records,
each (integers big-endian)::

    u32 n      length of everything after the crc
    u32 crc    zlib.crc32 over the n field and the n bytes after the crc
    u16 + utf-8 tenant id
    u16 + utf-8 timeline id
    u64 lsn
    payload    the remaining bytes

A segment is full once the next record would take it past ``segment_bytes``;
it is fsynced before the next one is created, so only the last segment can hold
a torn tail. At open, a bad record in the last segment ends the log there and
the rest is truncated away (PostgreSQL's rule for its WAL: nothing after it was
acknowledged, unless the disk lost fsynced data); a bad record in any other
segment raises ``CorruptionError``.

Release: each segment tracks, per timeline, the highest LSN it holds that is not
released yet; a segment is deleted when that map is empty. The map lives in
memory only and is rebuilt from the records at open, so no metadata file is
needed: a restart merely replays released records whose segment survived.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeAlias

from common.errors import (
    CorruptionError,
    FailedPreconditionError,
    InvalidArgumentError,
    StrataError,
)

logger = logging.getLogger(__name__)

SEGMENT_MAGIC = b"STRLOG\x00\x01"  # format name and version, at the start of every segment
_HEADER = len(SEGMENT_MAGIC)
_PREFIX = struct.Struct(">II")  # n, crc
_ID_LEN = struct.Struct(">H")
_LSN = struct.Struct(">Q")
_MIN_BODY = 2 * _ID_LEN.size + _LSN.size
_SEGMENT_NAME = re.compile(r"^(\d{20})\.log$")

# fdatasync persists the data and the file size, all a reader needs; macOS lacks it.
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)

_Timeline: TypeAlias = tuple[str, str]


class LogPoisonedError(StrataError):
    """The ingest log failed to fsync; nothing can be made durable until a restart."""


@dataclass(frozen=True)
class LogRecord:
    """One ingest batch of a timeline; the payload is opaque to the log."""

    tenant_id: str
    timeline_id: str
    lsn: int
    payload: bytes


@dataclass(frozen=True)
class LogStats:
    """A snapshot for metrics: live segments, their bytes, fsyncs issued, last seqno."""

    segments: int
    size_bytes: int
    fsyncs: int
    last_seqno: int


@dataclass
class _Segment:
    number: int
    path: Path
    size: int  # bytes of valid data: header and whole records
    pending: dict[_Timeline, int] = field(default_factory=dict)  # max unreleased lsn


class _BadRecord(Exception):
    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(offset, reason)
        self.offset = offset
        self.reason = reason


def _encode(record: LogRecord) -> bytes:
    tenant = record.tenant_id.encode()
    timeline = record.timeline_id.encode()
    if max(len(tenant), len(timeline)) > 0xFFFF:
        raise InvalidArgumentError("tenant and timeline ids must fit in 65535 bytes of utf-8")
    if not 0 <= record.lsn < 1 << 64:
        raise InvalidArgumentError(f"lsn {record.lsn} is not a u64")
    parts = (
        _ID_LEN.pack(len(tenant)), tenant,
        _ID_LEN.pack(len(timeline)), timeline,
        _LSN.pack(record.lsn), record.payload,
    )
    n = sum(map(len, parts))
    if n > 0xFFFFFFFF:
        raise InvalidArgumentError(f"record of {n} bytes exceeds the 4 GiB limit")
    n_field = n.to_bytes(4, "big")
    crc = zlib.crc32(n_field)
    for part in parts:
        crc = zlib.crc32(part, crc)
    return b"".join((n_field, crc.to_bytes(4, "big"), *parts))


def _decode(body: bytes) -> LogRecord:
    """Decode a record body whose crc matched; ``ValueError`` if it is malformed."""
    view = memoryview(body)
    ids = []
    pos = 0
    for _ in range(2):
        (length,) = _ID_LEN.unpack_from(view, pos)
        pos += _ID_LEN.size + length
        if pos + _LSN.size > len(view):
            raise ValueError("id length runs past the record")
        ids.append(str(view[pos - length : pos], "utf-8"))
    (lsn,) = _LSN.unpack_from(view, pos)
    return LogRecord(ids[0], ids[1], lsn, bytes(view[pos + _LSN.size :]))


def _read_records(f: BinaryIO, start: int, end: int) -> Iterator[tuple[int, LogRecord]]:
    """Yield (end offset, record) for the records of ``f`` in ``[start, end)``.

    ``f`` must be positioned at ``start``. Raises ``_BadRecord`` at the first
    record that is cut short by ``end`` or fails its crc.
    """
    offset = start
    while offset < end:
        prefix = f.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or offset + _PREFIX.size > end:
            raise _BadRecord(offset, "truncated record header")
        n, crc = _PREFIX.unpack(prefix)
        if n < _MIN_BODY or offset + _PREFIX.size + n > end:
            raise _BadRecord(offset, f"record length {n} out of bounds")
        body = f.read(n)
        if len(body) < n:
            raise _BadRecord(offset, "truncated record")
        if zlib.crc32(body, zlib.crc32(prefix[:4])) != crc:
            raise _BadRecord(offset, "crc mismatch")
        try:
            record = _decode(body)
        except ValueError as exc:
            raise _BadRecord(offset, f"malformed record: {exc}") from None
        offset += _PREFIX.size + n
        yield offset, record


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class IngestLog:
    """A thread-safe, crash-safe log of ingest batches in one directory.

    One process at a time: the directory is locked with ``flock`` while open.
    ``fsync=False`` skips every fsync; the log then survives a process crash but
    not a power loss (for tests and benchmarks).
    """

    def __init__(
        self, directory: Path, segment_bytes: int = 64 * 1024 * 1024, fsync: bool = True
    ) -> None:
        """Open the log in ``directory``, creating it if needed, and recover its segments."""
        if segment_bytes <= 0:
            raise InvalidArgumentError(f"segment_bytes must be positive, got {segment_bytes}")
        self._dir = directory
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._lock = threading.Lock()  # guards segments, the active file, _seqno, _closed
        self._cond = threading.Condition()  # guards _durable, _syncing, _failure, _fsyncs
        self._seqno = 0
        self._durable = 0
        self._syncing = False
        self._failure: OSError | None = None
        self._fsyncs = 0
        self._closed = False
        self._segments: dict[int, _Segment] = {}  # in number order: the order of the log

        created = not directory.exists()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(self._dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FailedPreconditionError(f"ingest log {directory} is already open") from None
            if created:
                parent_fd = os.open(directory.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    self._sync(parent_fd, directory=True)
                finally:
                    os.close(parent_fd)
            self._active, self._active_fd = self._recover()
        except BaseException:
            os.close(self._dir_fd)
            raise

    def __enter__(self) -> IngestLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def append(self, record: LogRecord) -> int:
        """Write ``record`` (not durable yet) and return its sequence number.

        Sequence numbers start at 1 per open log and follow the order of the log.
        """
        data = _encode(record)
        timeline = (record.tenant_id, record.timeline_id)
        with self._lock:
            self._check_usable()
            if self._active.size > _HEADER and self._active.size + len(data) > self._segment_bytes:
                self._rotate()
            segment = self._active
            try:
                _pwrite_all(self._active_fd, data, segment.size)
            except OSError:
                # Cut the partial record: once the segment is sealed it would read as corruption.
                try:
                    os.ftruncate(self._active_fd, segment.size)
                except OSError as exc:
                    self._poison(exc)
                raise
            segment.size += len(data)
            segment.pending[timeline] = max(record.lsn, segment.pending.get(timeline, 0))
            self._seqno += 1
            return self._seqno

    def wait_durable(self, seqno: int) -> None:
        """Return once every record up to ``seqno`` is fsynced.

        Raises ``LogPoisonedError`` if the log was poisoned before that, and
        ``FailedPreconditionError`` if it was closed before that.
        """
        if seqno > self._seqno:
            raise InvalidArgumentError(f"seqno {seqno} was never appended")
        with self._cond:
            while True:
                if self._durable >= seqno:
                    return
                self._check_usable()
                if not self._syncing:
                    break
                self._cond.wait()
            self._syncing = True  # lead: fsync for everyone who has written so far
        try:
            self._sync_written()
        finally:
            with self._cond:
                self._syncing = False
                self._cond.notify_all()

    def append_durable(self, record: LogRecord) -> int:
        """Append ``record`` and wait until it is durable; returns its sequence number."""
        seqno = self.append(record)
        self.wait_durable(seqno)
        return seqno

    def replay(self) -> Iterator[LogRecord]:
        """Yield the records of the log in append order, meant for startup.

        Also yields records already released whose segment still exists: release
        state is kept in memory and segments are deleted whole. The engine skips
        records at or below its timeline's durable layer LSN (and records of
        deleted timelines), and after a restart calls ``release`` per timeline
        (``forget_timeline`` for deleted ones) so the segments can go.
        """
        with self._lock:
            self._check_usable()
            segments = [(segment.path, segment.size) for segment in self._segments.values()]
        for path, size in segments:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # all released and deleted since the snapshot
            with open(fd, "rb") as f:
                f.seek(_HEADER)
                try:
                    for _, record in _read_records(f, _HEADER, size):
                        yield record
                except _BadRecord as bad:
                    raise CorruptionError(
                        f"ingest log segment {path} offset {bad.offset}: {bad.reason}"
                    ) from None

    def release(self, tenant_id: str, timeline_id: str, lsn: int) -> None:
        """Mark the timeline's records with LSN <= ``lsn`` as flushed to layer files.

        Deletes the segments left with nothing unreleased; if that is true of the
        active segment, it is sealed first so its space can be reclaimed too.
        """
        timeline = (tenant_id, timeline_id)
        with self._lock:
            self._check_usable()
            for segment in self._segments.values():
                max_lsn = segment.pending.get(timeline)
                if max_lsn is not None and max_lsn <= lsn:
                    del segment.pending[timeline]
            self._delete_released()

    def forget_timeline(self, tenant_id: str, timeline_id: str) -> None:
        """Release every record the log holds for a deleted timeline."""
        timeline = (tenant_id, timeline_id)
        with self._lock:
            self._check_usable()
            for segment in self._segments.values():
                segment.pending.pop(timeline, None)
            self._delete_released()

    def stats(self) -> LogStats:
        """Counters for metrics and tests."""
        with self._lock, self._cond:
            return LogStats(
                segments=len(self._segments),
                size_bytes=sum(segment.size for segment in self._segments.values()),
                fsyncs=self._fsyncs,
                last_seqno=self._seqno,
            )

    def close(self) -> None:
        """Make every appended record durable (unless poisoned), then close. Idempotent."""
        with self._lock:
            if self._closed:
                return
            last = self._seqno
        with contextlib.suppress(LogPoisonedError):  # still release the files
            self.wait_durable(last)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._active_fd)
            os.close(self._dir_fd)  # releases the flock
        with self._cond:
            self._cond.notify_all()

    def _recover(self) -> tuple[_Segment, int]:
        """Scan every segment, cut a torn tail, and return the active segment and its fd."""
        numbers = sorted(
            int(match.group(1))
            for name in os.listdir(self._dir)
            if (match := _SEGMENT_NAME.match(name))
        )
        for number in numbers:
            self._segments[number] = self._scan(number, tail=number == numbers[-1])
        if numbers and self._segments[numbers[-1]].size > 0:
            active = self._segments[numbers[-1]]
            fd = os.open(active.path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                if os.fstat(fd).st_size > active.size:
                    os.ftruncate(fd, active.size)
                    self._sync(fd)
            except BaseException:
                os.close(fd)
                raise
            return active, fd
        # A fresh log, or the last segment lost its header to a crash while being created.
        number = numbers[-1] if numbers else 1
        active = _Segment(number, self._segment_path(number), _HEADER)
        self._segments[number] = active
        return active, self._init_segment(number)

    def _scan(self, number: int, tail: bool) -> _Segment:
        """Read a segment's records; for the tail, ``size`` stops before a torn record.

        A tail too short to hold its header comes back with size 0.
        """
        segment = _Segment(number, self._segment_path(number), _HEADER)
        with open(segment.path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            if f.read(_HEADER) != SEGMENT_MAGIC:
                if tail and file_size <= _HEADER:
                    logger.warning("ingest log segment %s: torn header, reinitializing", f.name)
                    segment.size = 0
                    return segment
                raise CorruptionError(f"ingest log segment {segment.path} offset 0: bad header")
            try:
                for end, record in _read_records(f, _HEADER, file_size):
                    timeline = (record.tenant_id, record.timeline_id)
                    segment.pending[timeline] = max(record.lsn, segment.pending.get(timeline, 0))
                    segment.size = end
            except _BadRecord as bad:
                message = f"ingest log segment {segment.path} offset {bad.offset}: {bad.reason}"
                if not tail:
                    raise CorruptionError(message) from None
                dropped = file_size - bad.offset
                logger.warning("%s; dropping %d bytes torn by a crash", message, dropped)
        return segment

    def _segment_path(self, number: int) -> Path:
        return self._dir / f"{number:020d}.log"

    def _init_segment(self, number: int) -> int:
        """Create (or overwrite) segment ``number`` holding just its header; returns its fd."""
        path = self._segment_path(number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _pwrite_all(fd, SEGMENT_MAGIC, 0)
            self._sync(fd)
            self._sync(self._dir_fd, directory=True)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)  # or a later open would see it as the tail
            raise
        return fd

    def _rotate(self) -> None:
        """Seal the active segment and start the next one. Caller holds ``_lock``."""
        self._sync(self._active_fd)  # only the last segment may ever have a torn tail
        sealed = self._seqno
        number = self._active.number + 1
        fd = self._init_segment(number)
        os.close(self._active_fd)
        self._active_fd = fd
        self._active = _Segment(number, self._segment_path(number), _HEADER)
        self._segments[number] = self._active
        with self._cond:
            self._durable = max(self._durable, sealed)
            self._cond.notify_all()

    def _delete_released(self) -> None:
        """Delete the segments with nothing unreleased. Caller holds ``_lock``."""
        if not self._active.pending and self._active.size > _HEADER:
            self._rotate()
        released = [s for s in self._segments.values() if not s.pending and s is not self._active]
        for segment in released:
            segment.path.unlink()
            del self._segments[segment.number]
        if released:
            self._sync(self._dir_fd, directory=True)

    def _sync_written(self) -> None:
        """As group-commit leader: fsync everything written so far and publish it."""
        with self._lock:
            self._check_usable()
            target = self._seqno
            fd = os.dup(self._active_fd)  # a concurrent rotation may close the original
        try:
            self._sync(fd)
        finally:
            os.close(fd)
        with self._cond:
            self._durable = max(self._durable, target)

    def _sync(self, fd: int, directory: bool = False) -> None:
        """fsync ``fd`` unless disabled; a failure poisons the log."""
        if not self._fsync:
            return
        try:
            (os.fsync if directory else _datasync)(fd)
        except OSError as exc:
            self._poison(exc)
            raise self._poisoned_error() from exc
        with self._cond:
            self._fsyncs += 1

    def _poison(self, exc: OSError) -> None:
        logger.error("ingest log %s is poisoned: %s", self._dir, exc)
        with self._cond:
            if self._failure is None:
                self._failure = exc
            self._cond.notify_all()

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._poisoned_error() from self._failure
        if self._closed:
            raise FailedPreconditionError(f"ingest log {self._dir} is closed")

    def _poisoned_error(self) -> LogPoisonedError:
        return LogPoisonedError(
            f"ingest log {self._dir} hit an I/O error ({self._failure}) and can make nothing "
            "durable any more; restart the page server to recover its durable prefix"
        )
