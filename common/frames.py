"""The framed data-plane protocol: Ingest and GetPages over a plain socket (docs/FORMAT.md).

gRPC is the page server's contract; this protocol carries only the compute's hot path,
where grpcio's per-message thread hand-offs cost more than the work (rfcs/0020). A
connection carries one stream: it opens with a HELLO (token, tenant, branch, writer
epoch), which the page server answers READY or ERROR; then the client sends one request
frame at a time and waits for its answer. Every frame is a 5-byte header (payload length,
u32 little-endian; frame type, u8) and a payload. Each ``decode_*`` function takes a
payload and raises ``FrameError`` for any bytes that are not a well-formed frame of its
type, so a parser fed garbage fails cleanly (tests/unit/test_frames_fuzz.py).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from common.errors import CorruptionError
from common.keys import PAGE_SIZE, Relation
from common.ops import Batch, decode_batch

MAGIC: Final = b"STRF"
VERSION: Final = 1
MAX_PAYLOAD_BYTES: Final = 128 * 1024 * 1024  # as gRPC's message limit of the page server
MAX_TOKEN_BYTES: Final = 16 * 1024
MAX_BLOCKS: Final = 1 << 20  # a bound for the parser; the page server allows fewer

_HEADER = struct.Struct("<IB")
_HELLO = struct.Struct("<4sBBQHBB")  # magic, version, kind, epoch, token/tenant/branch lengths
_ACK = struct.Struct("<QQB")  # batch_id, lsn, flags
_PAGES_REQUEST = struct.Struct("<QQBIIIBI")  # id, lsn, latest, spc, db, rel, fork, count
_PAGES = struct.Struct("<QQI")  # request_id, lsn, page count
_ERROR = struct.Struct("<BBI")  # status code, flags, message length
_LOCATION = struct.Struct("<H")
HEADER_BYTES: Final = _HEADER.size
Buffer = bytes | bytearray | memoryview
_PARTS_PER_SEND = 128  # parts gathered into one sendmsg (of a page response: 1 MB)


class FrameType(IntEnum):
    HELLO = 1
    READY = 2
    BATCH = 3  # payload: a strata.v1.IngestBatch message, as in the gRPC contract
    ACK = 4
    PAGES_REQUEST = 5
    PAGES = 6
    ERROR = 7
    RECORD = 8  # payload: a batch as the ingest log stores it (common.ops), kept verbatim


class StreamKind(IntEnum):
    INGEST = 1
    PAGES = 2


ACK_STORAGE_FULL: Final = 0x01
ERROR_STORAGE_QUOTA: Final = 0x01  # refused by the tenant's storage quota, not a busy server
ERROR_ENDS_CONNECTION: Final = 0x02  # the server closes the connection after this frame


class FrameError(ValueError):
    """Bytes that are not a well-formed frame; the message says what is wrong."""


class ConnectionClosed(ConnectionError):
    """The peer closed the connection (at a frame boundary: ``mid_frame`` False)."""

    def __init__(self, mid_frame: bool) -> None:
        super().__init__("the connection closed" + (" inside a frame" if mid_frame else ""))
        self.mid_frame = mid_frame


@dataclass(frozen=True)
class Hello:
    kind: StreamKind
    token: str
    tenant: str
    branch: str
    writer_epoch: int = 0  # INGEST only


@dataclass(frozen=True)
class Ack:
    batch_id: int
    lsn: int
    storage_full: bool


@dataclass(frozen=True)
class PagesRequest:
    request_id: int
    relation: Relation
    blocks: tuple[int, ...]
    lsn: int | None  # None: the newest durable LSN


@dataclass(frozen=True)
class Pages:
    request_id: int
    lsn: int
    pages: Sequence[Buffer]  # decoded: views into the frame's payload


@dataclass(frozen=True)
class ErrorFrame:
    code: int  # a gRPC status code number (grpc.StatusCode.X.value[0])
    message: str
    location: str = ""  # the address of the page server a moved tenant is attached to
    storage_quota: bool = False
    ends_connection: bool = True


# ---------------------------------------------------------------- encoding

def _text(value: str, limit: int, what: str) -> bytes:
    raw = value.encode()
    if len(raw) > limit:
        raise FrameError(f"{what} is {len(raw)} bytes; at most {limit}")
    return raw


def encode_hello(hello: Hello) -> bytes:
    token = _text(hello.token, MAX_TOKEN_BYTES, "the token")
    tenant = _text(hello.tenant, 255, "the tenant name")
    branch = _text(hello.branch, 255, "the branch name")
    return _HELLO.pack(MAGIC, VERSION, hello.kind, hello.writer_epoch, len(token),
                       len(tenant), len(branch)) + token + tenant + branch


def encode_ack(ack: Ack) -> bytes:
    return _ACK.pack(ack.batch_id, ack.lsn, ACK_STORAGE_FULL if ack.storage_full else 0)


def encode_pages_request(request: PagesRequest) -> bytes:
    spc, db, rel, fork = request.relation
    head = _PAGES_REQUEST.pack(request.request_id, request.lsn or 0, request.lsn is None,
                               spc, db, rel, fork, len(request.blocks))
    return head + struct.pack(f"<{len(request.blocks)}I", *request.blocks)


def pages_parts(request_id: int, lsn: int, pages: list[bytes]) -> list[bytes]:
    """A PAGES payload as parts to send one after another (the pages are not copied)."""
    return [_PAGES.pack(request_id, lsn, len(pages)), *pages]


def encode_error(error: ErrorFrame) -> bytes:
    message = error.message.encode()[:MAX_TOKEN_BYTES]
    location = _text(error.location, 0xFFFF, "the location")
    flags = ((ERROR_STORAGE_QUOTA if error.storage_quota else 0)
             | (ERROR_ENDS_CONNECTION if error.ends_connection else 0))
    return (_ERROR.pack(error.code, flags, len(message)) + message
            + _LOCATION.pack(len(location)) + location)


# ---------------------------------------------------------------- decoding

def _fixed(payload: Buffer, layout: struct.Struct, what: str) -> tuple[Any, ...]:
    if len(payload) < layout.size:
        raise FrameError(f"{what} frame of {len(payload)} bytes; at least {layout.size}")
    return layout.unpack_from(payload)


def _utf8(raw: Buffer, what: str) -> str:
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError as exc:
        raise FrameError(f"{what} is not UTF-8") from exc


def decode_hello(payload: Buffer) -> Hello:
    magic, version, kind, epoch, token_len, tenant_len, branch_len = _fixed(
        payload, _HELLO, "a HELLO")
    if magic != MAGIC:
        raise FrameError("not a Strata data-plane connection (bad magic)")
    if version != VERSION:
        raise FrameError(f"protocol version {version} is not supported; this side speaks "
                         f"{VERSION}")
    if kind not in StreamKind.__members__.values():
        raise FrameError(f"unknown stream kind {kind}")
    if token_len > MAX_TOKEN_BYTES:
        raise FrameError(f"the token is {token_len} bytes; at most {MAX_TOKEN_BYTES}")
    end = _HELLO.size + token_len + tenant_len + branch_len
    if len(payload) != end:
        raise FrameError(f"a HELLO frame of {len(payload)} bytes; its lengths say {end}")
    at = _HELLO.size
    token = _utf8(payload[at:at + token_len], "the token")
    at += token_len
    tenant = _utf8(payload[at:at + tenant_len], "the tenant name")
    at += tenant_len
    branch = _utf8(payload[at:end], "the branch name")
    return Hello(StreamKind(kind), token, tenant, branch, epoch)


def decode_ack(payload: Buffer) -> Ack:
    if len(payload) != _ACK.size:
        raise FrameError(f"an ACK frame of {len(payload)} bytes; it has {_ACK.size}")
    batch_id, lsn, flags = _ACK.unpack(payload)
    return Ack(batch_id, lsn, bool(flags & ACK_STORAGE_FULL))


def decode_pages_request(payload: Buffer) -> PagesRequest:
    request_id, lsn, latest, spc, db, rel, fork, count = _fixed(
        payload, _PAGES_REQUEST, "a PAGES_REQUEST")
    if count > MAX_BLOCKS:
        raise FrameError(f"{count} blocks in one request; the parser takes {MAX_BLOCKS}")
    if len(payload) != _PAGES_REQUEST.size + 4 * count:
        raise FrameError(f"a PAGES_REQUEST frame of {len(payload)} bytes for {count} blocks")
    if latest not in (0, 1):
        raise FrameError(f"the latest flag is {latest}, not 0 or 1")
    blocks = struct.unpack_from(f"<{count}I", payload, _PAGES_REQUEST.size)
    return PagesRequest(request_id, Relation(spc, db, rel, fork), blocks,
                        None if latest else lsn)


def decode_record(payload: Buffer) -> Batch:
    """The batch of a RECORD frame: the ingest log's encoding of a batch (docs/FORMAT.md),
    which must carry the writer's epoch and its number for the batch."""
    try:
        batch = decode_batch(payload)
    except CorruptionError as exc:
        raise FrameError(f"the record is not a batch: {exc}") from exc
    if not batch.batch_id:
        raise FrameError("the record carries no batch number")
    return batch


