"""The relay's watched client-to-server pump (``_pump.watch`` under ``relay(watch=...)``)
with real sockets: frontend messages cut at random places arrive unchanged and in order,
and exactly the Query and Parse messages the pre-filter flags reach the watch, each
before the server has any byte of it (what was sent before it may still be in flight)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading

from strata.proxy.relay import relay
from strata.proxy.undo import query_of
from tests.unit.test_proxy_relay import recv_exactly

TIMEOUT_S = 30.0


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def query(sql: str) -> bytes:
    return message(b"Q", sql.encode() + b"\0")


def parse(sql: str, name: str = "") -> bytes:
    return message(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + b"\0\0")


def session_bytes() -> tuple[bytes, list[bytes]]:
    """A client's stream and the messages of it that must be flagged, in order."""
    flagged = [query("DROP TABLE a"), parse("DELETE FROM b", "s1"),
               query("SELECT 1; TRUNCATE c"), query("UPDATE big SET x = '" + "y" * 300_000 + "'")]
    harmless = [query("SELECT 1"), parse("DELETE FROM b WHERE id = $1"),
                message(b"B", b"\0\0\0\0\0\0\0"), message(b"E", b"\0\0\0\0\0"),
                message(b"S", b""), message(b"d", b"DROP TABLE in copy data " * 1000),
                query("UPDATE t SET x = 1 WHERE id = 2")]
    stream = [*harmless[:3], flagged[0], *harmless[3:5], flagged[1], harmless[5], flagged[2],
              harmless[6], flagged[3], harmless[0]]
    return b"".join(stream), flagged


def relayed(stream: bytes, prepared: bytes = b"") -> tuple[bytes, list[tuple[bytes, bool, int]]]:
    """What the server received of ``stream`` sent through a watched relay in random
    pieces, and what the watch saw: each message, whether whole, and how many bytes the
    server had received when the watch was called. The watch answers ``prepared``: the
    statements whose Binds to hold after the first held message."""
    client_end, proxy_client = socket.socketpair()
    proxy_server, server_end = socket.socketpair()
    received = bytearray()
    seen: list[tuple[bytes, bool, int]] = []  # message, whole, bytes the server had then
    lock = threading.Lock()

    def read_server() -> None:
        while chunk := server_end.recv(65536):
            with lock:
                received.extend(chunk)
        server_end.shutdown(socket.SHUT_WR)  # the server's end ends the session

    def watch(held: bytes, whole: bool) -> bytes:
        with lock:
            seen.append((held, whole, len(received)))
        return prepared

    def write_client() -> None:
        cuts = random.Random(7)
        at = 0
        while at < len(stream):
            step = cuts.choice([1, 3, 5, 17, 4096, 70_000])
            client_end.sendall(stream[at:at + step])
            at += step
        client_end.shutdown(socket.SHUT_WR)

    reader = threading.Thread(target=read_server)
    writer = threading.Thread(target=write_client)
    reader.start()
    writer.start()
    try:
        asyncio.run(asyncio.wait_for(relay(proxy_client, proxy_server, watch=watch),
                                     TIMEOUT_S))
    finally:
        writer.join(TIMEOUT_S)
        reader.join(TIMEOUT_S)
        client_end.close()
        server_end.close()
    return bytes(received), seen


def test_flagged_messages_reach_the_watch_before_the_server() -> None:
    stream, flagged = session_bytes()
    received, seen = relayed(stream)
    assert received == stream
    assert [held for held, _, _ in seen] == flagged
    assert all(whole for _, whole, _ in seen)
    for held, _, had in seen:
        assert had <= stream.index(held)  # the server had nothing of it yet


def test_a_message_over_16_mib_is_shown_in_part_and_relayed_whole() -> None:
    huge = query("INSERT INTO t VALUES ('" + "z" * (17 << 20) + "')")
    stream = query("SELECT 1") + huge + query("DROP TABLE t")
    received, seen = relayed(stream)
    assert received == stream
    [(head, whole, had), (last, _, _)] = seen
    assert not whole and huge.startswith(head) and had <= len(query("SELECT 1"))
    assert last == query("DROP TABLE t")


def bind(statement: str) -> bytes:
    return message(b"B", b"portal\0" + statement.encode() + b"\0\0\0\0\0\0\0")


