"""Tenants on one host: each tenant's role is a database owner, never a superuser, and each
tenant's computes run under an OS identity of their own.

Two tenants, ``pg`` (A) and ``neighbour`` (B), with computes side by side; A's role attacks
the host and B from its own connection, as a client of the proxy would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from common.client import StrataClient
from common.postgres import pg_bin_dir
from compute import identity
from compute.node import ComputeNode, ComputeSpec, ComputeStatus
from compute.tenant_role import Logins
from strata.local.passwords import pg_verifier
from tests.compute.attacks import ATTACKS
from tests.compute.conftest import TENANT
from tests.servers import PageServerProcess, free_port

# A name no other module gives a tenant it deletes: deleting a tenant removes its OS user
# host-wide, and under pytest-xdist another module runs while this one's computes do.
OTHER = "neighbour"
PASSWORD = {TENANT: "a-secret-of-tenant-pg", OTHER: "a-secret-of-tenant-neighbour"}


@pytest.fixture(scope="module")
def two_tenants(cluster: tuple[PageServerProcess, StrataClient]
                ) -> Iterator[dict[str, ComputeNode]]:
    """Running computes of tenants ``pg`` and ``neighbour`` on one host."""
    server, client = cluster
    client.create_tenant(OTHER)
    root = Path(tempfile.mkdtemp(prefix="strata-isolation-"))  # pytest's tmp is 0700
    os.chmod(root, 0o755)
    nodes = {tenant: ComputeNode(ComputeSpec(
        f"127.0.0.1:{server.port}", server.home / "state" / "auth" / "admin.token", tenant,
        "main", root / tenant, free_port())) for tenant in (TENANT, OTHER)}
    try:
        for tenant, node in nodes.items():
            node.start(logins=Logins(pg_verifier(PASSWORD[tenant])))
        yield nodes
    finally:
        for node in nodes.values():
            node.kill()
        client.delete_tenant(OTHER)
        identity.remove(OTHER)
        shutil.rmtree(root, ignore_errors=True)


def connect(node: ComputeNode, user: str | None = None, password: str | None = None,
            dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    """A password login to the compute, as a client the proxy relays would make."""
    tenant = node.spec.tenant
    return psycopg.connect(host=str(node.spec.socket_dir), port=node.spec.port,
                           user=user or tenant, password=password or PASSWORD[tenant],
                           dbname=dbname, autocommit=True, connect_timeout=10)


def as_os_user(name: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", name, "--", *command], capture_output=True,
                          text=True, check=False, timeout=30)




@pytest.mark.parametrize("attack", ATTACKS)
def test_the_tenant_role_cannot_reach_the_host_or_other_tenants(
        two_tenants: dict[str, ComputeNode], attack: str) -> None:
    node = two_tenants[TENANT]
    with connect(node) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS loot (line text)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(attack.format(me=TENANT,
                                       other_workdir=two_tenants[OTHER].spec.workdir))
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (False,)


def test_the_tenant_role_does_what_an_application_owner_does(
        two_tenants: dict[str, ComputeNode]) -> None:
    node = two_tenants[TENANT]
    with connect(node) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute("CREATE TABLE app.items (id serial PRIMARY KEY, name text)")
        conn.execute("CREATE INDEX ON app.items (name)")
        conn.execute("CREATE VIEW app.names AS SELECT name FROM app.items")
        conn.execute("CREATE FUNCTION app.shout(t text) RETURNS text LANGUAGE plpgsql "
                     "AS $$ BEGIN RETURN upper(t); END $$")
        conn.execute("INSERT INTO app.items (name) VALUES ('apple'), ('pear')")
        assert conn.execute("SELECT app.shout(name) FROM app.names ORDER BY 1").fetchall() \
            == [("APPLE",), ("PEAR",)]
        for extension in ("pgcrypto", "pg_trgm", "hstore", "citext", "uuid-ossp",
                          "btree_gin", "btree_gist"):
            conn.execute(f'CREATE EXTENSION "{extension}"')
        assert conn.execute("SELECT similarity('apple', 'apples') > 0.5, "
                            "length(gen_random_uuid()::text)").fetchone() == (True, 36)
        conn.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-secret'")
        conn.execute("GRANT USAGE ON SCHEMA app TO reader")
        conn.execute("GRANT SELECT ON app.items TO reader")
        conn.execute("CREATE DATABASE appdb")
    with connect(node, "reader", "reader-secret") as conn:
        assert conn.execute("SELECT current_user, count(*) FROM app.items").fetchone() == \
            ("reader", 2)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("DELETE FROM app.items")
    with connect(node, dbname="appdb") as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == \
            (TENANT, "appdb")
        conn.execute("CREATE TABLE t (x int)")


def test_every_login_authenticates(two_tenants: dict[str, ComputeNode]) -> None:
    node = two_tenants[TENANT]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(node, password="wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(node, user="nobody-here", password="anything")
    with connect(node, user="postgres", password="ignored") as conn:  # root, by peer
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (True,)
    tenant_user = identity.user_name(TENANT)
    # Not even the compute's own OS user is let in as postgres: peer maps root alone.
    refused = as_os_user(tenant_user, str(pg_bin_dir() / "psql"), "-X", "-h",
                         str(node.spec.socket_dir), "-p", str(node.spec.port), "-U", "postgres",
                         "-d", "postgres", "-c", "SELECT 1")
    assert refused.returncode != 0 and "authentication failed" in refused.stderr


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_each_tenant_runs_as_its_own_os_user(two_tenants: dict[str, ComputeNode]) -> None:
    uids = {tenant: found.uid for tenant in two_tenants
            if (found := identity.find(tenant)) is not None}
    assert len(set(uids.values())) == 2 and 0 not in uids.values()
    for tenant, node in two_tenants.items():
        assert node.pids is not None
        assert _uid(node.pids.postmaster) == uids[tenant]
        assert _uid(node.pids.mount) == uids[tenant]
    other = two_tenants[OTHER].spec
    intruder = identity.user_name(TENANT)
    for target in (other.workdir, other.mountpoint, other.socket_dir, other.scratch_dir,
                   other.workdir / "cache", other.run_dir):
        listed = as_os_user(intruder, "ls", str(target))
        assert listed.returncode != 0 and "Permission denied" in listed.stderr, target
    dialled = as_os_user(intruder, str(pg_bin_dir() / "psql"), "-X", "-h",
                         str(other.socket_dir), "-p", str(other.port), "-U", OTHER,
                         "-d", "postgres", "-c", "SELECT 1")
    assert dialled.returncode != 0 and "Permission denied" in dialled.stderr
    # The owner reaches its own data through its mount; the kernel checks the modes.
    own = two_tenants[TENANT].spec
    assert as_os_user(intruder, "ls", str(own.mountpoint / "base")).returncode == 0
    assert as_os_user(intruder, "ls", str(own.token_file)).returncode != 0  # root's alone


def test_kill_does_not_believe_a_forged_pid_file(
        cluster: tuple[PageServerProcess, StrataClient], two_tenants: dict[str, ComputeNode],
        make_compute: Callable[..., ComputeNode]) -> None:
    """A tenant can write its compute's postmaster.pid: naming another tenant's postmaster
    there must not make root kill that one."""
    victim = two_tenants[OTHER]
    assert victim.pids is not None
    cluster[1].create_branch(TENANT, "forger")
    forger = make_compute("forger")
    forger.start(logins=Logins(pg_verifier(PASSWORD[TENANT])))
    pid_file = forger.spec.scratch_dir / "postmaster.pid"
    own = pid_file.read_text().split("\n", 1)
    forger.stop()
    forger.spec.scratch_dir.mkdir(exist_ok=True)
    pid_file.write_text(f"{victim.pids.postmaster}\n{own[1] if len(own) > 1 else ''}")
    forger.kill()
    assert victim.status() is ComputeStatus.RUNNING
    with connect(victim) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)



def test_a_compute_starts_after_its_tenant_dropped_database_postgres(
        cluster: tuple[PageServerProcess, StrataClient],
        make_compute: Callable[..., ComputeNode]) -> None:
    """The tenant owns ``postgres`` and may drop it; the role set-up at the next start
    must not depend on it."""
    cluster[1].create_branch(TENANT, "dropper")
    node = make_compute("dropper")
    node.start(logins=Logins(pg_verifier(PASSWORD[TENANT])))
    with connect(node, dbname="template1") as conn:
        conn.execute("DROP DATABASE postgres")
    node.stop()
    node.start(logins=Logins(pg_verifier(PASSWORD[TENANT])))
    with connect(node, dbname="template1") as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'postgres'"
                            ).fetchone() == (0,)
