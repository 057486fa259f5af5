"""The proxy's byte relay once a session is up: one C event loop for every session.

The startup and authentication run in asyncio (``strata.proxy.server``); after them both
connections are taken out of asyncio (``detach``: the bytes asyncio had already read come
along) and handed to ``strata.proxy._pump``: one thread in C for all the process's
sessions, an edge-triggered epoll over nonblocking sockets that serves every ready
socket per wake-up and never runs Python per message. pgbench ``-S`` (4 clients, 2
cores) through the earlier relays: ~14.5k TPS with one Python epoll thread, ~23-25k with
two C pump threads per session (woken per message), against ~30-48k directly on the
compute's socket; docs/rfcs/0009-proxy-relay.md has the figures of this one.

The client's EOF is passed on as a half-close (the server still answers what it got); the
server's EOF (after its last bytes) or an error on either socket ends the session: the
loop closes both sockets and reports it. The asyncio task that started the session awaits
that report, so the proxy's per-branch bookkeeping stays in the event loop; cancelling
that task ends the session. Backpressure is the kernel's: a direction whose buffer holds
unsent bytes reads nothing more from its source.

A session with undo (``strata.proxy.undo``) is relayed client to server following the
frontend messages' framing; the lexer pre-filter of ``strata/proxy/_suspect.c`` runs in
the loop over each Query and Parse message, and over the Binds of prepared statements
found destructive. Only a message it flags comes up to Python: the loop stops that
direction, a worker thread calls the session's watch, and the message goes on after it.

Limits: a session costs its two descriptors and two 256 KiB buffers (pages touched only
as they fill); a compute's own ``max_connections`` (100) bounds one branch first. TLS
sessions cannot leave asyncio (``strata.proxy.tls``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from strata.proxy import _pump

BUFFER_BYTES = 256 * 1024  # what one read of TLS sessions asks asyncio for
WATCH_THREADS = 4  # held messages looked at in parallel (each waits on the page server)
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# Gets each message the loop held (a Query or Parse the pre-filter flagged, a Bind of a
# watched prepared statement) before it goes on, and whether it is whole (False: over
# 16 MiB, only its start is given); returns the prepared statements whose Binds to hold
# from now on, as b"\0name\0name\0" (b"": none).
Watch = Callable[[bytes, bool], bytes]
log = logging.getLogger("strata.proxy")


async def detach(reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> tuple[socket.socket, bytes]:
    """Take a connection away from asyncio: its socket, and the bytes asyncio had
    read but nobody consumed yet (to be sent on first). Everything written through
    ``writer`` has reached the kernel when this returns."""
    transport = writer.transport
    if not isinstance(transport, asyncio.Transport):  # a stream over a socket is one
        raise TypeError(f"cannot detach a {type(transport).__name__}")
    transport.set_write_buffer_limits(0)  # so drain() waits until the buffer is empty
    await writer.drain()
    if transport.is_closing():
        raise ConnectionResetError("the connection closed before the relay began")
    transport.pause_reading()
    reader.feed_eof()
    early = await reader.read()  # returns at once: only what is buffered, then the EOF
    raw = transport.get_extra_info("socket")
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    transport.abort()  # closes asyncio's descriptor; the duplicate keeps the connection
    return sock, early


async def relay_streams(client: Streams, server: Streams, name: str = "relay",
                        watch: Watch | None = None) -> None:
    """``detach`` both connections from asyncio, then ``relay`` between them."""
    client_socket, to_server = await detach(*client)
    try:
        server_socket, to_client = await detach(*server)
    except BaseException:
        client_socket.close()
        raise
    await relay(client_socket, server_socket, to_server=to_server, to_client=to_client,
                name=name, watch=watch)


async def relay(client: socket.socket, server: socket.socket, *, to_server: bytes = b"",
                to_client: bytes = b"", name: str = "relay", watch: Watch | None = None) -> None:
    """Move bytes between ``client`` and ``server`` until the session ends; the loop owns
    and closes both sockets. ``to_server`` and ``to_client`` go first. Cancelling aborts
    the session. With ``watch``, what the client sends is PostgreSQL frontend messages,
    from a message's start: ``watch`` sees the flagged ones before the server does."""
    loop = asyncio.get_running_loop()
    ended = loop.create_future()
    with contextlib.suppress(OSError):  # a unix socket has no Nagle to turn off
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    session = _relay().add(client, server, to_server, to_client,
                           _Owner(name, loop, ended, watch))
    try:
        await ended
    except asyncio.CancelledError:
        _pump.abort(session)  # the loop closes both sockets
        raise


def sessions() -> int:
    """How many sessions the loop relays now."""
    return _pump.sessions()


class _Owner:
    """What the loop's reports about one session go to: the asyncio future its task
    awaits, and its watch."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop,
                 ended: asyncio.Future[None], watch: Watch | None) -> None:
        self.name = name
        self.watch = watch
        self._loop = loop
        self._ended = ended
        self.names = b""  # what the watch last answered

    def end(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            self._loop.call_soon_threadsafe(_resolve, self._ended)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Relay:
    """The process's side of the C loop: who owns each session, and a thread that takes
    the loop's reports (a session ended, a message held) to them."""

    def __init__(self) -> None:
        self._owners: dict[int, _Owner] = {}
        self._lock = threading.Lock()  # a session is known before its report can come
        self._watches = ThreadPoolExecutor(WATCH_THREADS, thread_name_prefix="relay watch")
        threading.Thread(target=self._dispatch, name="relay reports", daemon=True).start()

    def add(self, client: socket.socket, server: socket.socket, to_server: bytes,
            to_client: bytes, owner: _Owner) -> int:
        """Hand both sockets to the loop (they are its from now on)."""
        with self._lock:
            session = _pump.add(client.detach(), server.detach(), to_server, to_client,
                                owner.watch is not None)
            self._owners[session] = owner
        return session

    def _dispatch(self) -> None:
        while True:
            for session, held, whole in _pump.events():
                with self._lock:
                    owner = self._owners.get(session) if held is not None \
                        else self._owners.pop(session, None)
                if owner is None:
                    continue
                if held is None:
                    owner.end()
                else:
                    self._watches.submit(self._look, session, owner, held, whole)

    @staticmethod
    def _look(session: int, owner: _Owner, held: bytes, whole: bool) -> None:
        """The watch's look at a held message, then the message goes on."""
        assert owner.watch is not None
        try:
            owner.names = owner.watch(held, whole)
        except Exception:  # a bug in the watch costs an undo, never the session
            log.exception("%s: the watch failed; the statement goes on", owner.name)
        _pump.release(session, owner.names)


_started: _Relay | None = None
_starting = threading.Lock()


def _relay() -> _Relay:
    global _started
    with _starting:
        if _started is None:
            _started = _Relay()
        return _started
