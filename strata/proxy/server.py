"""``python -m strata.proxy``: PostgreSQL clients connect by branch; the branch's compute is
started on the first connect and stopped once idle (scale to zero).

A branch is a whole PostgreSQL cluster. The client's user and database go to it unchanged;
the branch is named in the ``options`` startup parameter (``strata.proxy.startup``), which
psql, psycopg and pgbench pass on from a URI (``strata connect BRANCH`` prints one)::

    postgresql://acme:PASSWORD@127.0.0.1:6432/postgres?options=-c%20strata.branch%3Dacme%2Fmain

The tenant's owner role (named like the tenant) and the read-only role log in with a
credential of the branch they name (``strata.local.passwords``), which the proxy checks
itself before it starts anything, so it opens that branch only; other roles are checked
by the compute (``strata.proxy.auth``). SSLRequest gets TLS when the proxy has a certificate
(``strata.proxy.tls``), GSSENCRequest a 'N', a newer 3.x protocol a
NegotiateProtocolVersion. Unauthenticated connections are capped and have a deadline
(``strata.proxy.limits``). Once a session is up, its bytes are relayed both ways
(``strata.proxy.relay``: per direction a thread running a C pump, outside asyncio and
the GIL).
It learns each session's cancel key on the way, so a CancelRequest reaches the right
compute. Errors (unknown branch, a failed start, the tenant's compute quota) come back as
a PostgreSQL ErrorResponse, never as a dropped socket.

Before a statement that destroys data (DROP, TRUNCATE, ALTER ... DROP, DELETE or UPDATE
without WHERE) the relay holds it while ``strata.proxy.undo`` fixes an automatic
checkpoint, which ``strata undo`` restores (owner and role sessions, plain text or TLS;
not read-only ones, which destroy nothing).

With ``--unix-socket-dir DIR`` it also listens on ``DIR/.s.PGSQL.PORT`` (libpq's name for
``host=DIR port=PORT``), for clients on this machine: the same startup and authentication,
no TCP on the client's leg (``strata connect --socket``), and no TLS needed there.

``strata up`` starts it (as root, since it starts computes). A branch's own suspend
timeout (``branch create/set --suspend-timeout``) overrides the proxy's. It also deletes
branches whose TTL or lease has passed, and expired automatic checkpoints
(``strata.local.reaper``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import secrets
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from common.client import ClientError, StrataClient
from common.durable import write_atomically, write_durably
from common.durations import parse_duration
from common.scram import Verifier
from strata.local import passwords
from strata.local.connect_log import ConnectLog
from strata.local.errors import LocalError, QuotaError
from strata.local.home import Home
from strata.local.reaper import reap_expired
from strata.proxy import auth, tls
from strata.proxy.limits import Caps, Gate, Pending, raise_open_files_limit
from strata.proxy.pgwire import (
    CANCEL_REQUEST,
    GSSENC_REQUEST,
    SSL_REQUEST,
    CancelKey,
    ProtocolError,
    Startup,
    backend_key,
    error_response,
    parse_cancel,
    parse_startup,
    read_message,
    read_startup_packet,
)
from strata.proxy.relay import Streams, relay_streams
from strata.proxy.scram import ScramExchange, mock_verifier
from strata.proxy.startup import (
    Route,
    RouteError,
    negotiate_protocol_version,
    protocol_options,
    route_of,
)
from strata.proxy.undo import DEFAULT_RETENTION_S, Undo
from strata.proxy.wake import Computes

log = logging.getLogger("strata.proxy")
DEFAULT_SUSPEND_TIMEOUT_S = 300.0
READ_LIMIT = 16 * 1024  # what asyncio buffers of a client before it stops reading (twice)
# Connections the kernel queues until the proxy accepts them (capped by net.core.somaxconn).
# asyncio's 100 overflowed under a burst of strangers: the kernel then drops SYNs, and a
# client that arrives meanwhile waits a second for its retry.
ACCEPT_BACKLOG = 4096
PUBLISH_PAUSE_S = 0.1  # the proxy state file is rewritten at most this often


@dataclass(frozen=True)
class Security:
    """How the proxy treats strangers: TLS, and the limits before authentication."""

    tls_context: ssl.SSLContext | None = None
    require_tls: bool = False
    caps: Caps = field(default_factory=Caps)

    def __post_init__(self) -> None:
        if self.require_tls and self.tls_context is None:
            raise ValueError("TLS is required but the proxy has no certificate")


class Proxy:
    """The listening side: one task per client connection."""

    def __init__(self, computes_: Computes, home: Home, security: Security | None = None,
                 connects: ConnectLog | None = None, undo: Undo | None = None) -> None:
        self.computes = computes_
        self._home = home
        self._undo = undo
        self._connects = connects
        self.security = security or Security()
        self.gate = Gate(self.security.caps)
        self._mock_secret = secrets.token_bytes(32)  # fake salts: stable while this runs
        self._cancel_sockets: dict[CancelKey, Path] = {}
        self._verifiers: dict[str, Verifier] = {}  # by password

    def _verifier(self, route: Route) -> Verifier | None:
        """The verifier of the branch credential the route's user logs in with; None if
        there is none (unknown tenant or branch, or none made yet)."""
        password = passwords.read_credential(self._home, route.tenant, route.branch,
                                             route.read_only)
        if password is None:
            return None
        if password not in self._verifiers:
            self._verifiers[password] = Verifier.from_password(password)
        return self._verifiers[password]

    def _doomed(self, user: str) -> ScramExchange:
        """The exchange for a user the proxy will not name: ends as a wrong password."""
        return ScramExchange(mock_verifier(self._mock_secret, user), doomed=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) else "local"
        task = asyncio.current_task()
        pending = self.gate.admit(source, partial(_drop, writer, task))
        try:
            await self._serve(reader, writer, pending)
        except (ProtocolError, asyncio.IncompleteReadError, ConnectionError,
                ssl.SSLError) as exc:
            log.debug("client connection ended: %s", exc)
        except asyncio.CancelledError:
            if not pending.dropped:
                raise
            log.debug("dropped an unauthenticated connection from %s", source)
        finally:
            self.gate.release(pending)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     pending: Pending) -> None:
        """Startup and authentication within the deadline, then the session."""
        try:
            async with asyncio.timeout(self.security.caps.auth_timeout_s):
                admitted = await self._authenticate(reader, writer, pending)
        except TimeoutError:
            await _refuse(writer, "57014", "canceling authentication due to timeout")
            return
        if admitted is None:
            return
        self.gate.release(pending)
        route, secure, upstream = admitted
        if upstream is None:  # a branch credential: the compute is started only now
            upstream = await self._managed_upstream(route, writer)
            if upstream is None:
                return
        await self._relay(route, secure, upstream, (reader, writer))

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            pending: Pending) -> tuple[Route, bool, _Upstream | None] | None:
        """The client's route once it proved who it is, whether it speaks TLS and, for
        roles the compute checked, the compute's connection; None if refused (told)."""
        started = await self._startup(reader, writer)
        if started is None:
            return None
        startup, secure = started
        try:
            route = route_of(startup)
        except RouteError as exc:
            await _refuse(writer, exc.sqlstate, exc.message)
            return None
        self.gate.name(pending, route.tenant)
        user = route.user
        if user == "postgres" or user.startswith("pg_"):
            await auth.verify(user, self._doomed(user), reader, writer)
            return None
        if route.managed:
            verifier = self._verifier(route)
            exchange = self._doomed(user) if verifier is None else ScramExchange(verifier)
            if not await auth.verify(user, exchange, reader, writer):
                return None  # nothing is started for a client that did not prove who it is
            return route, secure, None
        upstream = await self._role_upstream(route, reader, writer)
        return None if upstream is None else (route, secure, upstream)

    async def _startup(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> tuple[Startup, bool] | None:
        """The client's StartupMessage after any SSL or GSS request, and whether the
        connection is now TLS; None after a CancelRequest or a refusal (told)."""
        secure = asked_ssl = asked_gss = False  # each may be asked once, before TLS
        while True:
            code, body = await read_startup_packet(reader)
            if code == SSL_REQUEST and not asked_ssl:
                asked_ssl = True
                if self.security.tls_context is None:
                    writer.write(b"N")
                    await writer.drain()
                else:
                    await tls.accept(self.security.tls_context, reader, writer)
                    secure = True
                continue
            if code == GSSENC_REQUEST and not asked_gss and not secure:
                asked_gss = True
                writer.write(b"N")  # no GSS: libpq goes on with SSL or plain text
                await writer.drain()
                continue
            if code == CANCEL_REQUEST:
                await self._cancel(parse_cancel(body))
                return None
            if code >> 16 != 3:
                raise ProtocolError(f"unsupported protocol {code >> 16}.{code & 0xFFFF}")
            startup = parse_startup(body)
            if self.security.require_tls and not secure and not _on_unix_socket(writer):
                await _refuse(writer, "28000", "this proxy accepts TLS connections only "
                                               "(sslmode=verify-full with its CA)")
                return None
            unrecognized = protocol_options(startup)
            if code & 0xFFFF or unrecognized:  # newer than 3.0: the client goes on as 3.0
                writer.write(negotiate_protocol_version(unrecognized))
            return startup, secure

    async def _compute_socket(self, route: Route, writer: asyncio.StreamWriter) -> Path | None:
        """The socket of the route's compute, started if needed; None if it cannot be had
        (the client told). Shielded: a start goes on even if this client is dropped, so
        the branch's start lock is held until the start is really over."""
        try:
            return await asyncio.shield(self.computes.ensure(route.tenant, route.branch))
        except (LocalError, ClientError) as exc:
            await _refuse(writer, _sqlstate_of(exc), exc.message)
            return None

    async def _connect(self, route: Route, socket_path: Path,
                       writer: asyncio.StreamWriter) -> Streams | None:
        """A connection to the compute with the client's startup sent; None if it does not
        answer (the client told)."""
        try:
            upstream = await asyncio.open_unix_connection(socket_path)
        except OSError as exc:
            await _refuse(writer, "57P03", f"the compute of {route.branch!r} does not answer: "
                                           f"{exc}")
            return None
        upstream[1].write(route.startup.encode())
        await upstream[1].drain()
        return upstream

    async def _managed_upstream(self, route: Route,
                                writer: asyncio.StreamWriter) -> _Upstream | None:
        """Log in to the compute as the tenant's role, or the read-only role, with the
        password no client has (the tenant's, or the one derived from it)."""
        socket_path = await self._compute_socket(route, writer)
        if socket_path is None:
            return None
        upstream = await self._connect(route, socket_path, writer)
        if upstream is None:
            return None
        password = passwords.read(self._home, route.tenant) or ""
        if route.read_only:
            password = passwords.read_only_password(password)
        try:
            first = await auth.owner_login(password, *upstream)
        except BaseException:
            upstream[1].close()
            raise
        return _Upstream(socket_path, upstream, first)

    async def _role_upstream(self, route: Route, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> _Upstream | None:
        """Wake the compute and let it check a role's password; a branch that does not
        exist gets the doomed exchange, as an unknown role does."""
        try:
            socket_path = await asyncio.shield(self.computes.ensure(route.tenant,
                                                                    route.branch))
        except ClientError as exc:
            if exc.code.name != "NOT_FOUND":
                await _refuse(writer, _sqlstate_of(exc), exc.message)
                return None
            await auth.verify(route.user, self._doomed(route.user), reader, writer)
            return None
        except LocalError as exc:
            await _refuse(writer, _sqlstate_of(exc), exc.message)
            return None
        upstream = await self._connect(route, socket_path, writer)
        if upstream is None:
            return None
        try:
            first = await auth.pass_through(route.user, (reader, writer), upstream)
        except BaseException:
            upstream[1].close()
            raise
        if first[:1] != b"R":  # refused: the client is told, nothing more is relayed
            upstream[1].close()
            writer.write(first)
            await writer.drain()
            return None
        return _Upstream(socket_path, upstream, first)

    async def _relay(self, route: Route, secure: bool, upstream: _Upstream,
                     client: Streams) -> None:
        """The rest of the server's startup (to learn the cancel key), then the session."""
        writer = client[1]
        upstream_reader, upstream_writer = upstream.streams
        key = (route.tenant, route.branch)
        self.computes.connected(key)
        cancel_key: CancelKey | None = None
        try:
            kind, message = upstream.first[:1], upstream.first
            writer.write(message)
            while kind not in (b"Z", b"E"):
                kind, message = await read_message(upstream_reader)
                writer.write(message)
                if kind == b"K":
                    cancel_key = backend_key(message)
                    self._cancel_sockets[cancel_key] = upstream.socket_path
            if kind == b"E":
                await writer.drain()
                return
            if self._connects is not None:
                peer = writer.get_extra_info("peername")
                self._connects.record(
                    route.tenant, route.branch, route.user,
                    "read-only" if route.read_only else "owner" if route.owner else "role",
                    str(peer[0]) if isinstance(peer, tuple) else "local", secure)
            name = f"relay {route.tenant}/{route.branch}"
            watch = None if self._undo is None or route.read_only else \
                self._undo.watch(route.tenant, route.branch)
            if secure:
                await tls.relay(client, upstream.streams, watch)
            else:
                await relay_streams(client, upstream.streams, name=name, watch=watch)
        finally:
            if cancel_key is not None:
                self._cancel_sockets.pop(cancel_key, None)
            self.computes.disconnected(key)
            upstream_writer.close()

    async def _cancel(self, key: CancelKey) -> None:
        socket_path = self._cancel_sockets.get(key)
        if socket_path is None:
            return  # PostgreSQL too ignores a cancel for no session, silently
        with contextlib.suppress(OSError):
            _, cancel_writer = await asyncio.open_unix_connection(socket_path)
            cancel_writer.write(key.encode())
            await cancel_writer.drain()
            cancel_writer.close()


@dataclass(frozen=True)
class _Upstream:
    """A compute connection whose authentication is done: its first message after it
    (AuthenticationOk, or an error to pass on) is still to go to the client."""

    socket_path: Path
    streams: Streams
    first: bytes


def _drop(writer: asyncio.StreamWriter, task: asyncio.Task[None] | None) -> None:
    """End an unauthenticated connection now: its descriptor is freed at once."""
    writer.transport.abort()
    if task is not None:
        task.cancel()


async def _refuse(writer: asyncio.StreamWriter, sqlstate: str, message: str) -> None:
    writer.write(error_response(sqlstate, message))
    await writer.drain()


async def serve(host: str, port: int, home: Home, computes_: Computes,
                ready: Callable[[int], None],
                stop: asyncio.Event, reap: Callable[[], object] | None = None,
                reap_period_s: float = 5.0, security: Security | None = None,
                undo: Undo | None = None, unix_socket_dir: Path | None = None) -> None:
    """Accept clients until ``stop``; suspend idle computes every second or so and, with
    ``reap``, delete expired branches and checkpoints every ``reap_period_s``; with
    ``undo``, take automatic checkpoints before destructive statements; with
    ``unix_socket_dir``, accept local clients on a unix socket there too."""
    connects = ConnectLog(home)
    proxy = Proxy(computes_, home, security, connects, undo)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await asyncio.start_server(proxy.handle, host, port, limit=READ_LIMIT,
                                        backlog=ACCEPT_BACKLOG)
    bound = server.sockets[0].getsockname()[1]
    local: asyncio.Server | None = None
    local_path = None if unix_socket_dir is None else unix_socket_dir / f".s.PGSQL.{bound}"
    if local_path is not None:
        local = await _listen_locally(proxy, local_path)
    ready(bound)
    period = min(1.0, max(computes_.suspend_timeout_s / 4, 0.1))  # per-branch ones: >= 1 s
    last_reap = 0.0
    publisher = asyncio.create_task(_publish_state(computes_, home))
    try:
        async with server:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), period)
                await _housekeeping("suspending idle computes", computes_.suspend_idle())
                computes_.changed.set()  # idle times and suspensions, at least every period
                if reap is not None and time.monotonic() - last_reap >= reap_period_s:
                    last_reap = time.monotonic()
                    await _housekeeping("reaping expired branches and checkpoints",
                                        asyncio.to_thread(reap))
    finally:
        if local is not None and local_path is not None:
            local.close()
            await local.wait_closed()
            local_path.unlink(missing_ok=True)
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
        connects.close()


