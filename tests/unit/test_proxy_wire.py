"""The proxy's side of the startup with strangers, over real sockets to an in-process proxy
(no page server, no PostgreSQL: nothing here gets past authentication).

Unknown users and wrong passwords get the same answer; newer protocol versions are
negotiated down; GSS is declined and TLS accepted with the certificate ``strata up``
makes; plain text is refused when TLS is required; slow, oversized and surplus
unauthenticated connections are cut off while others are still served.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from common.client import StrataClient
from strata.local import certs, passwords
from strata.local.home import Home
from strata.proxy.limits import Caps
from strata.proxy.pgwire import (
    GSSENC_REQUEST,
    PROTOCOL_3,
    SSL_REQUEST,
    Startup,
    error_fields,
    sasl_initial_response,
    sasl_response,
)
from strata.proxy.scram import MECHANISM, ScramClient
from strata.proxy.server import Security, serve
from strata.proxy.tls import server_context
from strata.proxy.wake import Computes

T = TypeVar("T")
BRANCH = "-c strata.branch=main"


def run_proxy(home: Home, security: Security, scenario: Callable[[int], T]) -> T:
    """Run a proxy on a free port of 127.0.0.1 while ``scenario(port)`` runs in a thread."""
    client = StrataClient("127.0.0.1:1", "no-token")  # nothing here reaches a page server

    async def main() -> T:
        stop = asyncio.Event()
        bound: list[int] = []
        task = asyncio.create_task(serve(
            "127.0.0.1", 0, home, Computes(home, client, "127.0.0.1:1", 60.0),
            bound.append, stop, security=security))
        while not bound:
            assert not task.done(), task
            await asyncio.sleep(0.01)
        try:
            return await asyncio.to_thread(scenario, bound[0])
        finally:
            stop.set()
            await task

    try:
        return asyncio.run(main())
    finally:
        client.close()


@pytest.fixture
def home(tmp_path: Path) -> Home:
    """A home whose tenant ``acme`` has a password and a credential for its branch
    ``main`` (``acme`` exists, ``nobody`` not)."""
    made = Home(tmp_path)
    made.proxy_state_file.parent.mkdir(parents=True)
    passwords.ensure(made, "acme")
    passwords.ensure_credential(made, "acme", "main")
    return made


class Wire:
    """A blocking client socket that reads whole backend messages."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self.sock = sock
        sock.settimeout(10)

    @classmethod
    def connect(cls, port: int) -> Wire:
        return cls(socket.create_connection(("127.0.0.1", port)))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise EOFError(f"closed after {data!r}")
            data += chunk
        return data

    def message(self) -> tuple[bytes, bytes]:
        header = self.exactly(5)
        return header[:1], self.exactly(struct.unpack("!I", header[1:])[0] - 4)

    def closed(self) -> bool:
        """Whether the proxy closes the connection within the socket's timeout (after
        any bytes it still sends)."""
        try:
            while self.sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
        except TimeoutError:
            return False
        return True


def startup(params: dict[str, str], protocol: int = PROTOCOL_3) -> bytes:
    packet = Startup(params).encode()
    return packet[:4] + struct.pack("!I", protocol) + packet[8:]


def login(wire: Wire, user: str, password: str) -> list[tuple[bytes, object]]:
    """A SCRAM login as ``user``: each message the proxy sent, as (type, what it holds
    that may differ between runs only by chance: lengths and attribute names)."""
    seen: list[tuple[bytes, object]] = []
    kind, body = wire.message()
    seen.append((kind, body))
    assert (kind, body) == (b"R", struct.pack("!I", 10) + MECHANISM.encode() + b"\0\0")
    client = ScramClient(password)
    wire.send(sasl_initial_response(MECHANISM, client.client_first().encode()))
    kind, body = wire.message()
    assert kind == b"R" and body[:4] == struct.pack("!I", 11)
    server_first = body[4:].decode()
    seen.append((kind, [(part[:2], len(part)) for part in server_first.split(",")]))
    wire.send(sasl_response(client.client_final(server_first).encode()))
    kind, body = wire.message()
    fields = error_fields(kind + struct.pack("!I", len(body) + 4) + body)
    seen.append((kind, {**fields, "M": fields.get("M", "").replace(user, "USER")}))
    assert wire.closed()
    return seen


