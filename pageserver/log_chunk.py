"""The bytes of one chunk of a tenant's ingest log: a header and framed records.

A chunk is one object (``tenants/<t>/log/<seq>``), created whole with create-if-absent
by the page server that acknowledges its records (``pageserver/tenant_log.py``).
Layout, integers big-endian::

    8 bytes    CHUNK_MAGIC, the format name and version
    u64        generation of the writer
    u64        sequence number (the object's name, repeated: a copy elsewhere is damage)
    u32        number of records
    u64        bytes of records that follow
    records    each: u32 n, u32 crc (zlib.crc32 over n and the n bytes after the crc),
               u16 + utf-8 timeline id, u64 lsn, payload (the remaining bytes)

A chunk that holds no record is a *fence*: the first object of a new generation, which
the previous owner's next write collides with.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from common.errors import CorruptionError, InvalidArgumentError

CHUNK_MAGIC = b"STRWAL\x00\x01"
_HEADER = struct.Struct(">8sQQIQ")
_PREFIX = struct.Struct(">II")  # n, crc
_ID_LEN = struct.Struct(">H")
_LSN = struct.Struct(">Q")
_MIN_BODY = _ID_LEN.size + _LSN.size


@dataclass(frozen=True)
class LogRecord:
    """One ingest batch of a timeline; the payload is opaque to the log."""

    timeline_id: str
    lsn: int
    payload: bytes


@dataclass(frozen=True)
class Chunk:
    """A decoded chunk."""

    generation: int
    seq: int
    records: list[LogRecord]


def encode_record(record: LogRecord) -> bytes:
    """One framed record; InvalidArgumentError if a field does not fit."""
    timeline = record.timeline_id.encode()
    if len(timeline) > 0xFFFF:
        raise InvalidArgumentError("timeline ids must fit in 65535 bytes of utf-8")
    if not 0 <= record.lsn < 1 << 64:
        raise InvalidArgumentError(f"lsn {record.lsn} is not a u64")
    parts = (_ID_LEN.pack(len(timeline)), timeline, _LSN.pack(record.lsn), record.payload)
    n = sum(map(len, parts))
    if n > 0xFFFFFFFF:
        raise InvalidArgumentError(f"record of {n} bytes exceeds the 4 GiB limit")
    n_field = n.to_bytes(4, "big")
    crc = zlib.crc32(n_field)
    for part in parts:
        crc = zlib.crc32(part, crc)
    return b"".join((n_field, crc.to_bytes(4, "big"), *parts))


def encode_chunk(generation: int, seq: int, framed: Sequence[bytes]) -> bytes:
    """A chunk of records already framed by ``encode_record``."""
    size = sum(map(len, framed))
    return b"".join((_HEADER.pack(CHUNK_MAGIC, generation, seq, len(framed), size), *framed))


def decode_chunk(data: bytes, name: str, seq: int) -> Chunk:
    """Parse and verify a chunk; anything wrong (a short read too) is CorruptionError."""
    view = memoryview(data)
    if len(view) < _HEADER.size:
        raise CorruptionError(f"log chunk {name}: {len(view)} bytes, shorter than its header")
    magic, generation, stored_seq, count, size = _HEADER.unpack_from(view)
    if magic != CHUNK_MAGIC:
        raise CorruptionError(f"log chunk {name}: bad magic {bytes(magic)!r}")
    if stored_seq != seq:
        raise CorruptionError(f"log chunk {name}: holds sequence number {stored_seq}")
    if len(view) != _HEADER.size + size:
        raise CorruptionError(f"log chunk {name}: {len(view) - _HEADER.size} bytes of "
                              f"records, the header says {size}")
    records = []
    pos = _HEADER.size
    for _ in range(count):
        record, pos = decode_record_at(view, pos, f"log chunk {name}")
        records.append(record)
    if pos != len(view):
        raise CorruptionError(f"log chunk {name}: {len(view) - pos} bytes after its records")
    return Chunk(generation, seq, records)


def decode_record_at(view: memoryview, pos: int, name: str) -> tuple[LogRecord, int]:
    """The framed record at ``pos`` of ``view`` and where the next one starts;
    CorruptionError (naming ``name``) if it is cut short, fails its crc or is malformed."""
    if pos + _PREFIX.size > len(view):
        raise CorruptionError(f"{name}: record at {pos} runs past the end")
    n, crc = _PREFIX.unpack_from(view, pos)
    body = view[pos + _PREFIX.size : pos + _PREFIX.size + n]
    if n < _MIN_BODY or len(body) < n:
        raise CorruptionError(f"{name}: record at {pos} has a bad length")
    if zlib.crc32(body, zlib.crc32(view[pos : pos + 4])) != crc:
        raise CorruptionError(f"{name}: record at {pos} fails its crc")
    (length,) = _ID_LEN.unpack_from(body)
    end = _ID_LEN.size + length
    if end + _LSN.size > n:
        raise CorruptionError(f"{name}: record at {pos} is malformed")
    try:
        timeline = str(body[_ID_LEN.size : end], "utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptionError(f"{name}: record at {pos}: {exc}") from None
    (lsn,) = _LSN.unpack_from(body, end)
    return LogRecord(timeline, lsn, bytes(body[end + _LSN.size :])), pos + _PREFIX.size + n