async def _listen_locally(proxy: Proxy, path: Path) -> asyncio.Server:
    """The unix-socket listener at ``path``, open to every local user (as PostgreSQL's
    default ``unix_socket_permissions``): the password is the check, as over TCP."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # left by a proxy killed before it could remove it
    server = await asyncio.start_unix_server(proxy.handle, path=str(path), limit=READ_LIMIT,
                                             backlog=ACCEPT_BACKLOG)
    path.chmod(0o777)
    return server


def _on_unix_socket(writer: asyncio.StreamWriter) -> bool:
    """Whether the client came over the local unix socket (no network to protect)."""
    return not isinstance(writer.get_extra_info("peername"), tuple)


async def _publish_state(computes_: Computes, home: Home) -> None:
    """Write ``computes_.snapshot()`` for ``strata compute list`` whenever it changed.

    Its own task, so that a client's arrival or departure shows at once, even while the
    housekeeping loop is busy stopping an idle compute or reaping an expired branch. The
    changes of a short pause after each write go out together: a warm connect changes the
    state up to three times, and rewriting the file for each was a tenth of the proxy's
    CPU per connect.
    """
    while True:
        await computes_.changed.wait()
        computes_.changed.clear()
        state = json.dumps(computes_.snapshot()).encode()
        await _housekeeping("publishing the proxy state", asyncio.to_thread(
            write_atomically, home.proxy_state_file, state))
        await asyncio.sleep(PUBLISH_PAUSE_S)


def _sqlstate_of(error: LocalError | ClientError) -> str:
    """What a client is told when its branch's compute cannot be had."""
    if isinstance(error, QuotaError):
        return "53400"  # configuration_limit_exceeded
    if isinstance(error, ClientError) and error.code.name == "NOT_FOUND":
        return "3D000"  # invalid_catalog_name: no such branch
    return "57P03"  # cannot_connect_now


