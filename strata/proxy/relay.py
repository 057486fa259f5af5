"""The proxy's byte relay once a session is up: one epoll thread, outside asyncio.

The startup and authentication run in asyncio (``strata.proxy.server``); after them, every
message of the session would cost asyncio's stream and future machinery, which capped
``pgbench -S`` through the proxy at about a third of the compute's rate. So both
connections are taken out of asyncio (``detach``: the bytes asyncio had already read come
along) and handed to the relay thread: a level-triggered epoll loop over every session's
two non-blocking sockets, per message one ``recv_into`` and one ``send`` and no objects
made. Under load one ``poll`` serves many sessions, with no thread to wake and no GIL
handed over per message: ``pgbench -S`` (4 clients, 2 cores) against a local PostgreSQL
at ~47k TPS ran at ~21k through this, ~18k through two blocking threads per session,
~13k through asyncio streams, and ~29k through the same two-thread relay written in C:
any relay's extra hops cost that much on a machine whose cores pgbench and PostgreSQL
already fill.

A direction reads its source only once its sink took everything (backpressure); the
client's EOF is passed on as a half-close (the server still answers what it got); the
server's EOF (after its last bytes) or an error on either socket ends the session and
closes both. The asyncio task that started the session awaits its end, so the proxy's
per-branch bookkeeping stays in the event loop; cancelling that task ends the session.

Limits: a session costs its two descriptors and whatever its sink has not taken yet;
thousands fit (the bound is ``ulimit -n``), and a compute's own ``max_connections``
(100) bounds one branch first. One thread relays everything: about one core of Python,
which the 2-core machines this runs on do not exceed. An error in one session ends that
session only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import select
import socket
import threading
from collections.abc import Callable
from functools import partial

BUFFER_BYTES = 256 * 1024  # one for the relay thread: a read takes what the kernel holds
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
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

    client.setblocking(False)
    server.setblocking(False)
    session = _Session(name, client, server, to_server, to_client, notify)
    try:
        relayer = _Relayer.shared()
    except (OSError, RuntimeError):  # no descriptor or thread for the relay itself
        client.close()
        server.close()
        raise
    relayer.submit(partial(relayer.add, session))
    try:
        await ended
    except asyncio.CancelledError:
        relayer.submit(partial(relayer.end, session))
        raise


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Direction:
    """Bytes from ``source`` to ``sink``: what the sink has not taken yet, and the EOF."""

    __slots__ = ("eof", "pending", "sink", "source")

    def __init__(self, source: socket.socket, sink: socket.socket, first: bytes) -> None:
        self.source = source
        self.sink = sink
        self.pending = memoryview(first) if first else None
        self.eof = False  # the source is done; once ``pending`` is sent, the EOF acts

    def reading(self) -> bool:
        """Read the source only once the sink took everything: that is the backpressure."""
        return self.pending is None and not self.eof


class _Session:
    """One relayed connection: client to server (``up``) and server to client (``down``)."""

    def __init__(self, name: str, client: socket.socket, server: socket.socket,
                 to_server: bytes, to_client: bytes, notify: Callable[[], None]) -> None:
        self.name = name
        self.client = client
        self.server = server
        self.fds = (client.fileno(), server.fileno())
        self.up = _Direction(client, server, to_server)
        self.down = _Direction(server, client, to_client)
        self.notify = notify
        self.ended = False

    def interest(self, fd: int) -> int:
        """The epoll events the session waits for on ``fd``."""
        leaving, arriving = (self.up, self.down) if fd == self.fds[0] else (self.down, self.up)
        return ((select.EPOLLIN if leaving.reading() else 0)
                | (select.EPOLLOUT if arriving.pending is not None else 0))


class _Relayer:
    """The relay thread: one epoll loop over every session's two sockets."""

    _instance: _Relayer | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def shared(cls) -> _Relayer:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._wakeup = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wakeup, select.EPOLLIN)
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._sessions: dict[int, _Session] = {}  # by either of its descriptors
        self._masks: dict[int, int] = {}  # what each registered descriptor waits for
        self._buffer = bytearray(BUFFER_BYTES)
        self._view = memoryview(self._buffer)
        threading.Thread(target=self._run, name="strata relay", daemon=True).start()

    def submit(self, command: Callable[[], None]) -> None:
        """Run ``command`` in the relay thread (which owns every session's state)."""
        self._commands.put(command)
        os.eventfd_write(self._wakeup, 1)

    def add(self, session: _Session) -> None:
        for fd in session.fds:
            self._sessions[fd] = session
        self._serve(session, session.fds[0], 0)  # sends what came first, then watches

    def end(self, session: _Session) -> None:
        """Close both sockets (what the kernel holds still goes out) and tell the owner."""
        if session.ended:
            return
        session.ended = True
        for fd in session.fds:
            if self._masks.pop(fd, 0):
                self._epoll.unregister(fd)
            self._sessions.pop(fd, None)
        session.client.close()
        session.server.close()
        session.notify()

    def _run(self) -> None:
        while True:
            for fd, events in self._epoll.poll():
                if fd == self._wakeup:
                    os.eventfd_read(self._wakeup)
                    while not self._commands.empty():
                        self._commands.get()()  # add and end: they never raise
                elif (session := self._sessions.get(fd)) is not None:
                    self._serve(session, fd, events)

    def _serve(self, session: _Session, fd: int, events: int) -> None:
        """Move what ``events`` on ``fd`` allow; any error ends this session only."""
        leaving, arriving = ((session.up, session.down) if fd == session.fds[0]
                             else (session.down, session.up))
        try:
            if arriving.pending is not None and events & (select.EPOLLOUT | _TROUBLE):
                self._flush(session, arriving)
            if not session.ended and leaving.reading() and events & (select.EPOLLIN | _TROUBLE):
                self._read(session, leaving)
            if not session.ended:
                self._watch(session)
        except OSError as exc:
            log.debug("%s ended: %s", session.name, exc)
            self.end(session)
        except Exception:
            log.exception("%s failed", session.name)  # a bug: this session only
            self.end(session)

    def _read(self, session: _Session, direction: _Direction) -> None:
        try:
            received = direction.source.recv_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        if not received:
            direction.eof = True
            self._at_eof(session, direction)
            return
        try:
            sent = direction.sink.send(self._view[:received])
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent < received:
            direction.pending = memoryview(bytes(self._view[sent:received]))

    def _flush(self, session: _Session, direction: _Direction) -> None:
        assert direction.pending is not None
        try:
            sent = direction.sink.send(direction.pending)
        except (BlockingIOError, InterruptedError):
            return
        direction.pending = direction.pending[sent:] or None
        if direction.pending is None and direction.eof:
            self._at_eof(session, direction)

    def _at_eof(self, session: _Session, direction: _Direction) -> None:
        """The client's EOF becomes the server's half-close; the server's ends the session."""
        if direction.pending is not None:
            return  # once the sink took the rest
        if direction is session.up:
            session.server.shutdown(socket.SHUT_WR)
        else:
            self.end(session)

    def _watch(self, session: _Session) -> None:
        """Register each descriptor for what the session waits for on it, or not at all
        (epoll reports a hang-up even to a registration that asks for nothing)."""
        for fd in session.fds:
            wanted, had = session.interest(fd), self._masks.get(fd, 0)
            if wanted == had:
                continue
            if not had:
                self._epoll.register(fd, wanted)
            elif not wanted:
                self._epoll.unregister(fd)
            else:
                self._epoll.modify(fd, wanted)
            if wanted:
                self._masks[fd] = wanted
            else:
                self._masks.pop(fd, None)


_TROUBLE = select.EPOLLERR | select.EPOLLHUP
