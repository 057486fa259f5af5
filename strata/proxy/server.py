"""``python -m strata.proxy``: PostgreSQL clients connect by branch; the branch's compute is
started on the first connect and stopped once idle (scale to zero).

Connection syntax, which psql, psycopg and pgbench accept unmodified: the user names the
tenant, the password is the tenant's (SCRAM-SHA-256; ``strata connect`` prints the whole
URI), and the database names the branch, optionally with a database inside it::

    postgresql://TENANT:PASSWORD@127.0.0.1:6432/BRANCH        (database "postgres")
    postgresql://TENANT:PASSWORD@127.0.0.1:6432/BRANCH:mydb   (database "mydb")

The proxy declines SSL and GSS encryption, reads the startup message, makes sure the
compute runs (clients arriving during one cold start share it), connects to its unix
socket as ``postgres`` (computes listen on no TCP port) and then relays bytes both ways
(``strata.proxy.relay``: one epoll thread for all sessions, outside asyncio).
It learns each session's cancel key on the way, so a CancelRequest reaches the right
compute. Errors (unknown branch, a failed start, the tenant's compute quota) come back as
a PostgreSQL ErrorResponse, never as a dropped socket.

``strata up`` starts it (as root, since it starts computes); ``strata connect BRANCH``
prints the URI. A branch's own suspend timeout (``branch create/set --suspend-timeout``)
overrides the proxy's. It also deletes branches whose TTL has passed (``strata.local.reaper``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from common.client import ClientError, StrataClient
from common.durable import write_atomically, write_durably
from common.durations import parse_duration
from common.names import is_valid_name
from strata.local import computes, passwords
from strata.local.errors import LocalError, QuotaError
from strata.local.home import Home
from strata.local.reaper import reap_expired
from strata.proxy.pgwire import (
    CANCEL_REQUEST,
    GSSENC_REQUEST,
    PROTOCOL_3,
    SSL_REQUEST,
    CancelKey,
    ProtocolError,
    Startup,
    authentication,
    backend_key,
    error_response,
    parse_cancel,
    parse_startup,
    read_message,
    read_startup_packet,
    sasl_initial,
)
from strata.proxy.relay import relay_streams
from strata.proxy.scram import MECHANISM, ScramError, ScramExchange, Verifier

log = logging.getLogger("strata.proxy")
DEFAULT_SUSPEND_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Route:
    """Where a client wants to go."""

    tenant: str
    branch: str
    dbname: str


class RouteError(Exception):
    """A client's startup names no valid tenant or branch; ``sqlstate`` says which class."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


def route_of(startup: Startup) -> Route:
    """Tenant from the user name, branch (and database) from the database name."""
    tenant = startup.params.get("user", "")
    database = startup.params.get("database") or tenant
    branch, _, dbname = database.partition(":")
    if not is_valid_name(tenant):
        raise RouteError("28000", f"the user name must be a tenant name, not {tenant!r}")
    if not is_valid_name(branch):
        raise RouteError("3D000", f"the database name must be BRANCH or BRANCH:DATABASE, "
                                  f"not {database!r}")
    return Route(tenant, branch, dbname or "postgres")


