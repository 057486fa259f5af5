"""Undo's watch in Python for TLS sessions (``strata.proxy.frontend_watch``), over real
sockets and asyncio streams: the same client streams as the C pump's tests, cut at random
places, arrive unchanged, and the watch sees exactly the messages ``_pump.watch`` holds,
each before the server has any byte of it."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from strata.proxy.frontend_watch import Framing, relay_watched
from tests.unit.test_proxy_watch import (
    TIMEOUT_S,
    bind,
    message,
    parse,
    query,
    relayed,
    session_bytes,
)

Seen = list[tuple[bytes, bool, int]]


def relayed_in_python(stream: bytes, prepared: bytes = b"") -> tuple[bytes, Seen]:
    """``relayed`` of test_proxy_watch, through ``relay_watched`` instead of the C pump."""
    async def run() -> tuple[bytes, Seen]:
        client_end, proxy_client = socket.socketpair()
        proxy_server, server_end = socket.socketpair()
        received = bytearray()
        seen: Seen = []

        def watch(held: bytes, whole: bool) -> bytes:
            seen.append((held, whole, len(received)))
            return prepared

        async def read_server() -> None:
            reader, writer = await asyncio.open_connection(sock=server_end)
            while chunk := await reader.read(65536):
                received.extend(chunk)
            writer.close()

        async def write_client() -> None:
            reader, writer = await asyncio.open_connection(sock=client_end)
            cuts, at = random.Random(7), 0
            while at < len(stream):
                step = cuts.choice([1, 3, 5, 17, 4096, 70_000])
                writer.write(stream[at:at + step])
                await writer.drain()
                at += step
            writer.write_eof()
            await reader.read()  # the proxy's side stays open until the relay is done

        async def relayed_then_closed() -> None:
            await relay_watched(reader, writer, watch)
            client_side.close()

        reader, client_side = await asyncio.open_connection(sock=proxy_client)
        _server_side, writer = await asyncio.open_connection(sock=proxy_server)
        try:
            await asyncio.wait_for(asyncio.gather(
                read_server(), write_client(), relayed_then_closed()), TIMEOUT_S)
        finally:
            for sock in (client_end, proxy_client, proxy_server, server_end):
                sock.close()
        return bytes(received), seen
    return asyncio.run(run())


STREAMS = {  # a client's stream, the prepared statements the watch names, holds expected
    "session": (session_bytes()[0], b"", 4),
    "huge": (query("SELECT 1") + query("INSERT INTO t VALUES ('" + "z" * (17 << 20) + "')")
             + query("DROP TABLE t"), b"", 2),
    "binds": (bind("s1") + parse("DELETE FROM t", "s1") + bind("s1") + bind("")
              + bind("s10") + parse("SELECT 1", "s1"), b"\0s1\0", 3),
    "prepared in SQL": (query("PREPARE wipe AS DELETE FROM t") + query("SELECT 1")
                        + query("EXECUTE wipe") + bind("wipe") + query("DEALLOCATE wipe"),
                        b"\0wipe\0", 4),
    # a declared length under 4: the rest is relayed unlooked at, the DROP too
    "not a message": (query("DROP TABLE a") + b"X\0\0\0\1" + query("DROP TABLE t"), b"", 1),
}


def positions(stream: bytes, seen: Seen) -> list[tuple[int, bool]]:
    """Where in ``stream`` each held message starts, and whether it was shown whole (one
    shown in part is a prefix of its message: how long depends on what had arrived)."""
    found, after = [], 0
    for held, whole, had in seen:
        at = stream.index(held, after)
        assert had <= at  # the server had nothing of it yet
        found.append((at, whole))
        after = at + 1
    return found


@pytest.mark.parametrize("name", STREAMS)
def test_python_holds_back_what_the_c_pump_holds_back(name: str) -> None:
    stream, prepared, holds = STREAMS[name]
    in_c, seen_c = relayed(stream, prepared)
    in_python, seen_python = relayed_in_python(stream, prepared)
    assert in_c == in_python == stream
    assert len(seen_python) == holds
    assert positions(stream, seen_python) == positions(stream, seen_c)


def test_framing_passes_what_is_not_looked_at_without_waiting_for_its_end() -> None:
    framing = Framing()
    copy = message(b"d", b"x" * 1000)
    framing.feed(query("SELECT 1") + copy[:10])
    assert framing.next(b"") == (query("SELECT 1") + copy[:10], None, False)
    framing.feed(copy[10:] + query("DROP TABLE t")[:7])
    assert framing.next(b"") == (copy[10:], None, False)  # the Query waits to be whole
    framing.feed(query("DROP TABLE t")[7:])
    assert framing.next(b"") == (b"", query("DROP TABLE t"), True)
