"""The proxy's byte relay with real sockets: a TCP client, an asyncio front that reads a
little first (as the proxy does during the startup), then ``detach`` and ``relay`` to an
upstream on a unix socket. Payloads are random, so a dropped, doubled or reordered byte
fails the comparison."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from strata.proxy._pump import pump
from strata.proxy.relay import detach, relay

GREETING = b"START"  # what the front sends the upstream, and reads back, before relaying
READY = b"READY"  # what the front tells the client before relaying
HELLO = b"HELO"  # what the client sends first; the front reads it through asyncio
TIMEOUT_S = 30.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def open_fds() -> set[tuple[str, str]]:
    """This process's descriptors, each as its number and what it points at."""
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own, now closed
            fds.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
    return fds


class Upstream:
    """A unix-socket server running ``serve(connection)`` in a thread per connection."""

    def __init__(self, path: Path, serve: Callable[[socket.socket], None]) -> None:
        self.path = path
        self._serve = serve
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(str(path))
        self._listener.listen(256)
        self.open = 0  # connections not closed yet
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed: the test is over
            while True:
                conn, _ = self._listener.accept()
                with self._lock:
                    self.open += 1
                threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        finally:
            conn.close()
            with self._lock:
                self.open -= 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


def echo(conn: socket.socket) -> None:
    """Sends back everything until the client's EOF, then closes."""
    buffer = bytearray(65536)
    with contextlib.suppress(ConnectionError):
        while received := conn.recv_into(buffer):
            conn.sendall(buffer[:received])


def speaker(payload: bytes) -> Callable[[socket.socket], None]:
    """Answers the greeting, sends ``payload`` without reading anything more, closes."""
    def serve(conn: socket.socket) -> None:
        assert recv_exactly(conn, len(GREETING)) == GREETING
        conn.sendall(GREETING + payload)
    return serve


def digester(conn: socket.socket) -> None:
    """Echoes the greeting, reads everything until the client's EOF, then answers with
    the SHA-256 of it: an answer only a half-close lets through."""
    conn.sendall(recv_exactly(conn, len(GREETING)))
    conn.sendall(hashlib.sha256(recv_all(conn)).digest())


def resetter(conn: socket.socket) -> None:
    """Echoes the greeting, sends a little, then resets the connection with data unread."""
    conn.sendall(recv_exactly(conn, len(GREETING)) + b"partial")
    recv_exactly(conn, 1000)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def breaker(conn: socket.socket) -> None:
    """Echoes the greeting, reads a little of what follows, then closes with data unread."""
    conn.sendall(recv_exactly(conn, len(GREETING)))
    recv_exactly(conn, 1000)


def recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


def recv_all(conn: socket.socket) -> bytes:
    """Everything until EOF."""
    data = bytearray()
    while chunk := conn.recv(1 << 20):
        data += chunk
    return bytes(data)


class Front:
    """An asyncio server in a thread: per client, the proxy's shape of session."""

    def __init__(self, upstream: Path) -> None:
        self._upstream = upstream
        self.early: list[int] = []  # bytes asyncio had read ahead, per session
        self.finished = 0
        self.errors: list[BaseException] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(TIMEOUT_S)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            assert await reader.readexactly(len(HELLO)) == HELLO
            up_reader, up_writer = await asyncio.open_unix_connection(self._upstream)
            up_writer.write(GREETING)
            assert await up_reader.readexactly(len(GREETING)) == GREETING
            writer.write(READY)
            client, from_client = await detach(reader, writer)
            server, from_server = await detach(up_reader, up_writer)
            self.early.append(len(from_client))
            await relay(client, server, to_server=from_client, to_client=from_server)
            self.finished += 1
        except BaseException as exc:
            self.errors.append(exc)
            raise
        finally:
            self._tasks.discard(task)
            writer.close()

    def cancel_sessions(self) -> None:
        assert self._loop is not None
        for task in list(self._tasks):
            self._loop.call_soon_threadsafe(task.cancel)

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(TIMEOUT_S)

    def connect(self) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT_S)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn


@contextlib.contextmanager
def front_to(tmp_path: Path, serve: Callable[[socket.socket], None]) -> Iterator[
        tuple[Front, Upstream]]:
    upstream = Upstream(tmp_path / f"up-{id(serve)}.sock", serve)
    front = Front(upstream.path)
    try:
        yield front, upstream
    finally:
        front.close()
        upstream.close()


def echoed_session(front: Front, payload: bytes) -> bytes:
    """Sends HELLO and ``payload`` (then a half-close) while reading everything back."""
    with front.connect() as conn:
        def send() -> None:
            conn.sendall(HELLO + payload)
            conn.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = recv_all(conn)
        sender.join()
    return received