class Computes:
    """Starts computes on demand (one start per branch at a time) and suspends idle ones."""

    def __init__(self, home: Home, client: StrataClient, address: str,
                 suspend_timeout_s: float) -> None:
        self._home = home
        self._client = client
        self._address = address
        self.suspend_timeout_s = suspend_timeout_s
        self._locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._clients: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._idle_since: dict[tuple[str, str], float] = {}
        self._timeouts: dict[tuple[str, str], float] = {}  # per-branch suspend timeouts
        self._suspended_at: dict[tuple[str, str], float] = {}  # wall time, by this proxy
        self.starts = 0  # computes this proxy started (for tests and metrics)
        self.changed = asyncio.Event()  # set when ``snapshot()`` should be published again

    async def ensure(self, tenant: str, branch: str) -> Path:
        """The unix socket of the branch's running compute, started if needed."""
        info = await asyncio.to_thread(self._client.get_branch, tenant, branch)
        self._timeouts[(tenant, branch)] = float(info.suspend_timeout_s or
                                                 self.suspend_timeout_s)
        async with self._locks[(tenant, branch)]:
            node = computes.find_running(self._home, tenant, branch)
            if node is not None:
                return node.spec.socket_path
            log.info("starting the compute of %s/%s", tenant, branch)
            running, started = await asyncio.to_thread(
                computes.ensure_running, self._home, self._client, self._address, tenant,
                branch, 120.0)
            if started:
                self.starts += 1
            self._suspended_at.pop((tenant, branch), None)
            return running.spec.socket_path

    def connected(self, key: tuple[str, str]) -> None:
        self._clients[key] += 1
        self._idle_since.pop(key, None)
        self.changed.set()

    def disconnected(self, key: tuple[str, str]) -> None:
        self._clients[key] -= 1
        if self._clients[key] == 0:
            self._idle_since[key] = time.monotonic()
        self.changed.set()

    async def suspend_idle(self) -> None:
        """Stop every compute that has had no client for the suspend timeout."""
        now = time.monotonic()
        for key, since in list(self._idle_since.items()):
            if now - since < self._timeouts.get(key, self.suspend_timeout_s):
                continue
            async with self._locks[key]:
                if self._clients[key] or self._idle_since.get(key) != since:
                    continue  # a client came back meanwhile
                del self._idle_since[key]
                node = computes.find_running(self._home, *key)
                if node is not None:
                    log.info("suspending the idle compute of %s/%s", *key)
                    await asyncio.to_thread(computes.stop, node, 60.0)
                    self._suspended_at[key] = time.time()

    def snapshot(self) -> dict[str, dict[str, float | int | None]]:
        """Per ``tenant/branch``: clients now, since when idle and when suspended (wall
        times), for ``strata compute list``."""
        now_wall, now = time.time(), time.monotonic()
        keys = set(self._clients) | set(self._suspended_at)
        return {f"{tenant}/{branch}": {
            "clients": self._clients.get((tenant, branch), 0),
            "idle_since": (now_wall - (now - since)
                           if (since := self._idle_since.get((tenant, branch))) else None),
            "suspended_at": self._suspended_at.get((tenant, branch)),
        } for tenant, branch in sorted(keys)}


