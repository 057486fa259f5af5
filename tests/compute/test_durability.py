"""Kill -9 of PostgreSQL and the shim under load loses no acknowledged transaction."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Callable

import psycopg

from compute.node import ComputeNode
from pageserver.importer import pg_bin_dir


def _writer(dsn: str, start: int, acked: list[int], stop: threading.Event) -> None:
    """Insert rows one transaction each; record an id only once COMMIT returned."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            next_id = start
            while not stop.is_set():
                conn.execute("INSERT INTO acks(id, payload) VALUES (%s, repeat('x', 500))",
                             (next_id,))
                acked.append(next_id)
                next_id += 1
    except psycopg.Error:
        pass  # the server was killed


def _amcheck(node: ComputeNode) -> None:
    result = subprocess.run(
        ["runuser", "-u", "postgres", "--", str(pg_bin_dir() / "pg_amcheck"),
         "--heapallindexed", "--install-missing", "-h", "127.0.0.1",
         "-p", str(node.spec.port), "-U", "postgres", "postgres"],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _kill_under_load(node: ComputeNode, seconds: float, round_no: int) -> list[int]:
    acked: list[int] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_writer, args=(
        node.spec.dsn(), (round_no * 4 + n) * 10_000_000, acked, stop)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    node.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    return acked


def _run_kill_test(make_compute: Callable[..., ComputeNode], branch: str,
                   full_page_writes: bool) -> None:
    node = make_compute(branch, full_page_writes=full_page_writes)
    node.start()
    with psycopg.connect(node.spec.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS acks(id bigint PRIMARY KEY, payload text)")
    rng = random.Random(7)
    acked: list[int] = []
    for round_no in range(2):
        acked += _kill_under_load(node, rng.uniform(2.0, 4.0), round_no)
        node.start()  # crash recovery on what the page server has
    assert len(acked) > 100, "too few acknowledged commits to prove anything"
    with psycopg.connect(node.spec.dsn()) as conn:
        present = {row[0] for row in conn.execute("SELECT id FROM acks")}
    missing = set(acked) - present
    assert not missing, f"{len(missing)} acknowledged commits lost, e.g. {sorted(missing)[:5]}"
    _amcheck(node)
    node.stop()


def test_kill_9_loses_no_acknowledged_commit(make_compute: Callable[..., ComputeNode]) -> None:
    _run_kill_test(make_compute, "main", full_page_writes=True)
