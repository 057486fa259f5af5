"""File operations shipped by a compute, batched atomically, and their binary codec.

A batch is the unit of durability: the page server applies it atomically and
gives it the timeline's next LSN. Each batch also records PostgreSQL's WAL
position (``wal_lsn``) and a wall-clock timestamp so a branch can later be cut
"at wal_lsn" or "at time", and which writer sent it: its writer epoch and the
id the writer numbered it with, by which a batch sent again is recognised.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from common.errors import CorruptionError, InvalidArgumentError

MAX_OPS_PER_BATCH = 1 << 20  # a batch must have fewer operations than this


class FileKind(IntEnum):
    FILE = 1
    DIR = 2


@dataclass(frozen=True)
class FileMeta:
    """Versioned metadata of one path: kind, size, mode, and where its pages live."""

    kind: FileKind
    size: int
    mode: int
    relation: bytes  # Relation.to_bytes(); empty for directories
    block_offset: int  # first block of this file within its relation (segno * RELSEG_BLOCKS)
    mtime_us: int

    _STRUCT = struct.Struct(">BQIQQH")

    def encode(self) -> bytes:
        return (
            self._STRUCT.pack(
                self.kind, self.size, self.mode, self.block_offset, self.mtime_us,
                len(self.relation),
            )
            + self.relation
        )

    @classmethod
    def decode(cls, raw: bytes) -> FileMeta:
        kind, size, mode, block_offset, mtime_us, rel_len = cls._STRUCT.unpack_from(raw)
        start = cls._STRUCT.size
        relation = bytes(raw[start : start + rel_len])
        return cls(FileKind(kind), size, mode, relation, block_offset, mtime_us)


@dataclass(frozen=True)
class Write:
    path: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class Truncate:
    path: str
    size: int


@dataclass(frozen=True)
class Create:
    """A new empty file. ``relation`` (Relation.to_bytes()) lets the writer choose where the
    file's pages live, so it can key its own cache before the page server applies the
    batch; empty: the page server chooses."""

    path: str
    mode: int = 0o600
    relation: bytes = b""


@dataclass(frozen=True)
class Unlink:
    path: str


@dataclass(frozen=True)
class Rename:
    src: str
    dst: str


@dataclass(frozen=True)
class Mkdir:
    path: str
    mode: int = 0o700


@dataclass(frozen=True)
class Rmdir:
    path: str


@dataclass(frozen=True)
class Chmod:
    path: str
    mode: int


FileOp = Write | Truncate | Create | Unlink | Rename | Mkdir | Rmdir | Chmod


@dataclass(frozen=True)
class Batch:
    """An atomic, ordered group of file operations."""

    ops: tuple[FileOp, ...]
    wal_lsn: int = 0
    timestamp_us: int = 0
    writer_epoch: int = 0  # the epoch of the writer that sent it
    batch_id: int = 0  # the writer's number for it, increasing within its epoch; 0: none


# --- binary codec (used by the ingest log) -----------------------------------

_OP_CODES: dict[type, int] = {
    Write: 1, Truncate: 2, Create: 3, Unlink: 4, Rename: 5, Mkdir: 6, Rmdir: 7, Chmod: 8,
}
_HEADER = struct.Struct(">QQI")
_WRITER_TAG = 0xFF  # after the operations: the writer epoch and batch id follow
_WRITER = struct.Struct(">BQQ")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


RECORD_TIMESTAMP_AT = 8  # where a record's timestamp_us (u64) starts: after wal_lsn


def _str(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 0xFFFF:
        raise InvalidArgumentError(f"path too long ({len(raw)} bytes)")
    return _U16.pack(len(raw)) + raw


def encode_batch_parts(batch: Batch) -> list[bytes]:
    """A batch's record as parts to join or send one after another: the data of each
    write is a part of its own, not copied."""
    parts = [_HEADER.pack(batch.wal_lsn, batch.timestamp_us, len(batch.ops))]
    for op in batch.ops:
        code = bytes((_OP_CODES[type(op)],))
        match op:
            case Write(path, offset, data):
                parts += (code + _str(path) + _U64.pack(offset) + _U32.pack(len(data)), data)
            case Truncate(path, size):
                parts.append(code + _str(path) + _U64.pack(size))
            case Create(path, mode, relation):
                parts.append(code + _str(path) + _U32.pack(mode) + bytes((len(relation),))
                             + relation)
            case Mkdir(path, mode) | Chmod(path, mode):
                parts.append(code + _str(path) + _U32.pack(mode))
            case Unlink(path) | Rmdir(path):
                parts.append(code + _str(path))
            case Rename(src, dst):
                parts.append(code + _str(src) + _str(dst))
    if batch.writer_epoch or batch.batch_id:  # absent from records older than the fields
        parts.append(_WRITER.pack(_WRITER_TAG, batch.writer_epoch, batch.batch_id))
    return parts


def encode_batch(batch: Batch) -> bytes:
    """Serialise a batch; inverse of :func:`decode_batch`."""
    return b"".join(encode_batch_parts(batch))


def stamp_record(record: bytearray, timestamp_us: int) -> None:
    """Set the timestamp of an encoded batch in place (a record sent without one)."""
    _U64.pack_into(record, RECORD_TIMESTAMP_AT, timestamp_us)


class _Reader:
    def __init__(self, raw: bytes | bytearray | memoryview) -> None:
        self.raw = memoryview(raw)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.raw):
            raise CorruptionError("truncated batch record")
        view = self.raw[self.pos : self.pos + n]
        self.pos += n
        return view

    def u16(self) -> int:
        return int(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])

    def text(self) -> str:
        try:
            return bytes(self.take(self.u16())).decode()
        except UnicodeDecodeError as exc:
            raise CorruptionError(f"a path in the batch record is not UTF-8: {exc}") from None


def decode_batch(raw: bytes | bytearray | memoryview) -> Batch:
    """Parse a batch written by :func:`encode_batch`; CorruptionError for bytes that are
    not one (a path that is not UTF-8 included)."""
    reader = _Reader(raw)
    wal_lsn, timestamp_us, count = _HEADER.unpack(reader.take(_HEADER.size))
    ops: list[FileOp] = []
    for _ in range(count):
        code = reader.take(1)[0]
        if code == 1:
            path = reader.text()
            offset = reader.u64()
            ops.append(Write(path, offset, bytes(reader.take(reader.u32()))))
        elif code == 2:
            path = reader.text()
            ops.append(Truncate(path, reader.u64()))
        elif code == 3:
            path = reader.text()
            mode = reader.u32()
            ops.append(Create(path, mode, bytes(reader.take(reader.take(1)[0]))))
        elif code == 6:
            path = reader.text()
            ops.append(Mkdir(path, reader.u32()))
        elif code == 8:
            path = reader.text()
            ops.append(Chmod(path, reader.u32()))
        elif code == 4:
            ops.append(Unlink(reader.text()))
        elif code == 7:
            ops.append(Rmdir(reader.text()))
        elif code == 5:
            src = reader.text()
            ops.append(Rename(src, reader.text()))
        else:
            raise CorruptionError(f"unknown operation code {code} in batch record")
    writer_epoch = batch_id = 0
    if len(reader.raw) - reader.pos == _WRITER.size and reader.raw[reader.pos] == _WRITER_TAG:
        _, writer_epoch, batch_id = _WRITER.unpack(reader.take(_WRITER.size))
    if reader.pos != len(reader.raw):
        raise CorruptionError("trailing bytes after batch record")
    return Batch(tuple(ops), wal_lsn, timestamp_us, writer_epoch, batch_id)