def test_large_transfers_both_ways_arrive_whole_and_in_order(tmp_path: Path) -> None:
    payload = os.urandom(24 * 1024 * 1024)
    with front_to(tmp_path, echo) as (front, upstream):
        assert echoed_session(front, payload) == READY + payload  # EOF came: half-close passed
        wait_for(lambda: front.finished == 1 and upstream.open == 0, "the session to end")
        assert front.early[0] > 0  # asyncio had read ahead: those bytes went first
        assert not front.errors


def test_a_server_that_closes_ends_the_session_while_the_client_idles(tmp_path: Path) -> None:
    payload = os.urandom(8 * 1024 * 1024)
    with front_to(tmp_path, speaker(payload)) as (front, _), front.connect() as conn:
        conn.sendall(HELLO)
        assert recv_all(conn) == READY + payload  # then EOF
        wait_for(lambda: front.finished == 1, "the session to end, the client still open")
        assert not front.errors


def test_a_client_that_resets_closes_the_upstream(tmp_path: Path) -> None:
    with front_to(tmp_path, echo) as (front, upstream):
        conn = front.connect()
        conn.sendall(HELLO + os.urandom(100_000))
        assert recv_exactly(conn, len(READY)) == READY
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # a reset, not a FIN
        wait_for(lambda: front.finished == 1 and upstream.open == 0, "both sides to close")


def test_concurrent_sessions_and_a_failing_one_leak_nothing(tmp_path: Path) -> None:
    with front_to(tmp_path, echo) as (front, upstream):
        assert echoed_session(front, b"warm") == READY + b"warm"  # the relay thread is up
        wait_for(lambda: front.finished == 1, "the first session to end")
        baseline = open_fds()
        payloads = [os.urandom(512 * 1024 + n) for n in range(64)]
        with front_to(tmp_path, breaker) as (broken, _):
            with broken.connect() as doomed:  # fails while the others run
                with contextlib.suppress(ConnectionError):
                    doomed.sendall(HELLO + os.urandom(200_000))
                with ThreadPoolExecutor(len(payloads)) as pool:
                    echoed = list(pool.map(lambda p: echoed_session(front, p), payloads))
                with contextlib.suppress(ConnectionError):
                    recv_all(doomed)  # EOF or a reset: the session ended
            wait_for(lambda: broken.finished == 1, "the broken session to end")
        assert echoed == [READY + payload for payload in payloads]
        wait_for(lambda: front.finished == 1 + len(payloads) and upstream.open == 0,
                 "every session to end")
        assert echoed_session(front, b"still serving") == READY + b"still serving"
        # Only descriptors opened since the baseline count: an earlier test's leftover
        # (another test file ran in this worker first) may be closed meanwhile.
        wait_for(lambda: not open_fds() - baseline, "no descriptor left over")
        assert not front.errors


def test_cancelling_the_session_closes_both_sides(tmp_path: Path) -> None:
    with front_to(tmp_path, echo) as (front, upstream), front.connect() as conn:
        conn.sendall(HELLO)
        assert recv_exactly(conn, len(READY)) == READY
        wait_for(lambda: upstream.open == 1 and len(front.early) == 1, "the relay to start")
        front.cancel_sessions()  # as when the proxy stops
        assert recv_all(conn) == b""
        wait_for(lambda: upstream.open == 0 and bool(front.errors), "the upstream to close")
        assert [type(exc) for exc in front.errors] == [asyncio.CancelledError]


def test_the_server_answers_after_the_clients_half_close(tmp_path: Path) -> None:
    payload = os.urandom(6 * 1024 * 1024)
    with front_to(tmp_path, digester) as (front, upstream), front.connect() as conn:
        conn.sendall(HELLO + payload)
        conn.shutdown(socket.SHUT_WR)
        assert recv_all(conn) == READY + hashlib.sha256(payload).digest()
        wait_for(lambda: front.finished == 1 and upstream.open == 0, "the session to end")
        assert not front.errors


def test_a_server_that_resets_mid_transfer_ends_the_session(tmp_path: Path) -> None:
    with front_to(tmp_path, resetter) as (front, _), front.connect() as conn:
        received = bytearray()
        with contextlib.suppress(ConnectionError):
            conn.sendall(HELLO + os.urandom(4 * 1024 * 1024))  # more than the server reads
        with contextlib.suppress(ConnectionError):
            received += recv_all(conn)
        assert received in (READY + b"partial", READY, b"")  # then EOF or a reset
        wait_for(lambda: front.finished == 1, "the session to end")
        assert not front.errors


def test_pump_copies_until_eof_and_counts_the_bytes() -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    source, feeder = socket.socketpair()
    sink, drain = socket.socketpair()
    with source, feeder, sink, drain, ThreadPoolExecutor(2) as pool:
        def feed() -> None:
            feeder.sendall(payload)
            feeder.shutdown(socket.SHUT_WR)

        fed = pool.submit(feed)
        moved = pool.submit(pump, source.fileno(), sink.fileno())
        assert recv_exactly(drain, len(payload)) == payload
        fed.result(TIMEOUT_S)
        assert moved.result(TIMEOUT_S) == len(payload)


