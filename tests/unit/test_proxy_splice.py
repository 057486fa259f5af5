"""Sessions whose server-to-client bytes the kernel redirects (``strata.proxy.splice``):
large results to slow clients that end with the server's close, ping-pong, both ways of
ending, the hand-off when the server speaks first, the undo watch on the other direction.
Every test checks that its sessions really were spliced; without BPF (not root, an old
kernel) they are skipped: the pump's own tests cover that relay."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from strata.proxy import splice
from strata.proxy.relay import relay
from strata.proxy.splice import Spliced
from tests.unit.test_proxy_relay import (
    GREETING,
    HELLO,
    READY,
    TIMEOUT_S,
    Front,
    digester,
    echo,
    front_to,
    recv_all,
    recv_exactly,
    wait_for,
)
from tests.unit.test_proxy_watch import query


@pytest.fixture(autouse=True)
def joined(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Per session that reached the relay, whether it joined the splice."""
    monkeypatch.setenv(splice.RELAY_ENV, "splice")
    splice.unavailable.cache_clear()
    reason = splice.unavailable()
    if reason is not None:
        pytest.skip(f"no kernel splice here: {reason}")
    outcomes: list[bool] = []
    join = Spliced.join

    def recorded(server: socket.socket, client: socket.socket) -> Spliced | None:
        session = join(server, client)
        outcomes.append(session is not None)
        return session

    monkeypatch.setattr(Spliced, "join", staticmethod(recorded))
    yield outcomes
    splice.unavailable.cache_clear()


def on_request(payload: bytes) -> Callable[[socket.socket], None]:
    """Echoes the greeting, then, once the client asks (one byte), sends ``payload`` and
    closes: the server is idle when the session joins."""
    def serve(conn: socket.socket) -> None:
        conn.sendall(recv_exactly(conn, len(GREETING)))
        recv_exactly(conn, 1)
        with contextlib.suppress(ConnectionError):  # a client that left
            conn.sendall(payload)
    return serve


def slow_reader(front: Front, payload_size: int) -> bytes:
    """A client with a small receive buffer that asks for the result and reads it slowly,
    so the kernel's redirect queue is full when the server closes."""
    with socket.socket() as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        conn.settimeout(TIMEOUT_S)
        conn.connect(("127.0.0.1", front.port))
        conn.sendall(HELLO + b"?")
        data = bytearray()
        while chunk := conn.recv(16 * 1024):
            data += chunk
            if len(data) % (256 * 1024) < len(chunk):
                time.sleep(0.002)
        assert len(data) >= len(READY) + payload_size, "bytes lost"
        return bytes(data)


def test_large_results_to_slow_clients_arrive_whole_after_the_server_closes(
        tmp_path: Path, joined: list[bool]) -> None:
    payload = os.urandom(4 * 1024 * 1024)
    sessions = 24
    with front_to(tmp_path, on_request(payload)) as (front, upstream):
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: slow_reader(front, len(payload)),
                                    range(sessions)))
        assert results == [READY + payload] * sessions  # 0 bytes lost, none reordered
        wait_for(lambda: front.finished == sessions and upstream.open == 0,
                 "every session to end")
        assert joined == [True] * sessions
        assert not front.errors


def test_ping_pong_keeps_every_answer_in_order(tmp_path: Path, joined: list[bool]) -> None:
    with front_to(tmp_path, echo) as (front, upstream), front.connect() as conn:
        conn.sendall(HELLO)
        assert recv_exactly(conn, len(READY)) == READY
        for n in range(2000):
            message = f"ping {n}".encode() * (1 + n % 7)
            conn.sendall(message)
            assert recv_exactly(conn, len(message)) == message
        conn.shutdown(socket.SHUT_WR)  # the client ends it: the server's EOF follows
        assert recv_all(conn) == b""
        wait_for(lambda: front.finished == 1 and upstream.open == 0, "the session to end")
        assert joined == [True]


def test_the_server_answers_after_the_clients_half_close(tmp_path: Path,
                                                         joined: list[bool]) -> None:
    payload = os.urandom(6 * 1024 * 1024)
    with front_to(tmp_path, digester) as (front, upstream), front.connect() as conn:
        conn.sendall(HELLO + payload)
        conn.shutdown(socket.SHUT_WR)
        assert recv_all(conn) == READY + hashlib.sha256(payload).digest()
        wait_for(lambda: front.finished == 1 and upstream.open == 0, "the session to end")
        assert joined == [True]
        assert not front.errors


def test_a_client_gone_mid_result_ends_the_session(tmp_path: Path, joined: list[bool]) -> None:
    with front_to(tmp_path, on_request(os.urandom(64 * 1024 * 1024))) as (front, upstream):
        conn = front.connect()
        conn.sendall(HELLO + b"?")
        recv_exactly(conn, len(READY) + 1024 * 1024)
        conn.close()  # unread data: a reset
        wait_for(lambda: front.finished == 1 and upstream.open == 0, "both sides to close")
        assert joined == [True]


