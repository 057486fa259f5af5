"""The proxy with real computes: connect by branch, wake on connect, idle suspend, shared
cold starts, cancel requests and clean errors (psycopg through the proxy); the user and
database a client names are the server's; roles the tenant makes log in; TLS, current
libpq's startup and a crowd of idle strangers."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from common.postgres import pg_bin_dir
from strata.local import computes, passwords
from strata.local.home import Home
from strata.proxy.limits import Caps
from strata.proxy.pgwire import Startup
from strata.proxy.wake import TIMEOUT_REFRESH_S
from tests.cli.conftest import CLI_TIMEOUT_S, REPO, Strata, free_port, strata_home
from tests.compute.attacks import ATTACKS
from tests.compute.load import wait_for

SUSPEND_S = 3.0


@dataclass
class ProxyRun:
    cli: Strata
    port: int
    log: Path

    def uri(self, branch: str, tenant: str = "acme", password: str | None = None,
            user: str | None = None, dbname: str = "postgres") -> str:
        """The owner's URI with the branch's credential, as `strata connect` prints it; or
        another ``user``'s (password "": none)."""
        if password is None:
            password = passwords.ensure_credential(Home(self.cli.home), tenant, branch)
        credentials = f"{user or tenant}:{password}" if password else user or tenant
        return (f"postgresql://{credentials}@127.0.0.1:{self.port}/{dbname}"
                f"?options=-c%20strata.branch%3D{tenant}%2F{branch}&sslmode=disable")

    def connect_uri(self, branch: str) -> str:
        """What `strata connect` prints."""
        return self.cli.run("connect", branch, "--tenant", "acme").stdout.strip()

    def starts(self, branch: str) -> int:
        return self.log.read_text().count(f"starting the compute of acme/{branch}\n")

    def compute(self, branch: str) -> dict[str, Any]:
        """The branch's entry in `strata compute list --json`, or {}."""
        listed = self.cli.json("compute", "list", "--tenant", "acme")["computes"]
        return next((c for c in listed if c["branch"] == branch), {})

    def status(self, branch: str) -> str:
        return str(self.compute(branch).get("status", "none"))

    def compute_now(self, branch: str) -> dict[str, Any]:
        """The branch's entry as `strata compute list` makes it, made in this process: for
        a state that lasts the suspend timeout (3 s), which one CLI run can outlast on a
        loaded machine."""
        home = Home(self.cli.home)
        node = computes.find(home, "acme", branch)
        return computes.describe(node, computes.proxy_view(home)) if node else {}


@pytest.fixture(scope="module")
def proxy(compute_host: None) -> Iterator[ProxyRun]:
    """`strata up` with a short suspend timeout: the page server and the proxy."""
    with strata_home() as home:
        cli = Strata(home, free_port())
        try:
            state = cli.up("--suspend-timeout", f"{SUSPEND_S:g}s")
            cli.json("tenant", "create", "acme")
            cli.run("connect", "main", "--tenant", "acme")  # makes the tenant's password
            port = int(state["proxy"]["address"].rpartition(":")[2])
            yield ProxyRun(cli, port, home / "logs" / "proxy.log")
        finally:
            try:
                cli.stop_everything()  # the proxy first, so it wakes nothing meanwhile
            finally:
                for node in computes.listing(Home(home), "acme"):
                    with contextlib.suppress(Exception):
                        node.kill()


