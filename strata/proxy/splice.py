"""Server-to-client bytes of a TCP session relayed by the kernel, not by a pump thread.

``strata.proxy._splice`` attaches a BPF ``sk_skb`` verdict program to the proxy's ends of
its compute connections: what PostgreSQL sends is redirected onto the client's TCP socket
inside the kernel, with no wake-up of the proxy (docs/rfcs/0009-proxy-relay.md, "Kernel
splicing"). Three rules keep every byte, in order:

- The key is the cookie of PostgreSQL's end of the unix connection (``peer_cookie``,
  through sock_diag): for a unix skb, that is the socket the program sees.
- The hand-off: a session joins only while the server is provably idle: right after its
  ReadyForQuery, before any client byte went on, with nothing read ahead and nothing
  queued on the proxy's socket (checked before and after joining). A byte queued before
  the join would stay behind the redirected ones, so then the session is not spliced
  (queued before) or ended (queued while joining): never reordered.
- The end: a redirected message still queued for the kernel's worker is dropped when the
  client's socket closes. So at the server's EOF the proxy waits until the client's TCP
  socket has taken (acked or queued) everything: its count at the join plus what the
  program counted as redirected; only then may the session close.

Clients over the proxy's unix socket and TLS sessions are never spliced (no TCP count;
TLS needs the bytes in user space). Off by default: measured, it halves the proxy's own
CPU per transaction but not the machine's (the kernel sends a redirected skb from a
worker thread, one wake-up per message as before) and raised no throughput measurably
(RFC 0009, "Kernel splicing, built"); ``STRATA_PROXY_RELAY=splice`` turns it on. Without
BPF (not root, no CAP_BPF, an old kernel, the program refused), every session uses the
pump all the same.
"""

from __future__ import annotations

import array
import fcntl
import functools
import logging
import os
import select
import socket
import termios
import threading

from strata.proxy import _splice

RELAY_ENV = "STRATA_PROXY_RELAY"  # "pump" (default): never splice; "splice": when possible
TCP_ESTABLISHED, TCP_CLOSE_WAIT = 1, 8  # states in which a socket still sends
WAIT_MAX_S = 0.05  # the longest pause between two looks at the client's counts
log = logging.getLogger("strata.proxy")


@functools.cache
def unavailable() -> str | None:
    """Why sessions are not spliced in this process (None: they are, when possible)."""
    choice = os.environ.get(RELAY_ENV, "pump")
    if choice == "pump":
        return f"{RELAY_ENV} is not 'splice'"
    if choice != "splice":
        return f"{RELAY_ENV}={choice!r} is neither 'pump' nor 'splice'"
    try:
        _splice.load()
    except OSError as exc:
        return str(exc)
    return None


def describe() -> str:
    """The relay this process uses, for its log."""
    reason = unavailable()
    if reason is None:
        return ("kernel splice (BPF sockmap) for server-to-client bytes of TCP sessions, "
                "pump threads for the rest")
    return f"pump threads for every session (no kernel splice: {reason})"


def _queued(sock: socket.socket) -> int:
    count = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    return count[0]


class HandOffLost(ConnectionError):
    """The server sent bytes while the session joined: their order is unknowable."""


class Spliced:
    """One session whose server-to-client bytes the kernel redirects."""

    def __init__(self, server: socket.socket, client: socket.socket) -> None:
        self._server, self._client = server, client
        self._cookie = _splice.peer_cookie(server.fileno())
        self._base = _splice.written(client.fileno())[0]
        self._left = False

    @classmethod
    def join(cls, server: socket.socket, client: socket.socket) -> Spliced | None:
        """Splice an idle session (None: it cannot be, the pump relays it). Raises
        HandOffLost if the server spoke while it joined (the session must end)."""
        if unavailable() is not None or client.family not in (socket.AF_INET,
                                                                socket.AF_INET6):
            return None
        if _queued(server):
            return None
        try:
            session = cls(server, client)
            _splice.join(server.fileno(), client.fileno(), session._cookie)
        except OSError as exc:  # the maps are full, a socket went away
            log.debug("not spliced: %s", exc)
            return None
        if _queued(server):
            session.leave()
            raise HandOffLost("the server spoke while the session joined the splice")
        return session

    def wait_server_eof(self) -> None:
        """Block until the server's EOF (or a shutdown of the proxy's end), GIL released."""
        poller = select.poll()
        poller.register(self._server.fileno(), select.POLLRDHUP)
        poller.poll()

    def wait_delivered(self, stop: threading.Event) -> None:
        """Return once the client's socket has taken every redirected byte, or it cannot
        send any more, or ``stop`` is set."""
        pause = 0.0005
        while not stop.is_set():
            written, state = _splice.written(self._client.fileno())
            if written - self._base >= _splice.redirected(self._cookie):
                return
            if state not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT):
                return  # the client is gone: nothing it has not taken can reach it
            stop.wait(pause)
            pause = min(pause * 2, WAIT_MAX_S)

    def leave(self) -> None:
        """Forget the session's map entries (closing its sockets removes them too)."""
        if not self._left:
            self._left = True
            _splice.leave(self._cookie)