def test_a_server_that_speaks_first_is_relayed_in_order(tmp_path: Path,
                                                        joined: list[bool]) -> None:
    """Bytes the server sent before the join are never overtaken: such a session is not
    spliced (or, if they came while it joined, ended), never reordered."""
    payload = os.urandom(256 * 1024)
    delays = iter([0.0, 0.0005, 0.001, 0.002, 0.005, 0.02] * 4)

    def eager(conn: socket.socket) -> None:
        conn.sendall(recv_exactly(conn, len(GREETING)))
        time.sleep(next(delays))  # before, while or after the relay starts
        conn.sendall(payload)

    cut = 0
    with front_to(tmp_path, eager) as (front, _):
        for _ in range(24):
            with front.connect() as conn:
                conn.sendall(HELLO)
                received = b""
                with contextlib.suppress(ConnectionError):
                    received = recv_all(conn)
                if received != READY + payload:
                    assert received in (READY, b"")  # ended, never a torn or swapped payload
                    cut += 1
        wait_for(lambda: front.finished + len(front.errors) == 24, "every session to end")
        assert [type(exc) for exc in front.errors] == [splice.HandOffLost] * cut
        assert True in joined  # the later ones joined, the payload then redirected


def test_the_undo_watch_holds_statements_of_a_spliced_session(joined: list[bool]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client_end = socket.create_connection(listener.getsockname())
        proxy_client, _ = listener.accept()
    proxy_server, server_end = socket.socketpair()
    received = bytearray()
    seen: list[tuple[bytes, int]] = []
    lock = threading.Lock()

    def serve() -> None:  # answers every chunk with its length, in 4 bytes
        while chunk := server_end.recv(65536):
            with lock:
                received.extend(chunk)
            server_end.sendall(len(chunk).to_bytes(4, "big"))
        server_end.close()

    def watch(held: bytes, whole: bool) -> bytes:
        with lock:
            seen.append((held, len(received)))
        return b""

    harmless, destructive = query("SELECT 1"), query("DROP TABLE a")
    server = threading.Thread(target=serve)
    server.start()
    try:
        async def session() -> None:
            relayed = asyncio.ensure_future(relay(proxy_client, proxy_server, watch=watch))
            loop = asyncio.get_running_loop()
            answers = bytearray()

            def talk() -> None:
                for message in (harmless, destructive, harmless):
                    client_end.sendall(message)
                    answers.extend(recv_exactly(client_end, 4))
                client_end.shutdown(socket.SHUT_WR)
                assert recv_all(client_end) == b""

            await loop.run_in_executor(None, talk)
            await asyncio.wait_for(relayed, TIMEOUT_S)
            assert int.from_bytes(answers[4:8], "big") == len(destructive)

        asyncio.run(session())
    finally:
        server.join(TIMEOUT_S)
        client_end.close()
    assert seen == [(destructive, len(harmless))]  # held before the server had any of it
    assert bytes(received) == harmless + destructive + harmless
    assert joined == [True]


def test_a_process_without_bpf_relays_with_the_pump_and_says_so() -> None:
    """Without CAP_BPF (here: the same interpreter as an unprivileged user) loading fails,
    and the log line names the pump and why."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
         "from strata.proxy import splice; print(splice.describe())"],
        capture_output=True, text=True, cwd=root,
        env={"PYTHONPATH": str(root), splice.RELAY_ENV: "splice"},
        timeout=TIMEOUT_S, check=True)
    assert done.stdout.startswith("pump threads for every session (no kernel splice: BPF ")
    assert "Operation not permitted" in done.stdout


def test_the_relay_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pump unless STRATA_PROXY_RELAY=splice (measured no faster: RFC 0009)."""
    for unset_or_pump in (None, "pump"):
        if unset_or_pump is None:
            monkeypatch.delenv(splice.RELAY_ENV)
        else:
            monkeypatch.setenv(splice.RELAY_ENV, unset_or_pump)
        splice.unavailable.cache_clear()
        assert splice.describe() == ("pump threads for every session (no kernel splice: "
                                     "STRATA_PROXY_RELAY is not 'splice')")
    monkeypatch.setenv(splice.RELAY_ENV, "fast")
    splice.unavailable.cache_clear()
    assert "'fast' is neither 'pump' nor 'splice'" in splice.describe()
    monkeypatch.setenv(splice.RELAY_ENV, "splice")
    splice.unavailable.cache_clear()
    assert splice.describe().startswith("kernel splice (BPF sockmap)")