def decode_pages(payload: Buffer) -> Pages:
    request_id, lsn, count = _fixed(payload, _PAGES, "a PAGES")
    if len(payload) != _PAGES.size + count * PAGE_SIZE:
        raise FrameError(f"a PAGES frame of {len(payload)} bytes for {count} pages")
    view = memoryview(payload)  # pages are views into the payload: no copy per page
    pages = [view[at:at + PAGE_SIZE]
             for at in range(_PAGES.size, _PAGES.size + count * PAGE_SIZE, PAGE_SIZE)]
    return Pages(request_id, lsn, pages)


def decode_error(payload: Buffer) -> ErrorFrame:
    code, flags, length = _fixed(payload, _ERROR, "an ERROR")
    if flags & ~(ERROR_STORAGE_QUOTA | ERROR_ENDS_CONNECTION):
        raise FrameError(f"unknown ERROR flags {flags:#x}")
    at = _ERROR.size + length
    if len(payload) < at + _LOCATION.size:
        raise FrameError(f"an ERROR frame of {len(payload)} bytes with a {length}-byte message")
    (location_len,) = _LOCATION.unpack_from(payload, at)
    if len(payload) != at + _LOCATION.size + location_len:
        raise FrameError(f"an ERROR frame of {len(payload)} bytes; its lengths say "
                         f"{at + _LOCATION.size + location_len}")
    message = bytes(payload[_ERROR.size:at]).decode(errors="replace")
    location = _utf8(payload[at + _LOCATION.size:], "the location")
    return ErrorFrame(code, message, location, bool(flags & ERROR_STORAGE_QUOTA),
                      bool(flags & ERROR_ENDS_CONNECTION))