def test_an_unknown_user_and_a_wrong_password_get_the_same_answer(home: Home) -> None:
    """Byte for byte, but for the nonces and the salt (random, per user) and the user name
    in the message; and the same salt again for the same unknown user."""

    def scenario(port: int) -> list[list[tuple[bytes, object]]]:
        answers = []
        for user, options in (("acme", BRANCH), ("nobody", BRANCH),
                              ("postgres", "-c strata.branch=acme/main"),
                              ("pg_monitor", "-c strata.branch=acme/main")):
            wire = Wire.connect(port)
            wire.send(startup({"user": user, "database": "postgres", "options": options}))
            answers.append(login(wire, user, "wrong"))
        return answers

    answers = run_proxy(home, Security(), scenario)
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0][-1] == (b"E", {"S": "FATAL", "V": "FATAL", "C": "28P01",
                                     "M": 'password authentication failed for user "USER"'})

    def salts(port: int) -> list[str]:
        found = []
        for user in ("nobody", "nobody", "someone"):
            wire = Wire.connect(port)
            wire.send(startup({"user": user, "options": BRANCH}))
            wire.message()
            client = ScramClient("x")
            wire.send(sasl_initial_response(MECHANISM, client.client_first().encode()))
            found.append(wire.message()[1].decode(errors="replace").split(",")[1])
            wire.sock.close()
        return found

    first, again, other = run_proxy(home, Security(), salts)
    assert first == again != other


def test_protocol_3_2_is_negotiated_down_and_gss_declined(home: Home) -> None:
    def scenario(port: int) -> tuple[bytes, tuple[bytes, bytes], tuple[bytes, bytes]]:
        wire = Wire.connect(port)
        wire.send(struct.pack("!II", 8, GSSENC_REQUEST))
        declined = wire.exactly(1)
        wire.send(startup({"user": "acme", "options": BRANCH, "_pq_.some_option": "on"},
                          protocol=(3 << 16) | 2))
        return declined, wire.message(), wire.message()

    declined, negotiated, asked = run_proxy(home, Security(), scenario)
    assert declined == b"N"
    assert negotiated == (b"v", struct.pack("!ii", PROTOCOL_3, 1) + b"_pq_.some_option\0")
    assert asked[0] == b"R" and asked[1][:4] == struct.pack("!I", 10)  # then SCRAM, as 3.0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_with_the_generated_certificate_verifies_by_name(home: Home, host: str) -> None:
    files = certs.ensure(home)
    assert files.ca is not None
    assert files.key.stat().st_mode & 0o777 == 0o600
    assert files.key.parent.stat().st_mode & 0o777 == 0o700
    made = files.ca.read_bytes()
    assert certs.ensure(home) == files and files.ca.read_bytes() == made  # kept, not remade
    client_context = ssl.create_default_context(cafile=files.ca)

    def scenario(port: int) -> tuple[bytes, str | None, tuple[bytes, bytes]]:
        wire = Wire.connect(port)
        wire.send(struct.pack("!II", 8, GSSENC_REQUEST))  # libpq's order: GSS, then SSL
        assert wire.exactly(1) == b"N"
        wire.send(struct.pack("!II", 8, SSL_REQUEST))
        accepted = wire.exactly(1)
        wire = Wire(client_context.wrap_socket(wire.sock, server_hostname=host))
        wire.send(startup({"user": "acme", "options": BRANCH}))
        assert isinstance(wire.sock, ssl.SSLSocket)
        return accepted, wire.sock.version(), wire.message()

    security = Security(server_context(files.cert, files.key), require_tls=True)
    accepted, version, asked = run_proxy(home, security, scenario)
    assert accepted == b"S" and version in ("TLSv1.2", "TLSv1.3")
    assert asked == (b"R", struct.pack("!I", 10) + MECHANISM.encode() + b"\0\0")  # no -PLUS