class Proxy:
    """The listening side: one task per client connection."""

    def __init__(self, computes_: Computes, home: Home) -> None:
        self.computes = computes_
        self._home = home
        self._cancel_sockets: dict[CancelKey, Path] = {}
        self._verifiers: dict[tuple[str, str], Verifier] = {}  # (tenant, password) -> it

    def _verifier(self, tenant: str) -> Verifier | None:
        password = passwords.read(self._home, tenant)
        if password is None:
            return None
        key = (tenant, password)
        if key not in self._verifiers:
            self._verifiers[key] = Verifier.from_password(password)
        return self._verifiers[key]

    async def _authenticate(self, tenant: str, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> bool:
        """SCRAM-SHA-256 against the tenant's password; False (client told) if it fails."""
        failed = f"password authentication failed for tenant {tenant!r}"
        verifier = self._verifier(tenant)
        if verifier is None:  # unknown tenant, or no password yet: say no more than that
            await _refuse(writer, "28P01", failed)
            return False
        exchange = ScramExchange(verifier)
        writer.write(authentication(10, MECHANISM.encode() + b"\0\0"))
        await writer.drain()
        try:
            kind, message = await read_message(reader)
            mechanism, first = sasl_initial(message) if kind == b"p" else ("", b"")
            if mechanism != MECHANISM:
                raise ScramError(f"expected a {MECHANISM} response")
            writer.write(authentication(11, exchange.server_first(first.decode()).encode()))
            await writer.drain()
            kind, message = await read_message(reader)
            if kind != b"p":
                raise ScramError("expected a SASL response")
            final = exchange.server_final(message[5:].decode())
        except (ScramError, UnicodeDecodeError) as exc:
            log.info("authentication of tenant %r failed: %s", tenant, exc)
            await _refuse(writer, "28P01", failed)
            return False
        writer.write(authentication(12, final.encode()))
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ProtocolError, asyncio.IncompleteReadError, ConnectionError) as exc:
            log.debug("client connection ended: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        code, body = await read_startup_packet(reader)
        while code in (SSL_REQUEST, GSSENC_REQUEST):
            writer.write(b"N")  # no encryption on loopback; the client goes on in plain text
            await writer.drain()
            code, body = await read_startup_packet(reader)
        if code == CANCEL_REQUEST:
            await self._cancel(parse_cancel(body))
            return
        if code != PROTOCOL_3:
            raise ProtocolError(f"unsupported protocol {code >> 16}.{code & 0xFFFF}")
        startup = parse_startup(body)
        try:
            route = route_of(startup)
        except RouteError as exc:
            await _refuse(writer, exc.sqlstate, exc.message)
            return
        if not await self._authenticate(route.tenant, reader, writer):
            return  # nothing is started for a client that did not prove who it is
        try:
            socket_path = await self.computes.ensure(route.tenant, route.branch)
        except (LocalError, ClientError) as exc:
            await _refuse(writer, _sqlstate_of(exc), exc.message)
            return
        await self._relay(route, socket_path, startup, reader, writer)

    async def _relay(self, route: Route, socket_path: Path, startup: Startup,
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        params = {**startup.params, "user": "postgres", "database": route.dbname}
        try:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(socket_path)
        except OSError as exc:
            await _refuse(writer, "57P03", f"the compute of {route.branch!r} does not answer: "
                                           f"{exc}")
            return
        key = (route.tenant, route.branch)
        self.computes.connected(key)
        cancel_key: CancelKey | None = None
        try:
            upstream_writer.write(Startup(params).encode())
            await upstream_writer.drain()
            while True:  # the server's side of the startup, to learn the cancel key
                kind, message = await read_message(upstream_reader)
                writer.write(message)
                if kind == b"K":
                    cancel_key = backend_key(message)
                    self._cancel_sockets[cancel_key] = socket_path
                if kind in (b"Z", b"E"):
                    break
            await relay_streams((reader, writer), (upstream_reader, upstream_writer),
                                name=f"relay {route.tenant}/{route.branch}")
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


async def _refuse(writer: asyncio.StreamWriter, sqlstate: str, message: str) -> None:
    writer.write(error_response(sqlstate, message))
    await writer.drain()


async def serve(host: str, port: int, home: Home, computes_: Computes,
                ready: Callable[[int], None],
                stop: asyncio.Event, reap: Callable[[], object] | None = None,
                reap_period_s: float = 5.0) -> None:
    """Accept clients until ``stop``; suspend idle computes every second or so and, with
    ``reap``, delete expired branches every ``reap_period_s``."""
    proxy = Proxy(computes_, home)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await asyncio.start_server(proxy.handle, host, port)
    ready(server.sockets[0].getsockname()[1])
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
                    await _housekeeping("reaping expired branches", asyncio.to_thread(reap))
    finally:
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher


async def _publish_state(computes_: Computes, home: Home) -> None:
    """Write ``computes_.snapshot()`` for ``strata compute list`` whenever it changed.

    Its own task, so that a client's arrival or departure shows at once, even while the
    housekeeping loop is busy stopping an idle compute or reaping an expired branch.
    """
    while True:
        await computes_.changed.wait()
        computes_.changed.clear()
        state = json.dumps(computes_.snapshot()).encode()
        await _housekeeping("publishing the proxy state", asyncio.to_thread(
            write_atomically, home.proxy_state_file, state))


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = Home.from_environ()
    address = home.server_address()
    client = StrataClient(address, home.admin_token())
    host, _, port = args.listen.rpartition(":")

    def ready(bound: int) -> None:
        log.info("listening on %s:%d", host, bound)
        if args.ready_file is not None:
            body = {"pid": os.getpid(), "listen": f"{host}:{bound}"}
            write_durably(args.ready_file, json.dumps(body).encode())

    try:
        asyncio.run(serve(host, int(port), home, Computes(home, client, address,
                                                    args.suspend_timeout), ready,
                          asyncio.Event(), partial(reap_expired, home, client)))
    finally:
        client.close()
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
