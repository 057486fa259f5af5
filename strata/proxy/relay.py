"""The proxy's byte relay once a session is up: two blocking threads, no Python per message.

The startup and authentication run in asyncio (``strata.proxy.server``); after them, every
message of the session would cost asyncio's stream and future machinery, which capped
``pgbench -S`` through the proxy at about a third of the compute's rate. So both
connections are taken out of asyncio (``detach``: the bytes asyncio had already read come
along) and handed to two threads, one per direction, each a ``recv_into``/``sendall``
loop on a blocking socket: per message, two system calls with the GIL released.

Ends: the client's EOF is passed on as a half-close (the server still answers what it
got); the server's EOF or any error on either socket ends the session, both sockets are
shut down, then closed once both threads are out. The asyncio task that started the
session awaits its end, so the proxy's per-branch bookkeeping stays in the event loop;
cancelling that task aborts the session.

Limits: two threads per session and about 150 KB of memory (two 64 KB buffers, the
stacks' touched pages); hundreds of sessions are fine (a test runs 64 at once), and a
compute's own ``max_connections`` (100) bounds one branch first; the hard bound is the
OS thread limit (``ulimit -u``, ``kernel.threads-max``). A session whose threads cannot
start is closed and the error logged; the proxy goes on serving the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable

BUFFER_BYTES = 64 * 1024  # per direction: one read takes what the kernel holds, mostly
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
log = logging.getLogger("strata.proxy")


async def detach(reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> tuple[socket.socket, bytes]:
    """Take a connection away from asyncio: a blocking socket, and the bytes asyncio had
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
    sock.setblocking(True)
    return sock, early


async def relay_streams(client: Streams, server: Streams, name: str = "relay") -> None:
    """``detach`` both connections from asyncio, then ``relay`` between them."""
    client_socket, to_server = await detach(*client)
    try:
        server_socket, to_client = await detach(*server)
    except BaseException:
        client_socket.close()
        raise
    await relay(client_socket, server_socket, to_server=to_server, to_client=to_client,
                name=name)


async def relay(client: socket.socket, server: socket.socket, *, to_server: bytes = b"",
                to_client: bytes = b"", name: str = "relay") -> None:
    """Move bytes between ``client`` and ``server`` until the session ends, then close
    both; ``to_server`` and ``to_client`` go first. Cancelling aborts the session."""
    loop = asyncio.get_running_loop()
    ended = loop.create_future()

    def notify() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(_resolve, ended)

    session = _Session(client, server, notify)
    session.start(to_server, to_client, name)
    try:
        await ended
    except asyncio.CancelledError:
        session.abort()
        raise


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Session:
    """Both directions of one relayed connection; the last one out closes the sockets."""

    def __init__(self, client: socket.socket, server: socket.socket,
                 notify: Callable[[], None]) -> None:
        self._client = client
        self._server = server
        self._notify = notify
        self._lock = threading.Lock()  # abort from outside vs close: never a reused fd
        self._running = 2
        self._closed = False

    def start(self, to_server: bytes, to_client: bytes, name: str) -> None:
        """One thread per direction; if the OS gives none, the session is closed and
        ConnectionAbortedError raised."""
        try:
            threading.Thread(target=self._server_to_client, args=(to_client,), name=name,
                             daemon=True).start()
        except RuntimeError as exc:
            self._client.close()
            self._server.close()
            raise _no_thread(name, exc) from exc
        try:
            threading.Thread(target=self._client_to_server, args=(to_server,),
                             name=f"{name} up", daemon=True).start()
        except RuntimeError as exc:  # the other direction ends on the abort and cleans up
            self.abort()
            self._finished()
            raise _no_thread(name, exc) from exc

    def _server_to_client(self, to_client: bytes) -> None:
        try:
            _pump(self._server, self._client, to_client)
        finally:
            self.abort()  # the server is done (or failed): the session is over
            self._finished()

    def _client_to_server(self, to_server: bytes) -> None:
        try:
            if _pump(self._client, self._server, to_server):
                _shutdown(self._server, socket.SHUT_WR)  # the client is done sending
            else:
                self.abort()
        finally:
            self._finished()

    def abort(self) -> None:
        """Wake both directions: their reads return EOF, their writes fail."""
        with self._lock:
            if not self._closed:
                _shutdown(self._client, socket.SHUT_RDWR)
                _shutdown(self._server, socket.SHUT_RDWR)

    def _finished(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running:
                return
            self._closed = True
            self._client.close()
            self._server.close()
        self._notify()


def _no_thread(name: str, exc: RuntimeError) -> ConnectionAbortedError:
    log.warning("%s: session closed, no thread to relay it: %s", name, exc)
    return ConnectionAbortedError(f"no thread to relay the session: {exc}")


def _pump(source: socket.socket, sink: socket.socket, first: bytes) -> bool:
    """Copy ``first`` then ``source`` to ``sink`` until EOF (True) or an error (False)."""
    buffer = bytearray(BUFFER_BYTES)
    view = memoryview(buffer)
    try:
        if first:
            sink.sendall(first)
        while received := source.recv_into(buffer):
            sink.sendall(view[:received])
    except OSError:
        return False
    return True


def _shutdown(sock: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):  # not connected any more: nothing to wake
        sock.shutdown(how)