def test_require_tls_refuses_plain_text(home: Home) -> None:
    files = certs.ensure(home)

    def scenario(port: int) -> tuple[bytes, bytes]:
        wire = Wire.connect(port)
        wire.send(struct.pack("!II", 8, SSL_REQUEST))  # declined by nobody: answered S
        assert wire.exactly(1) == b"S"
        wire.sock.close()
        wire = Wire.connect(port)
        wire.send(startup({"user": "acme", "options": BRANCH}))
        return wire.message()

    kind, body = run_proxy(home, Security(server_context(files.cert, files.key), True),
                           scenario)
    fields = error_fields(kind + struct.pack("!I", len(body) + 4) + body)
    assert (kind, fields["C"]) == (b"E", "28000") and "TLS" in fields["M"]
    with pytest.raises(ValueError, match="no certificate"):
        Security(require_tls=True)


def test_a_client_that_does_not_authenticate_in_time_is_cut_off(home: Home) -> None:
    def scenario(port: int) -> tuple[float, float, dict[str, str]]:
        began = time.monotonic()
        silent = Wire.connect(port)  # sends nothing at all
        stalled = Wire.connect(port)
        stalled.send(startup({"user": "acme", "options": BRANCH}))
        assert stalled.message()[0] == b"R"  # asked for SCRAM; never answers
        assert silent.closed()
        silent_after = time.monotonic() - began
        kind, body = stalled.message()
        stalled_after = time.monotonic() - began
        assert stalled.closed()
        return silent_after, stalled_after, error_fields(
            kind + struct.pack("!I", len(body) + 4) + body)

    silent_after, stalled_after, fields = run_proxy(
        home, Security(caps=Caps(auth_timeout_s=1.0)), scenario)
    # Not before the timeout; after it, within the socket's 10 s (``closed``, ``message``).
    assert silent_after > 0.9 and stalled_after > 0.9
    assert fields["C"] == "57014" and "timeout" in fields["M"]


def test_an_oversized_startup_packet_is_dropped(home: Home) -> None:
    def scenario(port: int) -> tuple[bool, bytes]:
        huge = Wire.connect(port)
        huge.send(struct.pack("!II", 10_001, PROTOCOL_3) + b"x" * 9_000)
        dropped = huge.closed()
        fits = Wire.connect(port)
        params = {"user": "acme", "options": BRANCH, "application_name": "a" * 9_900}
        packet = startup(params)
        assert len(packet) <= 10_000
        fits.send(packet)
        return dropped, fits.message()[0]

    assert run_proxy(home, Security(), scenario) == (True, b"R")


def test_full_caps_drop_the_oldest_unauthenticated_connection(home: Home) -> None:
    """Per source: the 4th idle connection from 127.0.0.1 pushes out the 1st; per tenant:
    a 3rd startup for acme pushes out the oldest one for acme; the newest are served."""

    def scenario(port: int) -> list[bool]:
        idle = [Wire.connect(port) for _ in range(3)]
        time.sleep(0.2)  # accepted in this order
        newest = Wire.connect(port)
        newest.send(startup({"user": "acme", "options": BRANCH}))
        assert newest.message()[0] == b"R"
        gone = [wire.closed() for wire in idle[:1]]
        for wire in idle[1:]:
            wire.send(startup({"user": "acme", "options": BRANCH}))
            assert wire.message()[0] == b"R"
        # the second startup for acme filled its cap of 2; the third pushed out the first
        gone.append(newest.closed())
        return gone

    caps = Caps(per_source=3, per_tenant=2)
    assert run_proxy(home, Security(caps=caps), scenario) == [True, True]


def test_many_idle_strangers_leave_room_for_a_client(home: Home) -> None:
    """1,000 idle connections and an oversized startup packet, then a client still gets
    its authentication answer before any of them reached its authentication deadline:
    the caps made room for it, not the strangers' timeouts."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2_200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard}: too low for 1,000 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    security = Security()

    def scenario(port: int) -> bool:
        first_deadline = time.monotonic() + security.caps.auth_timeout_s
        strangers = [Wire.connect(port) for _ in range(1_000)]
        huge = Wire.connect(port)
        huge.send(struct.pack("!II", 1 << 30, PROTOCOL_3))
        try:
            wire = Wire.connect(port)
            wire.send(startup({"user": "acme", "options": BRANCH}))
            login(wire, "acme", "wrong")
            return time.monotonic() < first_deadline
        finally:
            for stranger in strangers:
                stranger.sock.close()

    try:
        assert run_proxy(home, security, scenario), "answered only once strangers timed out"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