def test_wake_on_connect_and_suspend_when_idle(proxy: ProxyRun) -> None:
    proxy.cli.json("branch", "create", "sleepy", "--tenant", "acme")
    assert proxy.status("sleepy") == "none"
    assert proxy.connect_uri("sleepy") == proxy.uri("sleepy")  # password included
    with psycopg.connect(proxy.connect_uri("sleepy"), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept(x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
        assert proxy.status("sleepy") == "running"
        wait_for(lambda: proxy.compute("sleepy")["clients"] == 1, 30, "the proxy's view")
    wait_for(lambda: (proxy.compute_now("sleepy").get("idle_s") or 0) > 0, SUSPEND_S,
             "the compute to show as idle")
    wait_for(lambda: proxy.status("sleepy") == "suspended", SUSPEND_S + 30, "idle suspend")
    with psycopg.connect(proxy.uri("sleepy")) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
    assert proxy.starts("sleepy") == 2


def test_relayed_sessions_move_bulk_data_and_release_the_compute(proxy: ProxyRun) -> None:
    """Many sessions at once copy megabytes in and out through the relay, one is ended by
    the server (its backend terminated); afterwards no client counts and the idle compute
    is suspended, as after quiet sessions."""
    proxy.cli.json("branch", "create", "bulk", "--tenant", "acme")
    rows = [f"{n}\t{os.urandom(300).hex()}\n" for n in range(4000)]  # ~2.4 MB per copy
    with psycopg.connect(proxy.uri("bulk"), autocommit=True) as conn:
        victim = psycopg.connect(proxy.uri("bulk"), autocommit=True)
        victim_pid = victim.execute("SELECT pg_backend_pid()").fetchone()
        wait_for(lambda: proxy.compute("bulk")["clients"] == 2, 30, "both clients counted")
        copied: list[object] = []

        def session() -> None:
            try:
                with psycopg.connect(proxy.uri("bulk"), autocommit=True) as own:
                    own.execute("CREATE TEMP TABLE blobs(n int, body text)")
                    with own.cursor().copy("COPY blobs FROM STDIN") as copy:
                        copy.write("".join(rows))
                    with own.cursor().copy("COPY (SELECT * FROM blobs ORDER BY n) "
                                           "TO STDOUT") as copy:
                        copied.append(b"".join(bytes(chunk) for chunk in copy).decode()
                                      == "".join(rows))
            except psycopg.Error as exc:
                copied.append(exc)

        threads = [threading.Thread(target=session) for _ in range(12)]
        for thread in threads:
            thread.start()
        conn.execute("SELECT pg_terminate_backend(%s)", victim_pid)
        for thread in threads:
            thread.join(timeout=120)
        assert copied == [True] * 12
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
        victim.close()
    wait_for(lambda: proxy.compute("bulk")["clients"] == 0, 30, "every client to be gone")
    wait_for(lambda: proxy.status("bulk") == "suspended", SUSPEND_S + 30, "idle suspend")


def test_a_compute_that_died_is_restarted_on_the_next_connect(proxy: ProxyRun) -> None:
    proxy.cli.json("branch", "create", "fragile", "--tenant", "acme")
    with psycopg.connect(proxy.uri("fragile"), autocommit=True) as conn:
        conn.execute("CREATE TABLE survived AS SELECT 7 AS x")
    node = computes.find(Home(proxy.cli.home), "acme", "fragile")
    assert node is not None and node.pids is not None
    for pid in (node.pids.postmaster, node.pids.mount):  # kill -9 from outside
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: proxy.status("fragile") == "crashed", 30, "the crash to show")
    with psycopg.connect(proxy.uri("fragile")) as conn:
        assert conn.execute("SELECT x FROM survived").fetchone() == (7,)
    assert proxy.starts("fragile") == 2


def test_a_branch_can_have_its_own_suspend_timeout(proxy: ProxyRun) -> None:
    proxy.cli.json("branch", "create", "patient", "--tenant", "acme", "--suspend-timeout", "1h")
    with psycopg.connect(proxy.uri("patient")) as conn:
        conn.execute("SELECT 1")
    time.sleep(SUSPEND_S + 3)  # the proxy's default would have stopped it by now
    assert proxy.status("patient") == "running"
    # a timeout changed while the compute idles counts without a new connect
    proxy.cli.json("branch", "set", "patient", "--tenant", "acme", "--suspend-timeout", "1s")
    wait_for(lambda: proxy.status("patient") == "suspended", TIMEOUT_REFRESH_S + 20,
             "the suspend after the shortened timeout")


def test_concurrent_clients_share_one_cold_start(proxy: ProxyRun) -> None:
    proxy.cli.json("branch", "create", "crowd", "--tenant", "acme")
    results: list[object] = []

    def client() -> None:
        try:
            with psycopg.connect(proxy.uri("crowd"), connect_timeout=60) as conn:
                results.append(conn.execute("SELECT 1").fetchone())
        except psycopg.Error as exc:
            results.append(exc)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert results == [(1,)] * 8
    assert proxy.starts("crowd") == 1


def test_only_the_branchs_credential_opens_it(proxy: ProxyRun) -> None:
    """Wrong password, another tenant's credential, another branch's, the tenant's own
    password (the proxy's, for computes), no password: refused before any compute starts;
    the branch's credential works."""
    home = Home(proxy.cli.home)
    proxy.cli.json("tenant", "create", "other")
    other_credential = proxy.cli.json("connect", "main", "--tenant", "other")["password"]
    proxy.cli.json("branch", "create", "guarded", "--tenant", "acme")
    proxy.cli.json("branch", "create", "neighbour", "--tenant", "acme")
    neighbour = proxy.cli.json("connect", "neighbour", "--tenant", "acme")["password"]
    for uri in (proxy.uri("guarded", password="wrong"),
                proxy.uri("guarded", password=other_credential),
                proxy.uri("guarded", password=neighbour),
                proxy.uri("guarded", password=passwords.ensure(home, "acme")),
                proxy.uri("guarded", password="")):
        refused = r"password authentication failed|no password supplied"
        with pytest.raises(psycopg.OperationalError, match=refused):
            psycopg.connect(uri)
    assert proxy.starts("guarded") == 0 and proxy.status("guarded") == "none"
    with psycopg.connect(proxy.uri("guarded")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)



def test_local_clients_reach_a_branch_on_the_proxys_unix_socket(proxy: ProxyRun) -> None:
    """`connect --socket`: the proxy's unix socket, the same login (a wrong password is
    refused there too, before any compute starts), a session relayed like one over TCP,
    and a socket every local user can open."""
    proxy.cli.json("branch", "create", "nearby", "--tenant", "acme")
    shown = proxy.cli.json("connect", "nearby", "--tenant", "acme", "--socket")
    socket_dir = Path(shown["host"])
    assert socket_dir.is_absolute() and shown["sslmode"] == "disable"
    path = socket_dir / f".s.PGSQL.{proxy.port}"
    assert path.is_socket() and path.stat().st_mode & 0o777 == 0o777
    wrong = shown["uri"].replace(shown["password"], "wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong)
    assert proxy.starts("nearby") == 0
    with psycopg.connect(shown["uri"], autocommit=True) as conn:
        conn.execute("CREATE TABLE near AS SELECT g FROM generate_series(1, 50000) g")
        assert conn.execute("SELECT count(*), sum(g) FROM near").fetchone() == (
            50000, 50000 * 50001 // 2)
    with psycopg.connect(proxy.uri("nearby")) as conn:  # the same branch over TCP
        assert conn.execute("SELECT count(*) FROM near").fetchone() == (50000,)


def test_a_read_only_credential_reads_everything_and_writes_nothing(proxy: ProxyRun) -> None:
    proxy.cli.json("branch", "create", "shelf", "--tenant", "acme")
    with psycopg.connect(proxy.uri("shelf"), autocommit=True) as conn:
        conn.execute("CREATE TABLE books (title text)")
        conn.execute("INSERT INTO books VALUES ('dune')")
    reader = proxy.cli.json("connect", "shelf", "--tenant", "acme", "--read-only")
    owner = proxy.cli.json("connect", "shelf", "--tenant", "acme")
    assert reader["user"] == "strata_readonly" and reader["password"] != owner["password"]
    with psycopg.connect(reader["uri"], autocommit=True) as conn:
        assert conn.execute("SELECT current_user, title FROM books").fetchall() == \
            [("strata_readonly", "dune")]
        conn.execute("SET default_transaction_read_only = off")  # its own choice, and yet:
        for statement in ("INSERT INTO books VALUES ('x')", "UPDATE books SET title = 'y'",
                          "DELETE FROM books", "DROP TABLE books", "TRUNCATE books",
                          "CREATE TABLE mine (x int)", "SET ROLE acme",
                          "GRANT acme TO strata_readonly", "CREATE DATABASE mine"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(proxy.uri("shelf", user="strata_readonly", password=owner["password"]))
    with psycopg.connect(proxy.uri("shelf")) as conn:
        assert conn.execute("SELECT title FROM books").fetchall() == [("dune",)]

def test_cancel_reaches_the_right_backend(proxy: ProxyRun) -> None:
    proxy.cli.json("branch", "create", "slow", "--tenant", "acme")
    with psycopg.connect(proxy.uri("slow"), autocommit=True) as conn:
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        # Only a cancel ends the sleep with QueryCanceled (no statement_timeout is set).
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")


def test_errors_are_postgres_errors_and_the_proxy_keeps_serving(proxy: ProxyRun) -> None:
    with pytest.raises(psycopg.OperationalError, match="no branch 'ghost' in tenant 'acme'"):
        psycopg.connect(proxy.uri("ghost"))
    with pytest.raises(psycopg.OperationalError, match="must be a tenant name"):
        psycopg.connect(proxy.uri("main", tenant="no%20such"))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(proxy.uri("main", tenant="nobody", password="a-guess"))
    with psycopg.connect(proxy.uri("main", dbname="template1")) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("template1",)
    no_branch = proxy.uri("main").replace("options=-c%20strata.branch%3Dacme%2Fmain&", "")
    with pytest.raises(psycopg.OperationalError, match=r"strata\.branch=TENANT/BRANCH"):
        psycopg.connect(no_branch)


def _stored(cli: Strata, timeline_id: str) -> list[Path]:
    return [path for path in (cli.home / "objects").rglob("*")
            if path.is_file() and timeline_id in str(path)]


def _agent_loop(proxy: ProxyRun, name: str) -> None:
    """Fork, migrate, checkpoint, break things, restore: the data is back; then the TTL
    expires and the fork, its past and its storage are gone."""
    cli = proxy.cli
    # A TTL that outlives the loop's work on a loaded machine; it is cut short below.
    fork = cli.json("branch", "create", name, "--tenant", "acme", "--ttl", "10m")
    uri = proxy.connect_uri(name)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders(id int PRIMARY KEY, total numeric NOT NULL)")
        conn.execute("INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 500) g")
    cli.json("checkpoint", "create", name, f"{name}-migrated", "--tenant", "acme")
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("DROP TABLE orders")
        conn.execute("CREATE TABLE oops(x int)")
    restored = cli.json("branch", "restore", name, "--to-checkpoint", f"{name}-migrated",
                        "--tenant", "acme")
    assert restored["name"] == name and restored["compute_restarted"] is True
    with psycopg.connect(uri) as conn:  # same URI, the state of the checkpoint
        assert conn.execute("SELECT count(*), sum(total) FROM orders").fetchone() == (
            500, 187875)
        assert conn.execute("SELECT to_regclass('oops')").fetchone() == (None,)
    cli.json("compact", "--tenant", "acme")  # the fork's layers reach the store
    assert _stored(cli, fork["timeline_id"]) and _stored(cli, restored["timeline_id"])

    cli.json("branch", "set", name, "--ttl", "1s", "--tenant", "acme")  # the agent is done

    def gone() -> bool:
        names = [b["name"] for b in cli.json("branch", "list", "--tenant", "acme")["branches"]]
        return name not in names

    wait_for(gone, 90, f"the reaper to delete {name}")
    assert not _stored(cli, fork["timeline_id"]) and not _stored(cli, restored["timeline_id"])
    assert f"{name}-migrated" not in [
        c["name"] for c in cli.json("checkpoint", "list", "--tenant", "acme")["checkpoints"]]


def test_agent_loops_in_parallel(proxy: ProxyRun) -> None:
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            _agent_loop(proxy, name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"agent-{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors


def test_reset_takes_the_parent_and_preserve_keeps_the_old_state(proxy: ProxyRun) -> None:
    cli = proxy.cli
    cli.json("branch", "create", "scratch", "--tenant", "acme")
    with psycopg.connect(proxy.uri("scratch"), autocommit=True) as conn:
        conn.execute("CREATE TABLE experiment(x int)")
    reset = cli.json("branch", "reset", "scratch", "--preserve-as", "scratch-try-1",
                     "--tenant", "acme")
    assert reset["preserved_as"] == "scratch-try-1" and reset["parent"] == "main"
    with psycopg.connect(proxy.uri("scratch")) as conn:
        assert conn.execute("SELECT to_regclass('experiment')").fetchone() == (None,)
    with psycopg.connect(proxy.uri("scratch-try-1")) as conn:
        assert conn.execute("SELECT to_regclass('experiment')").fetchone() == ("experiment",)


def test_expired_branches_are_reaped_with_their_compute_and_storage(proxy: ProxyRun) -> None:
    cli = proxy.cli
    made = cli.json("branch", "create", "short-lived", "--tenant", "acme", "--ttl", "10s")
    with psycopg.connect(proxy.uri("short-lived"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT generate_series(1, 10000) x")
    node = computes.find(Home(cli.home), "acme", "short-lived")
    assert node is not None
    with psycopg.connect(node.spec.dsn(), autocommit=True) as conn:  # the operator's socket:
        conn.execute("CHECKPOINT")  # the tenant's role may not
    cli.json("compact", "--tenant", "acme")  # its own layers now exist in the store

    def stored() -> list[str]:
        return [str(p) for p in (cli.home / "objects").rglob("*")
                if p.is_file() and made["timeline_id"] in str(p)]

    assert stored(), "the branch wrote nothing to the store: the test proves nothing"

    def gone() -> bool:
        names = [b["name"] for b in cli.json("branch", "list", "--tenant", "acme")["branches"]]
        return "short-lived" not in names

    wait_for(gone, 60, "the reaper to delete the expired branch")
    assert proxy.status("short-lived") == "none"  # its compute was stopped and removed
    assert not stored()
    assert "deleted expired branch acme/short-lived" in proxy.log.read_text()


def test_compute_quota_is_a_clear_postgres_error(proxy: ProxyRun) -> None:
    """With at most one compute running, a second branch waits for the first to stop."""
    cli = proxy.cli
    cli.json("tenant", "create", "tiny")
    cli.run("connect", "main", "--tenant", "tiny")
    cli.json("tenant", "set", "tiny", "--max-computes", "1")
    cli.json("branch", "create", "one", "--tenant", "tiny")
    cli.json("branch", "create", "two", "--tenant", "tiny")
    first = psycopg.connect(proxy.uri("one", tenant="tiny"))
    try:
        with pytest.raises(psycopg.OperationalError, match="runs 1 computes, its quota is 1"):
            psycopg.connect(proxy.uri("two", tenant="tiny"))
    finally:
        first.close()
    cli.json("compute", "stop", "one", "--tenant", "tiny")
    with psycopg.connect(proxy.uri("two", tenant="tiny")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    cli.json("compute", "stop", "two", "--tenant", "tiny")


def test_branch_diff_shows_what_a_migration_changed(proxy: ProxyRun) -> None:
    cli = proxy.cli
    cli.json("branch", "create", "migrated", "--tenant", "acme")
    with psycopg.connect(proxy.uri("migrated"), autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices(id int PRIMARY KEY, amount numeric)")
    changed = cli.json("branch", "diff", "main", "migrated", "--tenant", "acme")
    assert not changed["same"]
    added = [line for line in changed["diff"] if line.startswith("+") and "invoices" in line]
    assert any("CREATE TABLE public.invoices" in line for line in added)
    assert cli.json("branch", "diff", "main", "main", "--tenant", "acme")["same"] is True
    assert "no branch 'nope'" in cli.fail(3, "branch", "diff", "main", "nope", "--tenant",
                                           "acme")
    for name in ("migrated", "main"):
        cli.json("compute", "stop", name, "--tenant", "acme")


def test_strata_psql_runs_psql_without_the_password_in_its_arguments(proxy: ProxyRun) -> None:
    """`strata psql BRANCH ARGS` becomes psql through the proxy (exec: same process), with
    the password in the environment only; once it exits, `compute list` counts no client."""
    proxy.cli.json("branch", "create", "typed", "--tenant", "acme")
    password = passwords.ensure_credential(Home(proxy.cli.home), "acme", "typed",
                                           read_only=True)
    assert password
    run = subprocess.Popen(
        [sys.executable, "-m", "strata.cli", "psql", "--tenant", "acme", "--read-only",
         "typed", "--", "-At", "-c", "SELECT 'ok', pg_sleep(4)"],
        cwd=REPO, env={**os.environ, "STRATA_HOME": str(proxy.cli.home)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        cmdline = Path(f"/proc/{run.pid}/cmdline")
        wait_for(lambda: Path(cmdline.read_bytes().split(b"\0")[0].decode()).name == "psql",
                 30, "strata to exec psql")
        assert password.encode() not in cmdline.read_bytes()
        wait_for(lambda: proxy.compute("typed").get("clients") == 1, 30, "psql to connect")
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert (run.returncode, out, err) == (0, "ok|\n", "")
    assert proxy.compute("typed")["clients"] == 0


def test_the_user_and_database_a_client_names_are_the_servers(proxy: ProxyRun) -> None:
    """Any database of the branch is reachable, roles the tenant makes log in, and what
    libpq reports is what the server says."""
    proxy.cli.json("branch", "create", "named", "--tenant", "acme")
    with psycopg.connect(proxy.uri("named"), autocommit=True) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "acme", "postgres")
        assert (conn.info.user, conn.info.dbname) == ("acme", "postgres")
        conn.execute("CREATE DATABASE app")
        conn.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-secret'")
    with psycopg.connect(proxy.uri("named", dbname="app"), autocommit=True) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("app",)
        conn.execute("CREATE TABLE notes AS SELECT 'hello' AS body")
        conn.execute("GRANT SELECT ON notes TO reader")
    reader = proxy.uri("named", user="reader", password="reader-secret", dbname="app")
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT current_user, current_database(), body FROM notes"
                            ).fetchone() == ("reader", "app", "hello")
        assert (conn.info.user, conn.info.dbname) == ("reader", "app")
    for branch in ("no-such-branch", "main"):  # main was forked before: no reader there
        with pytest.raises(psycopg.OperationalError,
                           match=r'password authentication failed for user "reader"|'
                                 r'role "reader" does not exist'):
            psycopg.connect(proxy.uri(branch, user="reader", password="reader-secret"))
    assert proxy.starts("no-such-branch") == 0
    proxy.cli.json("compute", "stop", "named", "--tenant", "acme")


def test_current_libpq_startups_connect(proxy: ProxyRun) -> None:
    """Protocol 3.2 (libpq 18's max_protocol_version=latest) is negotiated down to 3.0;
    gssencmode=prefer is declined and the client goes on."""
    extra = "&gssencmode=prefer"
    if psycopg.pq.version() >= 180000:
        extra += "&max_protocol_version=latest"
    with psycopg.connect(proxy.uri("main") + extra) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.server_version // 10000 == 15
    if psycopg.pq.version() < 180000:
        pytest.skip(f"libpq {psycopg.pq.version()}: 3.2 tested only by tests/unit")


def test_tls_verifies_with_the_ca_of_strata_status(proxy: ProxyRun) -> None:
    """psql (PostgreSQL 15's) with sslmode=verify-full, by address and by name; and the
    URI `strata connect --json` prints works with psql as it is."""
    ca_file = proxy.cli.json("status")["proxy_ca_file"]
    assert ca_file and Path(ca_file).is_file()
    psql = str(pg_bin_dir() / "psql")
    password = passwords.ensure_credential(Home(proxy.cli.home), "acme", "main")
    for host in ("127.0.0.1", "localhost"):
        conninfo = (f"host={host} port={proxy.port} user=acme dbname=postgres "
                    f"sslmode=verify-full sslrootcert={ca_file} "
                    "options='-c strata.branch=acme/main'")
        done = subprocess.run([psql, conninfo, "-Atc", r"\conninfo"], capture_output=True,
                              text=True, timeout=CLI_TIMEOUT_S,
                              env={**os.environ, "PGPASSWORD": password}, check=False)
        assert done.returncode == 0, done.stderr
        assert "SSL connection (protocol: TLSv1." in done.stdout
    connect = proxy.cli.json("connect", "main", "--tenant", "acme")
    assert {"uri", "host", "port", "user", "dbname", "password", "options",
            "sslrootcert"} <= set(connect)
    assert (connect["user"], connect["dbname"], connect["sslrootcert"]) == (
        "acme", "postgres", ca_file)
    done = subprocess.run([psql, connect["uri"], "-Atc", "SELECT current_user"],
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "acme\n", "")


def test_idle_strangers_leave_room_for_a_client(proxy: ProxyRun) -> None:
    """1,000 idle anonymous connections and an oversized startup packet, then a client
    is served (connect, authenticate, a query) before any of them reached its
    authentication deadline: the caps made room for it, not the strangers' timeouts."""
    with psycopg.connect(proxy.uri("main")) as conn:  # the compute runs: no cold start
        conn.execute("SELECT 1")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    strangers: list[socket.socket] = []
    try:
        first_deadline = time.monotonic() + Caps().auth_timeout_s  # before any connects
        strangers = [socket.create_connection(("127.0.0.1", proxy.port))
                     for _ in range(1_000)]
        oversized = socket.create_connection(("127.0.0.1", proxy.port))
        oversized.sendall(struct.pack("!II", 10_001, 196608) + b"x" * 10_000)
        strangers.append(oversized)
        with psycopg.connect(proxy.uri("main")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert time.monotonic() < first_deadline, "served only once strangers timed out"
    finally:
        for stranger in strangers:
            stranger.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_compute_woken_for_a_client_that_never_logs_in_is_suspended(proxy: ProxyRun) -> None:
    """Roles other than the owner are checked by the compute, which must run for that. A
    client dropped meanwhile (here: the oldest of 201 unauthenticated connections from
    one address, the cap being 200) leaves a compute nobody connects to: it is stopped
    like any idle one."""
    proxy.cli.json("branch", "create", "woken", "--tenant", "acme")
    ghost = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    strangers: list[socket.socket] = []
    try:
        ghost.sendall(Startup({"user": "ghost", "database": "postgres",
                               "options": "-c strata.branch=acme/woken"}).encode())
        deadline = time.monotonic() + 30
        while proxy.starts("woken") == 0:  # polled tightly: the start takes ~0.4 s
            assert time.monotonic() < deadline, "the compute was not woken"
            time.sleep(0.002)
        strangers = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(200)]
        assert ghost.recv(4096) == b""  # dropped before the compute could answer
    finally:
        ghost.close()
        for stranger in strangers:
            stranger.close()
    wait_for(lambda: proxy.status("woken") == "running", 60, "the start to go on")
    wait_for(lambda: proxy.status("woken") == "suspended", SUSPEND_S + 30, "idle suspend")


def test_a_tenants_session_through_the_proxy_cannot_reach_the_host(proxy: ProxyRun) -> None:
    """The attacks of test_isolation, as a client of the proxy makes them: each refused,
    and the session is the tenant's role, not a superuser."""
    proxy.cli.json("branch", "create", "attacker", "--tenant", "acme")
    other = computes.workdir(Home(proxy.cli.home), "other-tenant", "main")
    with psycopg.connect(proxy.uri("attacker"), autocommit=True) as conn:
        assert conn.execute("SELECT current_user, rolsuper FROM pg_roles "
                            "WHERE rolname = current_user").fetchone() == ("acme", False)
        conn.execute("CREATE TABLE loot (line text)")
        for attack in ATTACKS:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attack.format(me="acme", other_workdir=other))


def test_no_secret_is_on_any_command_line_while_a_compute_runs(proxy: ProxyRun) -> None:
    """The tenant's password, the branch's credentials and the compute's token appear in
    no process's arguments (PostgreSQL, the mount daemon, the proxy, the page server)."""
    proxy.cli.json("branch", "create", "quiet", "--tenant", "acme")
    home = Home(proxy.cli.home)
    reader = proxy.cli.json("connect", "quiet", "--tenant", "acme", "--read-only")
    with psycopg.connect(proxy.uri("quiet")) as conn, psycopg.connect(reader["uri"]):
        conn.execute("SELECT 1")
        node = computes.find(home, "acme", "quiet")
        assert node is not None
        secrets = {passwords.ensure(home, "acme"), reader["password"],
                   passwords.ensure_credential(home, "acme", "quiet"),
                   node.spec.token_file.read_text().strip()}
        seen = 0
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                arguments = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
                seen += bool(arguments)
                assert not [s for s in secrets if s.encode() in arguments], arguments
        assert seen > 10


def test_connects_are_in_the_audit_log(proxy: ProxyRun) -> None:
    proxy.cli.json("branch", "create", "audited", "--tenant", "acme")
    reader = proxy.cli.json("connect", "audited", "--tenant", "acme", "--read-only")
    with psycopg.connect(proxy.uri("audited")), psycopg.connect(reader["uri"]):
        pass

    def connects() -> list[tuple[str, str, str, str]]:
        return [(e["target"], e["scope"], e["peer"], e["details"]["user"])
                for e in proxy.cli.json("audit", "--tenant", "acme", "--since", "5m")["entries"]
                if e["action"] == "connect" and e["target"] == "audited"]

    wait_for(lambda: len(connects()) == 2, 30, "the proxy to log both connects")
    assert connects() == [("audited", "owner", "127.0.0.1", "acme"),
                          ("audited", "read-only", "127.0.0.1", "strata_readonly")]
    entries = proxy.cli.json("audit", "--tenant", "acme", "--since", "5m")["entries"]
    assert any(e["action"] == "branch.create" and e["target"] == "audited" for e in entries)
