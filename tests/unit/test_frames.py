"""The framed data-plane codec: every frame round-trips, and its parsers fed any bytes
either decode a frame or raise FrameError (never another exception, never a hang)."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.frames import (
    MAX_PAYLOAD_BYTES,
    Ack,
    ConnectionClosed,
    ErrorFrame,
    FrameError,
    FrameType,
    Hello,
    PagesRequest,
    StreamKind,
    decode_ack,
    decode_error,
    decode_header,
    decode_hello,
    decode_pages,
    decode_pages_request,
    decode_record,
    encode_ack,
    encode_error,
    encode_hello,
    encode_pages_request,
    pages_parts,
    receive_frame,
    send_frame,
)
from common.keys import PAGE_SIZE, Relation
from common.ops import (
    Batch,
    Chmod,
    Create,
    FileOp,
    Mkdir,
    Rename,
    Rmdir,
    Truncate,
    Unlink,
    Write,
    encode_batch,
)

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
NAMES = st.text(min_size=0, max_size=80).filter(lambda text: len(text.encode()) <= 255)
DECODERS = (decode_hello, decode_ack, decode_pages_request, decode_pages, decode_error,
            decode_record)
PATHS = st.text(max_size=40)
MODES = st.integers(0, 0o7777)
OPS: st.SearchStrategy[FileOp] = st.one_of(
    st.builds(Write, PATHS, U64, st.binary(max_size=300)), st.builds(Truncate, PATHS, U64),
    st.builds(Create, PATHS, MODES, st.binary(min_size=13, max_size=13) | st.just(b"")),
    st.builds(Mkdir, PATHS, MODES), st.builds(Chmod, PATHS, MODES),
    st.builds(Unlink, PATHS), st.builds(Rmdir, PATHS), st.builds(Rename, PATHS, PATHS))
A_RECORD = encode_batch(Batch((Create("base/1/2", 0o600), Write("base/1/2", 0, b"x" * 20),
                               Rename("a", "b")), 7, 0, writer_epoch=3, batch_id=9))


@given(st.sampled_from(StreamKind), st.text(max_size=300), NAMES, NAMES, U64)
def test_hello_round_trips(kind: StreamKind, token: str, tenant: str, branch: str,
                           epoch: int) -> None:
    hello = Hello(kind, token, tenant, branch, epoch)
    assert decode_hello(encode_hello(hello)) == hello


@given(U64, U64, st.booleans())
def test_ack_round_trips(batch_id: int, lsn: int, full: bool) -> None:
    assert decode_ack(encode_ack(Ack(batch_id, lsn, full))) == Ack(batch_id, lsn, full)


@given(U64, st.tuples(U32, U32, U32, st.integers(0, 255)), st.lists(U32, max_size=300),
       st.none() | U64)
def test_pages_request_round_trips(request_id: int, relation: tuple[int, int, int, int],
                                   blocks: list[int], lsn: int | None) -> None:
    request = PagesRequest(request_id, Relation(*relation), tuple(blocks), lsn)
    assert decode_pages_request(encode_pages_request(request)) == request


@given(U64, U64, st.lists(st.binary(min_size=PAGE_SIZE, max_size=PAGE_SIZE), max_size=3))
def test_pages_round_trip(request_id: int, lsn: int, pages: list[bytes]) -> None:
    decoded = decode_pages(b"".join(pages_parts(request_id, lsn, pages)))
    assert (decoded.request_id, decoded.lsn, decoded.pages) == (request_id, lsn, pages)


@given(st.integers(0, 255), st.text(max_size=200), st.text(max_size=60), st.booleans(),
       st.booleans())
def test_error_round_trips(code: int, message: str, location: str, quota: bool,
                           ends: bool) -> None:
    error = ErrorFrame(code, message, location, quota, ends)
    assert decode_error(encode_error(error)) == error


@given(st.lists(OPS, max_size=8), U64, U64, U64, st.integers(1, 2**64 - 1))
def test_a_record_round_trips(ops: list[FileOp], wal_lsn: int, timestamp_us: int,
                              epoch: int, batch_id: int) -> None:
    batch = Batch(tuple(ops), wal_lsn, timestamp_us, epoch, batch_id)
    assert decode_record(bytearray(encode_batch(batch))) == batch


def test_a_record_without_a_batch_number_is_refused() -> None:
    with pytest.raises(FrameError, match="no batch number"):
        decode_record(encode_batch(Batch((Unlink("a"),), 1, 2)))


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_every_parser_takes_any_bytes(payload: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(FrameError):
            decode(payload)


@settings(max_examples=300)
@given(st.sampled_from(DECODERS), st.data())
def test_a_valid_frame_mutated_decodes_or_is_refused(decode: object, data: st.DataObject
                                                     ) -> None:
    """Byte flips, cuts and additions to well-formed payloads (which reach deeper
    branches of the parsers than random bytes do)."""
    valid = {
        decode_hello: encode_hello(Hello(StreamKind.INGEST, "token", "t", "main", 3)),
        decode_ack: encode_ack(Ack(1, 2, True)),
        decode_pages_request: encode_pages_request(
            PagesRequest(1, Relation(1, 2, 3, 0), (4, 5), None)),
        decode_pages: b"".join(pages_parts(1, 2, [bytes(PAGE_SIZE)])),
        decode_error: encode_error(ErrorFrame(14, "moved", "127.0.0.1:1")),
        decode_record: A_RECORD,
    }[decode]  # type: ignore[index]
    mutated = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    mutated = mutated[:cut] + data.draw(st.binary(max_size=16))
    with contextlib.suppress(FrameError):
        decode(bytes(mutated))  # type: ignore[operator]


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_a_stream_of_any_bytes_yields_frames_or_refuses(stream: bytes) -> None:
    """``receive_frame`` on a socket carrying arbitrary bytes, then closed."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(stream)
        theirs.shutdown(socket.SHUT_WR)
        ours.settimeout(5)
        while True:
            try:
                receive_frame(ours)
            except (FrameError, ConnectionClosed):
                break


def test_a_header_beyond_the_payload_limit_is_refused_before_reading_it() -> None:
    header = (MAX_PAYLOAD_BYTES + 1).to_bytes(4, "little") + bytes([FrameType.BATCH])
    with pytest.raises(FrameError, match="at most"):
        decode_header(header)


def test_a_large_frame_crosses_a_socket_intact() -> None:
    pages = [bytes([n % 251]) * PAGE_SIZE for n in range(300)]  # 2.4 MB: several sends
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sender = threading.Thread(target=send_frame,
                                  args=(theirs, FrameType.PAGES, *pages_parts(9, 7, pages)))
        sender.start()
        kind, payload = receive_frame(ours)
        sender.join()
    assert kind is FrameType.PAGES
    assert decode_pages(payload).pages == pages


def test_a_frame_sent_in_pieces_arrives_whole() -> None:
    """A socket with a timeout sends what fits each time: the rest of a part cut in the
    middle goes first in the next send."""
    parts = [bytes([n % 251]) * (PAGE_SIZE + n) for n in range(200)]
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        theirs.settimeout(10)  # non-blocking underneath: sendmsg may send part of its parts
        sender = threading.Thread(target=send_frame, args=(theirs, FrameType.BATCH, *parts))
        sender.start()
        kind, payload = receive_frame(ours)
        sender.join()
    assert kind is FrameType.BATCH
    assert payload == b"".join(parts)
