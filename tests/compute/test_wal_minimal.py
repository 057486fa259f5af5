"""wal_level=minimal on a compute: a table created and loaded in one transaction writes
almost no WAL, survives kill -9, and a branch at any durable point during the load starts
through ordinary crash recovery with the table either absent or whole (rfcs/0024)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from common.client import StrataClient
from compute.node import ComputeNode
from tests.compute.conftest import TENANT
from tests.compute.load import amcheck
from tests.servers import PageServerProcess

Cluster = tuple[PageServerProcess, StrataClient]
ROWS = 120_000
LOAD = ("CREATE TABLE big (id int PRIMARY KEY, pad text);"
        f"INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, {ROWS}) g")


def _query(node: ComputeNode, sql: str) -> object:
    with psycopg.connect(node.spec.dsn(), autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


def _rows_of_big(node: ComputeNode) -> int | None:
    """Rows of ``big``, None if the table does not exist there."""
    if _query(node, "SELECT to_regclass('big')") is None:
        return None
    return int(str(_query(node, "SELECT count(*) FROM big")))


def test_a_table_loaded_with_minimal_wal_survives_kill_9_and_any_branch_point(
        cluster: Cluster, make_compute: Callable[..., ComputeNode]) -> None:
    _, client = cluster
    client.create_branch(TENANT, "minimal")
    node = make_compute("minimal", wal_level="minimal")
    node.start()
    assert _query(node, "SHOW wal_level") == "minimal"
    wal_before = int(str(_query(node, "SELECT pg_current_wal_lsn() - '0/0'")))
    loaded = threading.Event()

    def load() -> None:
        with psycopg.connect(node.spec.dsn()) as conn:  # one transaction, committed at exit
            conn.execute(LOAD)
        loaded.set()

    loader = threading.Thread(target=load)
    loader.start()
    points: list[str] = []
    while not loaded.is_set() and len(points) < 3:  # durable points inside the transaction
        time.sleep(0.3)
        points.append(f"during-{len(points)}")
        client.create_branch(TENANT, points[-1], parent="minimal")
    loader.join()
    assert loaded.is_set(), "the load failed"
    wal_bytes = int(str(_query(node, "SELECT pg_current_wal_lsn() - '0/0'"))) - wal_before
    table_bytes = int(str(_query(node, "SELECT pg_table_size('big')")))
    assert wal_bytes < table_bytes // 4, (wal_bytes, table_bytes)  # the load skipped WAL
    client.create_branch(TENANT, "after-commit", parent="minimal")
    points.append("after-commit")

    node.kill()
    node.start()  # crash recovery from what the page server holds
    assert _rows_of_big(node) == ROWS
    amcheck(node.spec)
    node.stop()

    for name in points:  # each point: recovery with the default wal_level on its compute
        branch_node = make_compute(name)
        branch_node.start()
        rows = _rows_of_big(branch_node)
        assert rows in ((None, ROWS) if name.startswith("during") else (ROWS,)), (name, rows)
        if rows:
            amcheck(branch_node.spec)
        branch_node.stop()
