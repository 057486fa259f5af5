"""kill -9 under load, of the compute or of the page server, loses no acknowledged commit."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable

import psycopg

from common.client import StrataClient
from compute.node import ComputeNode
from tests.compute.conftest import TENANT
from tests.compute.load import (
    AckWriters,
    Pgbench,
    amcheck,
    assert_acked_present,
    assert_tpcb_balanced,
    create_acks_table,
)
from tests.servers import PageServerProcess

Cluster = tuple[PageServerProcess, StrataClient]


ENOUGH = 100  # acknowledged commits, for a crash test to prove anything


def _check_after_crash(node: ComputeNode, acked: list[int]) -> None:
    assert len(acked) > ENOUGH, "too few acknowledged commits to prove anything"
    assert_acked_present(node.spec.dsn(), acked)
    assert_tpcb_balanced(node.spec.dsn())
    amcheck(node.spec)


def _kill_compute_under_load(cluster: Cluster, make_compute: Callable[..., ComputeNode],
                             branch: str, full_page_writes: bool) -> None:
    cluster[1].create_branch(TENANT, branch)
    node = make_compute(branch, full_page_writes=full_page_writes)
    node.start()
    create_acks_table(node.spec.dsn())
    rng = random.Random(branch)
    acked: list[int] = []
    for round_no in range(2):
        # ids of their own each round (``acks.id`` is a primary key: a round that reused
        # the previous one's would stop at its first insert and acknowledge nothing)
        with Pgbench(node.spec), AckWriters(node.spec.dsn(), 2, round_no * 10**8) as writers:
            time.sleep(rng.uniform(2.0, 4.0))
            writers.wait_for(ENOUGH // 2 + 1)  # if the machine is slow, a later kill
            node.kill()
        acked += writers.acked
        node.start()  # crash recovery on what the page server has
    _check_after_crash(node, acked)
    node.stop()


def test_kill_9_of_the_compute_loses_nothing(cluster: Cluster,
                                             make_compute: Callable[..., ComputeNode]) -> None:
    _kill_compute_under_load(cluster, make_compute, "kill-fpw-on", full_page_writes=True)


def test_kill_9_with_full_page_writes_off(cluster: Cluster,
                                          make_compute: Callable[..., ComputeNode]) -> None:
    """The shim never tears an 8 KB page, so PostgreSQL needs no full-page images."""
    _kill_compute_under_load(cluster, make_compute, "kill-fpw-off", full_page_writes=False)


def test_kill_9_of_the_page_server_loses_nothing(
        cluster: Cluster, make_compute: Callable[..., ComputeNode]) -> None:
    """The shim retries while the page server restarts; the compute carries on, or, if
    it gave up (EIO makes PostgreSQL stop), a restart recovers every acknowledged commit."""
    server, client = cluster
    client.create_branch(TENANT, "kill-server")
    node = make_compute("kill-server")
    node.start()
    create_acks_table(node.spec.dsn())
    with Pgbench(node.spec), AckWriters(node.spec.dsn(), 2, 0) as writers:
        time.sleep(2.5)
        writers.wait_for(ENOUGH + 1)  # if the machine is slow, a later kill
        assert server.signal(signal.SIGKILL) == -signal.SIGKILL
        server.start()
        time.sleep(2.5)  # load goes on against the restarted server
    acked = list(writers.acked)
    with psycopg.connect(node.spec.dsn(), autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # the compute survived: prove it still writes
    node.kill()
    node.start()
    _check_after_crash(node, acked)
    node.stop()
