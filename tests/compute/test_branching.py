"""Branches of a database under load start through crash recovery and see exactly the
past they were cut at; time travel by WAL position and by time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from common.client import StrataClient
from compute.node import ComputeNode
from strata.cli.main import run
from tests.compute.conftest import TENANT
from tests.compute.load import (
    AckWriters,
    Pgbench,
    amcheck,
    assert_tpcb_balanced,
    create_acks_table,
)
from tests.servers import PageServerProcess

Cluster = tuple[PageServerProcess, StrataClient]


def _ids(dsn: str, table: str) -> set[int]:
    with psycopg.connect(dsn) as conn:
        return {row[0] for row in conn.execute(f"SELECT id FROM {table}")}


def test_branch_cut_mid_load_is_consistent_and_isolated(
        cluster: Cluster, make_compute: Callable[..., ComputeNode]) -> None:
    _, client = cluster
    client.create_branch(TENANT, "busy")
    source = make_compute("busy")
    source.start()
    create_acks_table(source.spec.dsn())
    with psycopg.connect(source.spec.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE marks(id int PRIMARY KEY)")
        with Pgbench(source.spec), AckWriters(source.spec.dsn(), 2, 0):
            for mark in range(1, 301):
                conn.execute("INSERT INTO marks VALUES (%s)", (mark,))
                if mark == 150:  # commit 150 is durable, 151 not begun: cut here
                    cut = client.create_branch(TENANT, "cut", parent="busy")
    assert cut.branch_lsn > 0
    branch = make_compute("cut")
    branch.start()  # PostgreSQL finds a crashed cluster and recovers it
    assert _ids(branch.spec.dsn(), "marks") == set(range(1, 151))
    assert_tpcb_balanced(branch.spec.dsn())
    amcheck(branch.spec)
    with psycopg.connect(branch.spec.dsn(), autocommit=True) as on_branch, \
            psycopg.connect(source.spec.dsn(), autocommit=True) as on_source:
        on_branch.execute("INSERT INTO marks VALUES (-1)")
        on_source.execute("INSERT INTO marks VALUES (-2)")
        on_branch.execute("CREATE TABLE only_on_branch(x int)")
    assert -1 in _ids(branch.spec.dsn(), "marks") and -2 not in _ids(branch.spec.dsn(), "marks")
    assert -2 in _ids(source.spec.dsn(), "marks") and -1 not in _ids(source.spec.dsn(), "marks")
    with psycopg.connect(source.spec.dsn()) as conn:
        assert conn.execute("SELECT to_regclass('only_on_branch')").fetchone() == (None,)
    branch.stop()
    source.stop()


def _strata(server: PageServerProcess, *args: str) -> None:
    token_file = server.home / "state" / "auth" / "admin.token"
    code = run([*args, "--tenant", TENANT, "--server", f"127.0.0.1:{server.port}",
                "--token-file", str(token_file)])
    assert code == 0, f"strata {' '.join(args)} exited {code}"


def test_time_travel_by_time_and_by_wal_position(
        cluster: Cluster, make_compute: Callable[..., ComputeNode]) -> None:
    """Rows stamped with their commit time: a branch at time T (or at the WAL position
    read right after a commit) holds exactly the rows committed up to then."""
    server, client = cluster
    client.create_branch(TENANT, "history")
    node = make_compute("history")
    node.start()
    with psycopg.connect(node.spec.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE events(id int PRIMARY KEY, at timestamptz NOT NULL)")
        moments: dict[int, tuple[datetime, str]] = {}
        for event in range(1, 9):
            conn.execute("INSERT INTO events VALUES (%s, clock_timestamp())", (event,))
            wal = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            assert wal is not None
            moments[event] = (datetime.now(UTC), wal[0])
            conn.execute("SELECT pg_sleep(0.3)")
    for event in (3, 6):
        at_time, at_wal = moments[event]
        _strata(server, "branch", "create", f"t{event}", "--parent", "history",
                "--at-time", at_time.isoformat())
        _strata(server, "branch", "create", f"w{event}", "--parent", "history",
                "--at-wal-lsn", at_wal)
        for name in (f"t{event}", f"w{event}"):
            past = make_compute(name)
            past.start()
            with psycopg.connect(past.spec.dsn()) as conn:
                rows = conn.execute("SELECT id, at FROM events ORDER BY id").fetchall()
            assert [row[0] for row in rows] == list(range(1, event + 1)), name
            assert all(row[1] <= at_time for row in rows)
            past.stop()
    node.stop()