def decode_header(header: Buffer) -> tuple[int, int]:
    """The payload length and frame type of a 5-byte header."""
    length, kind = _HEADER.unpack(header)
    if kind not in FrameType.__members__.values():
        raise FrameError(f"unknown frame type {kind}")
    if length > MAX_PAYLOAD_BYTES:
        raise FrameError(f"a frame of {length} bytes; at most {MAX_PAYLOAD_BYTES}")
    return length, kind


# ---------------------------------------------------------------- sockets

def send_frame(sock: socket.socket, kind: FrameType, *parts: Buffer) -> None:
    """Send one frame whose payload is ``parts`` in order, gathered by the kernel (one
    ``sendmsg`` per ``_PARTS_PER_SEND`` parts): the parts are never joined or copied."""
    length = sum(len(part) for part in parts)
    if length > MAX_PAYLOAD_BYTES:
        raise FrameError(f"a frame of {length} bytes; at most {MAX_PAYLOAD_BYTES}")
    pending = [memoryview(_HEADER.pack(length, kind)), *(memoryview(part) for part in parts)]
    first = 0
    while first < len(pending):
        sent = sock.sendmsg(pending[first:first + _PARTS_PER_SEND])
        while first < len(pending) and sent >= len(pending[first]):
            sent -= len(pending[first])
            first += 1
        if sent:  # a part sent in part: the rest of it goes first next time
            pending[first] = pending[first][sent:]


def _receive_exactly(sock: socket.socket, size: int, *, at_boundary: bool) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = sock.recv_into(view[got:])
        if count == 0:
            raise ConnectionClosed(mid_frame=not (at_boundary and got == 0))
        got += count
    return buffer


def receive_frame(sock: socket.socket) -> tuple[FrameType, bytearray]:
    """The next frame's type and payload; ``ConnectionClosed`` if the peer closed."""
    length, kind = decode_header(_receive_exactly(sock, HEADER_BYTES, at_boundary=True))
    payload = _receive_exactly(sock, length, at_boundary=False) if length else bytearray()
    return FrameType(kind), payload
