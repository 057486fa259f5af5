"""The proxy's byte relay once a session is up: per direction a thread in C, outside asyncio.

The startup and authentication run in asyncio (``strata.proxy.server``); after them both
connections are taken out of asyncio (``detach``: the bytes asyncio had already read come
along) and each direction gets a thread that runs ``strata.proxy._pump``: a blocking
recv/send loop in C that releases the GIL for the whole session, so a relayed message
costs two system calls and no Python. pgbench ``-S`` (4 clients, 2 cores, the compute on
the same machine) ran at ~14.5k TPS through the previous relay (one Python epoll thread
for every session), ~13k through two blocking Python threads per session, ~14k through
Python threads with ``os.splice``, and ~23k through this, against ~30-40k directly on
the compute's socket (docs/rfcs/0009-proxy-relay.md). What is left is the kernel's: two
more socket hops and two more wake-ups per query, on cores that pgbench and PostgreSQL
already fill.

The client's EOF is passed on as a half-close (the server still answers what it got); the
server's EOF (after its last bytes) or an error on either socket ends the session: both
sockets are shut down, which wakes the other direction, and closed once both threads
returned. The asyncio task that started the session awaits its end, so the proxy's
per-branch bookkeeping stays in the event loop; cancelling that task ends the session.
Backpressure is the kernel's: a pump blocked in ``send`` reads nothing more.

A session with undo (``strata.proxy.undo``) relays client to server with ``_pump.watch``
instead: the same C loop, following the frontend messages' framing and running a lexer
pre-filter (``strata/proxy/_suspect.c``) over each Query and Parse message, and over
the Binds of prepared statements found destructive; only a message it flags comes up
to Python (``watch``), before it is sent on.

Limits: a session costs its two descriptors, two threads (their stacks are reserved, not
used) and two 256 KiB buffers; thousands fit, and a compute's own ``max_connections``
(100) bounds one branch first. TLS sessions cannot leave asyncio (``strata.proxy.tls``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable

from strata.proxy._pump import pump
from strata.proxy._pump import watch as watch_pump

BUFFER_BYTES = 256 * 1024  # what one read of TLS sessions asks asyncio for
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# Gets each message the pump held (a Query or Parse the pre-filter flagged, a Bind of a
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
    raw = transport.get_extra_info("socket")
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    # Closes asyncio's descriptor (the duplicate keeps the connection) before the buffer
    # is read: reading it could otherwise resume the transport's reading (the reader's own
    # flow control, past 128 KiB), whose next bytes would be fed after the EOF and lost.
    transport.abort()
    reader.feed_eof()
    early = await reader.read()  # returns at once: only what is buffered, then the EOF
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
    """Move bytes between ``client`` and ``server`` until the session ends, then close
    both; ``to_server`` and ``to_client`` go first. Cancelling aborts the session. With
    ``watch``, what the client sends is PostgreSQL frontend messages, from a message's
    start: ``watch`` sees the flagged ones before the server does."""
    loop = asyncio.get_running_loop()
    ended = loop.create_future()

    def notify() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(_resolve, ended)

    session = _Session(name, client, server, notify, watch)
    session.start(to_server, to_client)
    try:
        await ended
    except asyncio.CancelledError:
        session.abort()  # the pumps wake, return and close both sockets
        raise


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Session:
    """One relayed connection: a pump thread client to server (up), one server to client
    (down); the sockets are closed by whichever thread returns last."""

    def __init__(self, name: str, client: socket.socket, server: socket.socket,
                 notify: Callable[[], None], watch: Watch | None = None) -> None:
        self.name = name
        self._watch = watch
        self.client = client
        self.server = server
        self._notify = notify
        self._running = 0
        self._closed = False
        self._lock = threading.Lock()  # the sockets are shut down only while still open

    def start(self, to_server: bytes, to_client: bytes) -> None:
        """Both pumps, each sending what came first. If no thread can start (RuntimeError),
        the session is over: both sockets are closed and the owner is not told."""
        for sock in (self.client, self.server):
            sock.setblocking(True)
        with contextlib.suppress(OSError):  # a unix socket has no Nagle to turn off
            self.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = threading.Thread(target=self._run, args=(
            self._up if self._watch is None else self._up_watched, to_server),
                              name=f"{self.name} up", daemon=True)
        down = threading.Thread(target=self._run, args=(self._down, to_client),
                                name=f"{self.name} down", daemon=True)
        self._running = 2
        try:
            up.start()
        except BaseException:
            self._closed = True
            self.client.close()
            self.server.close()
            raise
        try:
            down.start()
        except BaseException:
            self.abort()  # the up pump returns and, being the last, closes both sockets
            self._finished()
            raise

    def _up(self, first: bytes) -> None:
        """The client's bytes to the server; its EOF becomes the server's half-close. A
        server gone (EPIPE) ends only this direction: the down one still delivers what
        the server said last (a FATAL error, say), then ends the session at its EOF."""
        with contextlib.suppress(BrokenPipeError):
            if first:
                self.server.sendall(first)
            pump(self.client.fileno(), self.server.fileno())
            self.server.shutdown(socket.SHUT_WR)

    def _up_watched(self, first: bytes) -> None:
        """``_up``, with each message the pre-filter flags shown to the watch first."""
        assert self._watch is not None
        pending, skip, names = first, 0, b""
        with contextlib.suppress(BrokenPipeError):
            while True:
                held, pending, skip = watch_pump(self.client.fileno(), self.server.fileno(),
                                                 pending, skip, names)
                if held is None:
                    break
                try:
                    names = self._watch(held, skip == 0)
                except Exception:  # a bug in the watch costs an undo, never the session
                    log.exception("%s: the watch failed; the statement goes on", self.name)
                self.server.sendall(held)
            self.server.shutdown(socket.SHUT_WR)

    def _down(self, first: bytes) -> None:
        """The server's bytes to the client; its EOF ends the session."""
        self.client.sendall(first)
        pump(self.server.fileno(), self.client.fileno())
        self.abort()

    def _run(self, direction: Callable[[bytes], None], first: bytes) -> None:
        try:
            direction(first)
        except OSError as exc:
            log.debug("%s ended: %s", self.name, exc)
            self.abort()
        except Exception:
            log.exception("%s failed", self.name)  # a bug: this session only
            self.abort()
        finally:
            self._finished()

    def abort(self) -> None:
        """Shut both sockets down: each pump's recv or send returns at once."""
        with self._lock:
            if self._closed:
                return
            for sock in (self.client, self.server):
                with contextlib.suppress(OSError):  # not connected any more
                    sock.shutdown(socket.SHUT_RDWR)

    def _finished(self) -> None:
        """A pump returned; the last one closes both sockets and tells the owner."""
        with self._lock:
            self._running -= 1
            if self._running > 0:
                return
            self._closed = True
            self.client.close()
            self.server.close()
        self._notify()
