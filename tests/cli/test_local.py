"""``strata up`` and ``status`` as a new user meets them: the home found from any directory,
a taken port named with the option that chooses another, ``status`` failing while nothing
serves (issue 11)."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from strata.local import certs
from strata.local.home import Home
from strata.proxy.pgwire import SSL_REQUEST, Startup, error_fields
from tests.cli.conftest import Strata, free_port, strata_home

BRANCH = "-c strata.branch=main"

GENERAL, UNREACHABLE = 1, 5  # strata.cli.errors.ExitCode
# What the CLI says the test process is when it holds a port.
ME = f"pid {os.getpid()} ({Path(sys.executable).name}"


def _hint(option: str) -> str:
    return f"; choose another with `strata up {option} N` (0: any free port)"


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A socket of this process listening on a free port of 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def test_the_home_is_found_from_any_directory() -> None:
    """Without $STRATA_HOME the home is ~/.strata, wherever strata runs."""
    with strata_home() as user:
        here, elsewhere = user / "here", user / "elsewhere"
        here.mkdir(parents=True)
        elsewhere.mkdir()
        cli = Strata(user / ".strata", free_port(), env={"HOME": str(user)}, cwd=here,
                     explicit_home=False)
        try:
            cli.up()
            status = cli.run("status", "--json", cwd=elsewhere).json()
            assert status["home"] == str(user / ".strata")
            assert status["components"][0]["healthy"] is True
            cli.json("tenant", "create", "default", "--empty")
            branches = cli.run("branch", "list", "--json", cwd=elsewhere).json()["branches"]
            assert [branch["name"] for branch in branches] == ["main"]
            assert not (here / ".strata").exists() and not (elsewhere / ".strata").exists()
        finally:
            cli.stop_everything()


def test_status_exits_5_unless_the_page_server_serves(idle_strata: Strata) -> None:
    not_running = (f"strata: the page server of {idle_strata.home} is not running; "
                   "`strata up` starts it")
    down = idle_strata.run("status", expect=UNREACHABLE)
    assert down.stdout.splitlines()[0] == f"home {idle_strata.home}"
    assert down.stderr.splitlines() == [not_running]
    down = idle_strata.run("status", "--json", expect=UNREACHABLE)
    assert down.json()["components"][0]["alive"] is False
    assert down.stderr.splitlines() == [not_running]

    idle_strata.up()
    assert idle_strata.run("status").stderr == ""
    idle_strata.json("down")
    idle_strata.run("status", expect=UNREACHABLE)


def test_the_port_of_another_homes_page_server_is_named(strata: Strata,
                                                        idle_strata: Strata) -> None:
    pid = strata.pageserver_pid()
    message = idle_strata.fail(GENERAL, "up", "--port", str(strata.port),
                               "--metrics-port", "0", "--proxy-port", "0",
                               "--console-port", "0")
    assert message == (f"port {strata.port} (page server) is taken by pid {pid} "
                       f"({Path(sys.executable).name} -m pageserver.main, cwd {strata.home})"
                       + _hint("--port"))
    assert idle_strata.status()["components"][0]["alive"] is False
    assert not (idle_strata.home / "config.json").exists()  # nothing remembered


def test_each_taken_port_is_named_before_anything_starts(
        idle_strata: Strata, listening: socket.socket) -> None:
    port = listening.getsockname()[1]
    message = idle_strata.fail(GENERAL, "up", "--port", str(idle_strata.port),
                               "--metrics-port", str(port), "--proxy-port", "0",
                               "--console-port", "0")
    assert message.startswith(f"port {port} (page server metrics) is taken by {ME}")
    assert message.endswith(_hint("--metrics-port"))
    if os.geteuid() == 0:  # only root starts the proxy
        message = idle_strata.fail(GENERAL, "up", "--port", str(idle_strata.port),
                                   "--metrics-port", "0", "--proxy-port", str(port),
                                   "--console-port", "0")
        assert message.startswith(f"port {port} (proxy) is taken by {ME}")
        assert message.endswith(_hint("--proxy-port"))
    assert idle_strata.status()["components"][0]["alive"] is False


def test_a_port_taken_while_the_server_starts_is_named(idle_strata: Strata) -> None:
    """The page server's own bind failure says the same as the check before it."""
    port = idle_strata.port
    log_file = idle_strata.home / "logs" / "pageserver.log"
    taker = socket.socket()

    def take_port_once_spawned() -> None:  # the server imports for ~1 s before it binds
        deadline = time.monotonic() + 30
        while not log_file.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        taker.bind(("127.0.0.1", port))
        taker.listen()

    thread = threading.Thread(target=take_port_once_spawned)
    thread.start()
    try:
        result = idle_strata.run("up", "--port", str(port), "--metrics-port", "0",
                                 "--proxy-port", "0", "--console-port", "0", expect=GENERAL)
    finally:
        thread.join()
        taker.close()
    first, *tail = result.stderr.splitlines()
    assert first.startswith(f"strata: port {port} (page server) is taken by {ME}")
    assert first.endswith(_hint("--port"))
    assert f"cannot listen on 127.0.0.1:{port}" in tail[-1]


@pytest.mark.skipif(os.geteuid() != 0, reason="strata up starts the proxy as root only")
def test_a_configured_certificate_and_required_tls(tmp_path: Path) -> None:
    """`strata up --tls-cert --tls-key --require-tls`: the proxy serves that certificate,
    refuses plain text, and `strata connect` asks for TLS; no CA of strata's is named."""
    issued = certs.ensure(Home(tmp_path / "elsewhere"))  # an operator's own certificate
    assert issued.ca is not None
    with strata_home() as home:
        cli = Strata(home, free_port())
        try:
            state = cli.up("--tls-cert", str(issued.cert), "--tls-key", str(issued.key),
                           "--require-tls")
            port = int(state["proxy"]["address"].rpartition(":")[2])
            assert cli.json("status")["proxy_ca_file"] is None
            cli.json("tenant", "create", "default", "--empty")
            connect = cli.json("connect", "main")
            assert (connect["sslmode"], connect["sslrootcert"]) == ("require", None)
            assert connect["uri"].endswith("&sslmode=require")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
                plain.sendall(Startup({"user": "default", "options": BRANCH}).encode())
                refused = plain.recv(4096)
            assert refused[:1] == b"E" and error_fields(refused)["C"] == "28000"
            context = ssl.create_default_context(cafile=issued.ca)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.sendall(struct.pack("!II", 8, SSL_REQUEST))
                assert raw.recv(1) == b"S"
                with context.wrap_socket(raw, server_hostname="localhost") as secure:
                    secure.sendall(Startup({"user": "default", "options": BRANCH}).encode())
                    assert secure.recv(4096)[:1] == b"R"  # SCRAM begins, over TLS
        finally:
            cli.stop_everything()


def test_up_serves_the_framed_data_plane_unless_told_grpc(idle_strata: Strata) -> None:
    """Computes started by this home then reach the page server on its unix socket, or
    over gRPC (rfcs/0020)."""
    home = Home(idle_strata.home)
    idle_strata.up()
    assert home.data_plane_address() == f"unix:{home.data_socket()}"
    assert home.data_socket().startswith("@strata-")
    idle_strata.json("down")
    idle_strata.up("--data-plane", "grpc")
    assert home.data_plane_address() == ""
    idle_strata.json("down")
