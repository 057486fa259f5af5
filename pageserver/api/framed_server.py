"""The framed data-plane server: Ingest and GetPages over a unix socket and TCP.

Serves the protocol of ``common/frames.py`` beside the gRPC server, with a thread per
connection that receives a request, does the work and sends the answer itself: no
hand-off between threads on the way (rfcs/0020). A connection is authenticated once, by
its HELLO: the same token check, tenant and branch authorisation, writer-epoch fencing
and per-tenant stream limits as a gRPC stream, and the work is done by ``data_path``,
shared with the gRPC servicers. Errors go back as ERROR frames carrying the gRPC status
code and message (and, like gRPC's trailing metadata, where a moved tenant went, or that
a storage quota refused).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Final

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from common.errors import StorageQuotaError, StrataError, TenantElsewhereError
from common.frames import (
    Ack,
    ConnectionClosed,
    ErrorFrame,
    FrameError,
    FrameType,
    Hello,
    StreamKind,
    decode_hello,
    decode_pages_request,
    encode_ack,
    encode_error,
    pages_parts,
    receive_frame,
    send_frame,
)
from pageserver.api.auth import ALL_TENANTS, MAIN_BRANCH, TokenAuthority, Unauthenticated, authorize
from pageserver.api.data_path import IngestSession, PageReads
from pageserver.api.handlers import unexpected_status
from pageserver.api.limits import CallAdmission
from pageserver.api.status import status_of
from pageserver.engine import Engine
from pageserver.metrics import Metrics
from proto import strata_pb2 as pb

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S: Final = 10.0  # a connection that says nothing this long is closed
PAGES_SEND_BUFFER_BYTES: Final = 2 * 1024 * 1024  # a read-ahead answer is 1 MB
_SERVICES = pb.DESCRIPTOR.services_by_name
_METHODS: Final = {  # the gRPC method each stream kind stands for, as authorisation sees it
    StreamKind.INGEST: f"/{_SERVICES['IngestService'].full_name}/Ingest",
    StreamKind.PAGES: f"/{_SERVICES['PageService'].full_name}/GetPages",
}


def unix_address(path: str) -> str:
    """The socket address of ``path``; ``@name`` is Linux's abstract namespace."""
    return "\0" + path[1:] if path.startswith("@") else path


class FramedServer:
    """Listens on ``unix_path`` and/or ``tcp_listen`` (host:port, port 0: a free one)."""

    def __init__(self, engine: Engine, authority: TokenAuthority, metrics: Metrics,
                 admission: CallAdmission, *, unix_path: str = "", tcp_listen: str = "",
                 max_connections: int = 1024) -> None:
        self._engine = engine
        self._authority = authority
        self._metrics = metrics
        self._admission = admission
        self._reads = PageReads(engine, metrics)
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._listeners: list[socket.socket] = []
        self._acceptors: list[threading.Thread] = []
        self.unix_path = unix_path
        self.tcp_port = 0
        try:
            if unix_path:
                self._listeners.append(_listen_unix(unix_path))
            if tcp_listen:
                listener = _listen_tcp(tcp_listen)
                self.tcp_port = int(listener.getsockname()[1])
                self._listeners.append(listener)
        except OSError:
            self._close_listeners()
            raise

    def start(self) -> None:
        for listener in self._listeners:
            thread = threading.Thread(target=self._accept, args=(listener,), daemon=True,
                                      name="strata-framed-accept")
            thread.start()
            self._acceptors.append(thread)

    def stop(self, grace_s: float = 5.0) -> None:
        """Accept no more connections; let each finish the request it is serving (reads
        end at the next frame boundary) for up to ``grace_s``, then cut the rest."""
        deadline = time.monotonic() + grace_s
        self._close_listeners()
        for thread in self._acceptors:
            thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        with self._lock:
            running = dict(self._connections)
        for conn in running:
            _shutdown(conn, socket.SHUT_RD)
        for thread in running.values():
            thread.join(timeout=max(deadline - time.monotonic(), 0.0))
        for conn in running:
            _shutdown(conn, socket.SHUT_RDWR)

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            _shutdown(listener, socket.SHUT_RDWR)  # wakes a thread blocked in accept()
            listener.close()
        if self.unix_path and not self.unix_path.startswith("@"):
            Path(self.unix_path).unlink(missing_ok=True)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                      name="strata-framed")
            with self._lock:
                busy = len(self._connections) >= self._max_connections
                if not busy:
                    self._connections[conn] = thread
            if busy:
                _send_error(conn, ErrorFrame(
                    grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
                    f"the page server has {self._max_connections} data-plane connections "
                    "open, its limit; try again later"))
                conn.close()
                continue
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        method = "Framed/unknown"
        code = grpc.StatusCode.OK
        try:
            conn.settimeout(HELLO_TIMEOUT_S)
            hello = _hello(conn)
            conn.settimeout(None)
            method = f"Framed/{hello.kind.name.title()}"
            code = self._authenticated(conn, hello)
        except ConnectionClosed as exc:
            code = grpc.StatusCode.CANCELLED if exc.mid_frame else grpc.StatusCode.OK
        except (ConnectionError, TimeoutError) as exc:
            log.debug("%s: the client went away: %s", method, exc)
            code = grpc.StatusCode.CANCELLED
        except FrameError as exc:
            code = _send_error(conn, ErrorFrame(grpc.StatusCode.INVALID_ARGUMENT.value[0],
                                                f"malformed frame: {exc}"))
        except Unauthenticated as exc:
            log.info("refused a data-plane connection: %s", exc)
            code = _send_error(conn, ErrorFrame(grpc.StatusCode.UNAUTHENTICATED.value[0],
                                                str(exc)))
        except StrataError as exc:
            code = _send_error(conn, error_frame(exc))
        except Exception as exc:
            status, message = unexpected_status(exc, method)
            code = _send_error(conn, ErrorFrame(status.value[0], message))
        finally:
            self._metrics.rpc_requests.labels(method, code.name).inc()
            with self._lock:
                self._connections.pop(conn, None)
            conn.close()

    def _authenticated(self, conn: socket.socket, hello: Hello) -> grpc.StatusCode:
        """Check the HELLO's token and rights, hold a stream slot, serve the stream."""
        claims = self._authority.verify(hello.token)
        method = _METHODS[hello.kind]
        authorize(claims, hello.tenant, method, frozenset({hello.branch or MAIN_BRANCH}))
        limited = None if claims.tenant == ALL_TENANTS else claims.tenant
        with self._admission.stream(limited, method.rpartition("/")[2]):
            if hello.kind is StreamKind.INGEST:
                self._ingest(conn, hello)
            else:
                self._pages(conn, hello)
        return grpc.StatusCode.OK

    def _ingest(self, conn: socket.socket, hello: Hello) -> None:
        session = IngestSession(self._engine, self._metrics, hello.tenant, hello.branch,
                                hello.writer_epoch)
        send_frame(conn, FrameType.READY)
        while (request := _next_request(conn, FrameType.RECORD, FrameType.BATCH)) is not None:
            kind, payload = request
            if kind is FrameType.RECORD:
                done = session.apply_record(payload)
            else:
                try:
                    message = pb.IngestBatch.FromString(bytes(payload))
                except DecodeError as exc:
                    raise FrameError(f"the batch is not an IngestBatch message: {exc}") from exc
                done = session.apply(message)
            send_frame(conn, FrameType.ACK,
                       encode_ack(Ack(done.batch_id, done.lsn, done.storage_full)))

    def _pages(self, conn: socket.socket, hello: Hello) -> None:
        """Answer each request in order; a request the engine refuses gets an ERROR frame
        and the connection goes on (as gRPC's in-band status), except for a tenant that
        left: that ends it, naming where the tenant went."""
        # Room for a whole 1 MB answer: one sendmsg, and the reader drains it in a few
        # large reads rather than waking once per default-sized (208 KB) buffer.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PAGES_SEND_BUFFER_BYTES)
        send_frame(conn, FrameType.READY)
        while (asked := _next_request(conn, FrameType.PAGES_REQUEST)) is not None:
            request = decode_pages_request(asked[1])
            try:
                lsn, pages = self._reads.read(hello.tenant, hello.branch, request.lsn,
                                              request.relation,
                                              np.array(request.blocks, dtype=np.int64))
            except TenantElsewhereError:
                raise
            except StrataError as exc:
                send_frame(conn, FrameType.ERROR, encode_error(ErrorFrame(
                    status_of(exc).value[0], str(exc), ends_connection=False)))
                continue
            send_frame(conn, FrameType.PAGES, *pages_parts(request.request_id, lsn, pages))