def test_pump_raises_when_the_sink_is_gone() -> None:
    source, feeder = socket.socketpair()
    sink, drain = socket.socketpair()
    with source, feeder, sink:
        drain.close()
        feeder.sendall(b"nobody reads this")
        with pytest.raises(OSError) as raised:
            pump(source.fileno(), sink.fileno())
        assert raised.value.errno in (errno.EPIPE, errno.ECONNRESET)


def test_many_sessions_at_once_each_get_their_own_bytes(tmp_path: Path) -> None:
    payloads = [os.urandom(64 * 1024 + n) for n in range(200)]
    with front_to(tmp_path, echo) as (front, upstream):
        with ThreadPoolExecutor(50) as pool:
            echoed = list(pool.map(lambda p: echoed_session(front, p), payloads))
        assert echoed == [READY + payload for payload in payloads]
        wait_for(lambda: front.finished == len(payloads) and upstream.open == 0,
                 "every session to end")
        assert not front.errors


def counting_speaker(payload: bytes, sent: list[int]) -> Callable[[socket.socket], None]:
    """``speaker``, in 64 KiB pieces, counting in ``sent[0]`` what the kernel took."""
    def serve(conn: socket.socket) -> None:
        assert recv_exactly(conn, len(GREETING)) == GREETING
        conn.sendall(GREETING)
        with contextlib.suppress(ConnectionError):
            for at in range(0, len(payload), 65536):
                conn.sendall(payload[at:at + 65536])
                sent[0] = at + 65536
    return serve


def settled(value: Callable[[], int]) -> int:
    """``value()`` once it stayed the same for half a second."""
    last = value()
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        time.sleep(0.5)
        now = value()
        if now == last:
            return now
        assert time.monotonic() < deadline, "the value never settled"
        last = now


def test_a_slow_reader_holds_the_server_back_instead_of_filling_memory(tmp_path: Path) -> None:
    payload = os.urandom(64 * 1024 * 1024)
    sent = [0]
    with front_to(tmp_path, counting_speaker(payload, sent)) as (front, _), \
            socket.socket() as conn:
        # A fixed receive buffer: the kernel's autotuning (up to tcp_rmem's maximum) is
        # not what this measures.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        conn.settimeout(TIMEOUT_S)
        conn.connect(("127.0.0.1", front.port))
        conn.sendall(HELLO)
        assert recv_exactly(conn, len(READY)) == READY
        # Nothing read: what the server got out is what the sockets' buffers and the
        # relay's own buffer hold (a few MiB), not the whole payload.
        assert settled(lambda: sent[0]) < len(payload) // 2
        assert recv_all(conn) == payload  # (the front read the greeting)
        wait_for(lambda: front.finished == 1, "the session to end")
        assert not front.errors


def test_a_client_that_vanishes_mid_result_ends_the_session(tmp_path: Path) -> None:
    payload = os.urandom(64 * 1024 * 1024)
    sent = [0]
    with front_to(tmp_path, counting_speaker(payload, sent)) as (front, upstream):
        conn = front.connect()
        conn.sendall(HELLO)
        recv_exactly(conn, len(READY) + 1024 * 1024)  # a part of the result, then gone
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        wait_for(lambda: front.finished == 1 and upstream.open == 0, "both sides to close")
        assert sent[0] < len(payload)  # the server was cut off, not read to the end
        assert not front.errors


def test_sessions_that_overlap_in_every_state_keep_their_own_bytes(tmp_path: Path) -> None:
    """Idle sessions, busy ones, half-closed ones and ones that end, all at once: each
    gets exactly its own bytes, and every one ends with its upstream closed."""
    with front_to(tmp_path, digester) as (front, upstream):
        idle = [front.connect() for _ in range(20)]
        for conn in idle:
            conn.sendall(HELLO + b"idle")
        wait_for(lambda: upstream.open == len(idle), "the idle sessions to be relayed")
        payloads = [os.urandom(256 * 1024 + n) for n in range(40)]

        def half_closed(payload: bytes) -> bytes:
            with front.connect() as conn:
                conn.sendall(HELLO + payload)
                conn.shutdown(socket.SHUT_WR)
                return recv_all(conn)

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(half_closed, payloads))
        assert answers == [READY + hashlib.sha256(p).digest() for p in payloads]
        assert front.finished == len(payloads)  # the idle ones are untouched
        for conn in idle:
            conn.shutdown(socket.SHUT_WR)
            assert recv_all(conn) == READY + hashlib.sha256(b"idle").digest()
            conn.close()
        wait_for(lambda: front.finished == len(payloads) + len(idle) and upstream.open == 0,
                 "every session to end")
        assert not front.errors