def test_binds_of_watched_prepared_statements_are_held() -> None:
    stream = (bind("s1") + parse("DELETE FROM t", "s1") + bind("s1") + bind("")
              + bind("s10") + parse("SELECT 1", "s1"))
    received, seen = relayed(stream, prepared=b"\0s1\0")
    assert received == stream
    # Before the watch named s1 nothing holds its Bind; after, its Binds and a Parse that
    # defines it again are held, other statements' are not.
    assert [held for held, _, _ in seen] == [parse("DELETE FROM t", "s1"), bind("s1"),
                                             parse("SELECT 1", "s1")]


def test_query_text_of_query_and_parse_messages() -> None:
    assert query_of(query("DROP TABLE t")) == "DROP TABLE t"
    assert query_of(parse("DELETE FROM t", "name")) == "DELETE FROM t"


def test_a_held_statement_stalls_only_its_own_session() -> None:
    """While the watch of one session waits (as for the page server), other sessions on
    the relay go on; the held one resumes, in order, once its watch returns."""
    looked = threading.Event()
    go_on = threading.Event()

    def slow_watch(held: bytes, whole: bool) -> bytes:
        looked.set()
        assert go_on.wait(TIMEOUT_S)
        return b""

    held_client, held_proxy = socket.socketpair()
    held_upstream, held_server = socket.socketpair()
    free_client, free_proxy = socket.socketpair()
    free_upstream, free_server = socket.socketpair()
    drop_then_select = query("DROP TABLE t") + query("SELECT 1")

    async def both() -> None:
        held = asyncio.ensure_future(relay(held_proxy, held_upstream, watch=slow_watch))
        free = asyncio.ensure_future(relay(free_proxy, free_upstream,
                                           watch=lambda held, whole: b""))
        await asyncio.gather(held, free)

    def sessions_run() -> None:
        held_client.sendall(drop_then_select)
        assert looked.wait(TIMEOUT_S)
        for _ in range(100):  # the other session, round trips through the relay
            free_client.sendall(query("SELECT 1"))
            assert free_server.recv(65536) == query("SELECT 1")
            free_server.sendall(b"answer")
            assert free_client.recv(65536) == b"answer"
        held_server.settimeout(0.2)
        with contextlib.suppress(TimeoutError):
            assert held_server.recv(65536) == b""  # (never taken: nothing got through)
        go_on.set()
        held_server.settimeout(TIMEOUT_S)
        assert recv_exactly(held_server, len(drop_then_select)) == drop_then_select
        for server in (held_server, free_server):
            server.shutdown(socket.SHUT_WR)

    driver = threading.Thread(target=sessions_run)
    driver.start()
    try:
        asyncio.run(asyncio.wait_for(both(), TIMEOUT_S))
    finally:
        go_on.set()
        driver.join(TIMEOUT_S)
        for sock in (held_client, held_server, free_client, free_server):
            sock.close()
    for relayed_socket in (held_proxy, held_upstream, free_proxy, free_upstream):
        assert relayed_socket.fileno() == -1  # closed by the relay at the session's end


def test_a_client_gone_while_its_statement_is_held_ends_the_session() -> None:
    looked = threading.Event()
    go_on = threading.Event()

    def watch(held: bytes, whole: bool) -> bytes:
        looked.set()
        assert go_on.wait(TIMEOUT_S)
        return b""

    client_end, proxy_client = socket.socketpair()
    proxy_server, server_end = socket.socketpair()

    received = bytearray()

    def vanish() -> None:
        client_end.sendall(query("TRUNCATE t"))
        looked.wait(TIMEOUT_S)
        client_end.close()
        go_on.set()
        # As PostgreSQL: whatever reached it, then EOF; it closes.
        while chunk := server_end.recv(65536):
            received.extend(chunk)
        server_end.close()

    driver = threading.Thread(target=vanish)
    driver.start()
    try:
        asyncio.run(asyncio.wait_for(relay(proxy_client, proxy_server, watch=watch),
                                     TIMEOUT_S))
    finally:
        go_on.set()
        driver.join(TIMEOUT_S)
        server_end.close()
    assert looked.is_set()
    assert proxy_client.fileno() == -1 and proxy_server.fileno() == -1
    # The statement of a client that is gone may be delivered or dropped (the two ends
    # close in either order), but never in part.
    assert bytes(received) in (b"", query("TRUNCATE t"))
