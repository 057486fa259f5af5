"""The proxy's authentication against a real PostgreSQL 15 that checks passwords with
SCRAM (``local all all scram-sha-256``, as computes will): the proxy's SCRAM client logs
in as the owner role, exchanges passed through check other roles, and what a client sees
for a wrong password or an unknown role there is what it sees from the proxy's own mock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from common.postgres import pg_bin_dir
from strata.local import passwords
from strata.local.home import Home
from strata.proxy import auth
from strata.proxy.pgwire import (
    Startup,
    authentication_code,
    error_fields,
    parse_startup,
    read_message,
    read_startup_packet,
)
from strata.proxy.relay import relay_streams
from strata.proxy.server import Security
from tests.servers import free_port
from tests.unit.test_proxy_wire import Wire, login, run_proxy, startup

T = TypeVar("T")
SUPERUSER_PASSWORD = "su-secret"
OWNER_PASSWORD = "tenant-secret"
READER_PASSWORD = "reader-secret"


@dataclass(frozen=True)
class Cluster:
    socket_dir: Path
    port: int

    @property
    def socket(self) -> Path:
        return self.socket_dir / f".s.PGSQL.{self.port}"

    def conninfo(self, user: str, password: str) -> str:
        return (f"host={self.socket_dir} port={self.port} user={user} password={password} "
                "dbname=postgres")


def _as_postgres(*command: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True,
                   capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def cluster(compute_host: None) -> Iterator[Cluster]:
    """A PostgreSQL 15 cluster whose local connections need a SCRAM password, with the
    tenant's owner role ``acme`` and another role ``reader``."""
    root = Path(tempfile.mkdtemp(prefix="strata-scram-"))
    os.chmod(root, 0o755)
    datadir, socket_dir = root / "pgdata", root / "socket"
    for directory in (datadir, socket_dir):
        directory.mkdir()
        shutil.chown(directory, "postgres", "postgres")
    pwfile = root / "pwfile"
    pwfile.write_text(SUPERUSER_PASSWORD + "\n")
    shutil.chown(pwfile, "postgres", "postgres")
    bin_dir = pg_bin_dir()
    port = free_port()
    _as_postgres(str(bin_dir / "initdb"), "-U", "postgres", "-A", "scram-sha-256",
                 "--pwfile", str(pwfile), "-D", str(datadir))
    options = f"-c port={port} -c listen_addresses='' -c unix_socket_directories={socket_dir}"
    _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(datadir), "-l", str(datadir / "log"),
                 "-o", options, "-w", "start")
    try:
        made = Cluster(socket_dir, port)
        with psycopg.connect(made.conninfo("postgres", SUPERUSER_PASSWORD),
                             autocommit=True) as conn:
            conn.execute(f"CREATE ROLE acme LOGIN CREATEDB PASSWORD '{OWNER_PASSWORD}'")
            conn.execute(f"CREATE ROLE reader LOGIN PASSWORD '{READER_PASSWORD}'")
        yield made
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(datadir), "-m", "immediate",
                         "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_the_proxy_logs_in_as_the_owner_with_scram(cluster: Cluster) -> None:
    async def log_in(password: str) -> bytes:
        reader, writer = await asyncio.open_unix_connection(cluster.socket)
        try:
            writer.write(Startup({"user": "acme", "database": "postgres"}).encode())
            first = await auth.owner_login(password, reader, writer)
            if first[:1] == b"R":
                while (await read_message(reader))[0] != b"Z":
                    pass  # the server's side of the startup: it is ready for queries
            return first
        finally:
            writer.close()

    accepted = asyncio.run(log_in(OWNER_PASSWORD))
    assert accepted[:1] == b"R" and authentication_code(accepted) == 0
    refused = asyncio.run(log_in("wrong"))
    assert refused[:1] == b"E"
    assert error_fields(refused)["M"] == 'password authentication failed for user "acme"'


def _through(cluster: Cluster, scenario: Callable[[int], T]) -> T:
    """Run ``scenario(port)`` in a thread against a listener that passes each client's
    startup and authentication through to ``cluster`` with ``auth.pass_through``, then
    relays the session: the proxy's path for roles other than the owner."""

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _, body = await read_startup_packet(reader)
            client_startup = parse_startup(body)
            upstream = await asyncio.open_unix_connection(cluster.socket)
            upstream[1].write(client_startup.encode())
            first = await auth.pass_through(client_startup.params["user"], (reader, writer),
                                            upstream)
            writer.write(first)
            if first[:1] == b"R":
                await relay_streams((reader, writer), upstream)
            else:
                upstream[1].close()
        finally:
            writer.close()

    async def main() -> T:
        server = await asyncio.start_server(serve_one, "127.0.0.1", 0)
        async with server:
            return await asyncio.to_thread(scenario, server.sockets[0].getsockname()[1])

    return asyncio.run(main())


def test_other_roles_are_checked_by_postgres_through_the_proxy(cluster: Cluster) -> None:
    def scenario(port: int) -> tuple[object, str]:
        uri = f"postgresql://reader:{READER_PASSWORD}@127.0.0.1:{port}/postgres"
        with psycopg.connect(uri + "?sslmode=disable") as conn:
            who = conn.execute("SELECT current_user, current_database()").fetchone()
        with pytest.raises(psycopg.OperationalError) as wrong:
            psycopg.connect(uri.replace(READER_PASSWORD, "wrong") + "?sslmode=disable")
        return who, str(wrong.value)

    who, wrong = _through(cluster, scenario)
    assert who == ("reader", "postgres")
    assert 'password authentication failed for user "reader"' in wrong


def test_postgres_and_the_proxy_refuse_alike(cluster: Cluster, tmp_path: Path) -> None:
    """A wrong password and an unknown role at PostgreSQL (through the proxy's pass-through)
    and at the proxy itself (a wrong owner password, an unknown tenant): the same messages,
    the same shapes, the same final error."""

    def at_postgres(port: int) -> list[list[tuple[bytes, object]]]:
        answers = []
        for user in ("reader", "ghost"):
            wire = Wire.connect(port)
            wire.send(startup({"user": user, "database": "postgres"}))
            answers.append(login(wire, user, "wrong"))
        return answers

    def at_proxy(port: int) -> list[list[tuple[bytes, object]]]:
        answers = []
        for user in ("acme", "ghost"):
            wire = Wire.connect(port)
            wire.send(startup({"user": user, "options": "-c strata.branch=main"}))
            answers.append(login(wire, user, "wrong"))
        return answers

    home = Home(tmp_path)
    home.proxy_state_file.parent.mkdir(parents=True)
    passwords.ensure(home, "acme")
    passwords.ensure_credential(home, "acme", "main")
    answers = _through(cluster, at_postgres) + run_proxy(home, Security(), at_proxy)
    assert all(answer == answers[0] for answer in answers), answers