def error_frame(exc: StrataError) -> ErrorFrame:
    """The ERROR frame that ends a connection with ``exc``'s status: what gRPC would
    answer, with its trailing metadata as fields."""
    location = exc.address if isinstance(exc, TenantElsewhereError) else ""
    return ErrorFrame(status_of(exc).value[0], str(exc), location,
                      storage_quota=isinstance(exc, StorageQuotaError))


def _hello(conn: socket.socket) -> Hello:
    kind, payload = receive_frame(conn)
    if kind is not FrameType.HELLO:
        raise FrameError(f"a connection starts with HELLO, not {kind.name}")
    return decode_hello(payload)


def _next_request(conn: socket.socket, *expected: FrameType
                  ) -> tuple[FrameType, bytearray] | None:
    """The next request's type (one of ``expected``) and payload; None once the client
    closed between requests."""
    try:
        kind, payload = receive_frame(conn)
    except ConnectionClosed as exc:
        if exc.mid_frame:
            raise
        return None
    if kind not in expected:
        names = " or ".join(frame.name for frame in expected)
        raise FrameError(f"this stream takes {names} frames, not {kind.name}")
    return kind, payload


def _send_error(conn: socket.socket, error: ErrorFrame) -> grpc.StatusCode:
    """Send ``error`` if the client still listens; the status it carries."""
    with contextlib.suppress(OSError):
        send_frame(conn, FrameType.ERROR, encode_error(error))
    return next((code for code in grpc.StatusCode if code.value[0] == error.code),
                grpc.StatusCode.UNKNOWN)


def _shutdown(sock: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):  # not connected, or closed already
        sock.shutdown(how)


def _listen_unix(path: str) -> socket.socket:
    """A listening unix socket at ``path``, open to every local user (the token is the
    access check, as on TCP); a stale socket file of a dead server is replaced."""
    if not path.startswith("@") and os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"cannot listen on {path}: it exists and is no socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # nobody listens: left by a killed page server
        else:
            raise OSError(f"cannot listen on {path}: another process serves it")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(unix_address(path))
        if not path.startswith("@"):
            os.chmod(path, 0o666)
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise OSError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
    return listener


def _listen_tcp(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise OSError(f"cannot listen on {address!r}: give host:port")
    listener = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET,
                             socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host.strip("[]"), int(port)))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise OSError(f"cannot listen on {address}: address in use or not available") from exc
    return listener
