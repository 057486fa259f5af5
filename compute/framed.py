"""The compute's side of the framed data plane (``common/frames.py``, rfcs/0020).

Each stream is one socket, used by one thread at a time: a call sends its request and
blocks in ``recv`` for the answer on the caller's own thread, so a commit pays two
system calls and no thread hand-off. A failure is ``FramedRefused`` with the gRPC status
the page server sent (or UNAVAILABLE when the connection could not be made or broke),
so ``compute.remote`` retries, follows and gives up on both transports alike.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final, TypeVar

import grpc

from common.frames import (
    Buffer,
    ConnectionClosed,
    ErrorFrame,
    FrameError,
    FrameType,
    Hello,
    PagesRequest,
    StreamKind,
    decode_ack,
    decode_error,
    decode_pages,
    encode_hello,
    encode_pages_request,
    receive_frame,
    send_frame,
)
from common.keys import Relation
from common.ops import Batch, encode_batch_parts

_T = TypeVar("_T")
CONNECT_TIMEOUT_S: Final = 10.0
_CODES: Final = {code.value[0]: code for code in grpc.StatusCode}


class FramedRefused(Exception):
    """A framed call failed with ``code``; ``location``: where the page server says the
    tenant is now; ``storage_quota``: refused by the tenant's storage quota;
    ``ends_connection``: False for a page request refused in band (the stream goes on)."""

    def __init__(self, code: grpc.StatusCode, message: str, *, location: str = "",
                 storage_quota: bool = False, ends_connection: bool = True) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.location = location
        self.storage_quota = storage_quota
        self.ends_connection = ends_connection

    @classmethod
    def of(cls, error: ErrorFrame) -> FramedRefused:
        return cls(_CODES.get(error.code, grpc.StatusCode.UNKNOWN), error.message,
                   location=error.location, storage_quota=error.storage_quota,
                   ends_connection=error.ends_connection)


def parse_address(address: str) -> tuple[socket.AddressFamily, str | tuple[str, int]]:
    """``unix:/path``, ``unix:@name`` (abstract namespace) or ``host:port`` (TCP) as a
    socket family and address; ValueError for anything else."""
    if address.startswith("unix:"):
        path = address.removeprefix("unix:")
        if not path:
            raise ValueError(f"data-plane address {address!r} names no socket")
        return socket.AF_UNIX, "\0" + path[1:] if path.startswith("@") else path
    host, _, port = address.removeprefix("tcp:").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"data-plane address {address!r}: give unix:PATH, unix:@NAME or "
                         "host:port")
    host = host.strip("[]")
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))


class _Connection:
    """One authenticated connection: HELLO sent and READY received."""

    def __init__(self, address: str, hello: Hello) -> None:
        family, target = parse_address(address)
        self._address = address
        self._sock: socket.socket | None = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(CONNECT_TIMEOUT_S)
            self._sock.connect(target)
            if family != socket.AF_UNIX:
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            kind, _ = self._call(FrameType.HELLO, encode_hello(hello))
            if kind is not FrameType.READY:
                raise FrameError(f"the page server answered HELLO with {kind.name}")
            self._sock.settimeout(None)  # a batch waits as long as its durability takes
        except (OSError, FrameError) as exc:
            self.close()
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise FramedRefused(grpc.StatusCode.UNAVAILABLE,
                                f"cannot reach the data plane at {address}: {detail}") from exc
        except BaseException:
            self.close()
            raise

    def _call(self, kind: FrameType, *parts: bytes) -> tuple[FrameType, bytearray]:
        assert self._sock is not None
        send_frame(self._sock, kind, *parts)
        answer, payload = receive_frame(self._sock)
        if answer is FrameType.ERROR:
            error = decode_error(payload)
            if error.ends_connection:
                self.close()
            raise FramedRefused.of(error)
        return answer, payload

    def call(self, kind: FrameType, *parts: bytes) -> tuple[FrameType, bytearray]:
        """Send one request and wait for its answer on this thread."""
        if self._sock is None:
            raise FramedRefused(grpc.StatusCode.UNAVAILABLE, "the connection is closed")
        try:
            return self._call(kind, *parts)
        except (OSError, FrameError) as exc:  # ConnectionClosed too: the server went away
            self.close()
            what = "closed" if isinstance(exc, ConnectionClosed) else f"failed: {exc}"
            raise FramedRefused(grpc.StatusCode.UNAVAILABLE,
                                f"the data-plane connection to {self._address} {what}") from exc

    def answer(self, kind: FrameType, payload: bytearray, wanted: FrameType,
               decode: Callable[[Buffer], _T]) -> _T:
        """``payload`` decoded, if it is a ``wanted`` frame; else the connection is
        closed and the call fails UNAVAILABLE (the next attempt opens another)."""
        try:
            if kind is not wanted:
                raise FrameError(f"a {kind.name} frame where {wanted.name} was due")
            return decode(payload)
        except FrameError as exc:
            self.close()
            raise FramedRefused(grpc.StatusCode.UNAVAILABLE,
                                f"the page server at {self._address} answered badly: "
                                f"{exc}") from exc

    def close(self, wait_s: float = 0.0) -> None:
        """Close the socket; the page server sees the end at a frame boundary."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class FramedPages(_Connection):
    """A GetPages stream of one tenant's branch."""

    def __init__(self, address: str, token: str, tenant: str, branch: str) -> None:
        super().__init__(address, Hello(StreamKind.PAGES, token, tenant, branch))

    def fetch(self, request_id: int, relation: Relation,
              blocks: list[int]) -> Sequence[Buffer]:
        """The newest durable images of ``blocks``: views into the one buffer the answer
        was received into."""
        kind, payload = self.call(FrameType.PAGES_REQUEST, encode_pages_request(
            PagesRequest(request_id, relation, tuple(blocks), None)))
        return self.answer(kind, payload, FrameType.PAGES, decode_pages).pages


class FramedIngest(_Connection):
    """An Ingest stream of one branch, opened at the writer's epoch."""

    def __init__(self, address: str, token: str, tenant: str, branch: str,
                 writer_epoch: int) -> None:
        super().__init__(address, Hello(StreamKind.INGEST, token, tenant, branch,
                                        writer_epoch))
        self._epoch = writer_epoch

    def send(self, batch: Batch) -> tuple[int, bool]:
        """Ship ``batch`` as the record the page server logs verbatim (no re-encoding on
        either side); its LSN once durable, and whether the tenant's storage is full."""
        record = encode_batch_parts(replace(batch, writer_epoch=self._epoch))
        kind, payload = self.call(FrameType.RECORD, *record)
        ack = self.answer(kind, payload, FrameType.ACK, decode_ack)
        return ack.lsn, ack.storage_full