async def _housekeeping(what: str, step: Awaitable[object]) -> None:
    """Run one periodic step; whatever it raises is logged, and the proxy keeps serving."""
    try:
        await step
    except (ClientError, LocalError) as exc:
        log.warning("%s failed: %s", what, exc)
    except Exception:
        log.exception("%s failed", what)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="strata.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:6432", help="HOST:PORT (port 0: any)")
    parser.add_argument("--suspend-timeout", type=parse_duration,
                        default=DEFAULT_SUSPEND_TIMEOUT_S,
                        help="time without clients before a compute is stopped (90, 30s, 5m)")
    parser.add_argument("--ready-file", type=Path,
                        help="gets {pid, listen} as JSON once listening; removed on exit")
    parser.add_argument("--undo-retention", type=parse_duration, default=DEFAULT_RETENTION_S,
                        help="how long automatic checkpoints before destructive statements "
                             "are kept (default 24h; 0: take none)")
    parser.add_argument("--unix-socket-dir", type=Path,
                        help="also listen for local clients on DIR/.s.PGSQL.PORT")
    parser.add_argument("--tls-cert", type=Path, help="certificate (chain) for TLS clients")
    parser.add_argument("--tls-key", type=Path, help="its private key")
    parser.add_argument("--require-tls", action=argparse.BooleanOptionalAction,
                        help="refuse clients without TLS (default: on unless the proxy "
                             "listens on a loopback address only)")
    defaults = Caps()
    parser.add_argument("--auth-timeout", type=parse_duration, default=defaults.auth_timeout_s,
                        help="time a client has to authenticate (default 60s)")
    parser.add_argument("--max-unauthenticated", type=int, default=defaults.total,
                        help="connections not yet authenticated, in total; beyond it the "
                             "oldest is dropped")
    parser.add_argument("--max-unauthenticated-per-source", type=int,
                        default=defaults.per_source, help="the same, per client address")
    parser.add_argument("--max-unauthenticated-per-tenant", type=int,
                        default=defaults.per_tenant, help="the same, per tenant named")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, _, port = args.listen.rpartition(":")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    require_tls = args.require_tls if args.require_tls is not None else not _loopback(host)
    try:
        security = Security(
            tls.server_context(args.tls_cert, args.tls_key) if args.tls_cert else None,
            require_tls,
            Caps(args.auth_timeout, args.max_unauthenticated,
                 args.max_unauthenticated_per_source, args.max_unauthenticated_per_tenant))
    except (ValueError, OSError, ssl.SSLError) as exc:
        parser.error(str(exc))
    log.info("open files limit %d; TLS %s", raise_open_files_limit(),
             "required" if require_tls else "offered" if args.tls_cert else "not offered")
    home = Home.from_environ()
    address = home.server_address()
    client = StrataClient(address, home.admin_token())

    def ready(bound: int) -> None:
        log.info("listening on %s:%d", host, bound)
        if args.ready_file is not None:
            body = {"pid": os.getpid(), "listen": f"{host}:{bound}",
                    "socket_dir": str(args.unix_socket_dir or "")}
            write_durably(args.ready_file, json.dumps(body).encode())

    undo = Undo(client, int(args.undo_retention)) if args.undo_retention > 0 else None
    try:
        asyncio.run(serve(host, int(port), home, Computes(home, client, address,
                                                    args.suspend_timeout), ready,
                          asyncio.Event(), partial(reap_expired, home, client),
                          security=security, undo=undo,
                          unix_socket_dir=args.unix_socket_dir))
    finally:
        if undo is not None:
            undo.close()
        client.close()
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)


def _loopback(host: str) -> bool:
    """Whether ``host`` (as given to --listen) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve beyond loopback


if __name__ == "__main__":
    main()
