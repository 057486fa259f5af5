"""A live move of a tenant under load: two page servers on one object store, PostgreSQL
running pgbench and acknowledged inserts on a compute of the tenant, `detach` on the
first and, a few seconds later, `attach` on the second. The compute follows the tenant
without a restart and loses nothing it acknowledged."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from common.processes import process_alive
from compute.node import ComputeNode
from tests.compute.conftest import TENANT, _pgbench_tables, _spec, admin_client
from tests.compute.load import (
    AckWriters,
    Pgbench,
    amcheck,
    assert_acked_present,
    assert_tpcb_balanced,
    create_acks_table,
    wait_for,
)
from tests.servers import PageServerProcess

# What PostgreSQL logs when a backend dies and the postmaster reinitialises (a PANIC on
# an fsync the page server refused, for one): the move must cause none of it.
NOWHERE_S = 3.0  # between the detach and the attach; the compute retries for 30 s
CRASH_MARKERS = ("PANIC", "terminated by signal", "reinitializing", "database system was "
                 "interrupted")


@pytest.fixture
def home(compute_host: None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="strata-live-move-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _postgres_log(node: ComputeNode) -> str:
    return (node.spec.workdir / "postgres.log").read_text(errors="replace")


def test_a_tenant_moves_under_load_with_its_compute_connected(home: Path,
                                                             shared_store: str) -> None:
    first = PageServerProcess(home / "a", shared_store, data_plane=True)
    second = PageServerProcess(home / "b", shared_store, data_plane=True)
    node: ComputeNode | None = None
    try:
        first.start()
        second.start()
        with admin_client(first) as client:
            client.create_tenant(TENANT)
        _pgbench_tables(first, home)
        node = ComputeNode(_spec(first, home / "compute", "main"))
        node.start()
        pids = node.pids
        assert pids is not None
        create_acks_table(node.spec.dsn())
        log_before = len(_postgres_log(node))
        with Pgbench(node.spec) as bench, AckWriters(node.spec.dsn(), 2, 0) as writers:
            wait_for(lambda: len(writers.acked) > 100, 60, "commits before the move")
            with admin_client(first) as on_first, admin_client(second) as on_second:
                on_first.detach_tenant(TENANT)
                time.sleep(NOWHERE_S)  # attached nowhere: the compute waits and retries
                attached = on_second.attach_tenant(TENANT)
                assert attached.here
            moved_at = len(writers.acked)
            wait_for(lambda: len(writers.acked) > moved_at + 200, 120, "commits after the move")
            assert bench.process.poll() is None, "pgbench stopped during the move"
        acked = list(writers.acked)

        assert process_alive(pids.mount, b"compute.mount")
        assert process_alive(pids.postmaster, b"postgres")
        log = _postgres_log(node)[log_before:]
        assert not [marker for marker in CRASH_MARKERS if marker in log], log[-3000:]
        assert "moved from" in (node.spec.workdir / "mount.log").read_text()

        first.stop()  # the compute no longer needs the page server it left
        with psycopg.connect(node.spec.dsn(), autocommit=True) as conn:
            conn.execute("INSERT INTO acks(id, payload) VALUES (-1, 'after')")
        assert_acked_present(node.spec.dsn(), [*acked, -1])
        assert_tpcb_balanced(node.spec.dsn())
        amcheck(node.spec)
        node.stop()
    finally:
        if node is not None:
            node.kill()
        first.stop()
        second.stop()
