"""Load for compute tests: writers that record what PostgreSQL acknowledged, pgbench TPC-B,
and the consistency checks run after a crash."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

import psycopg

from common.postgres import pg_bin_dir
from compute.node import ComputeSpec


def pg_tool(name: str, spec: ComputeSpec, *args: str, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL client program against a compute's socket, as root (who alone
    logs in there as ``postgres``, by peer)."""
    result = subprocess.run(
        [str(pg_bin_dir() / name), "-h",
         str(spec.socket_dir), "-p", str(spec.port), "-U", "postgres", *args],
        capture_output=True, text=True, check=False, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result


class AckWriters:
    """Threads inserting one row per transaction into ``acks``; an id is recorded only
    after COMMIT returned, so ``acked`` is exactly what PostgreSQL acknowledged."""

    def __init__(self, dsn: str, threads: int, first_id: int) -> None:
        self.acked: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(dsn, first_id + n * 10**9),
                                          daemon=True) for n in range(threads)]

    def __enter__(self) -> AckWriters:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def wait_for(self, count: int, timeout_s: float = 120) -> None:
        """Until at least ``count`` commits were acknowledged: a loaded machine commits
        fewer in a given time, and a test needs enough of them to prove anything."""
        wait_for(lambda: len(self.acked) >= count, timeout_s, f"{count} acknowledged commits")

    def _run(self, dsn: str, next_id: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                while not self._stop.is_set():
                    conn.execute("INSERT INTO acks(id, payload) VALUES (%s, repeat('x', 500))",
                                 (next_id,))
                    self.acked.append(next_id)
                    next_id += 1
        except psycopg.Error:
            pass  # the server went away: what was acknowledged is recorded


class Pgbench:
    """``pgbench`` TPC-B running in the background until stopped or killed."""

    def __init__(self, spec: ComputeSpec, clients: int = 2) -> None:
        self.process = subprocess.Popen(
            [str(pg_bin_dir() / "pgbench"), "-h",
             str(spec.socket_dir), "-p", str(spec.port), "-U", "postgres", "-c", str(clients),
             "-T", "600",
             "-n", "postgres"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> Pgbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()


def create_acks_table(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS acks(id bigint PRIMARY KEY, payload text)")


def assert_acked_present(dsn: str, acked: list[int]) -> None:
    with psycopg.connect(dsn) as conn:
        present = {row[0] for row in conn.execute("SELECT id FROM acks")}
    missing = set(acked) - present
    assert not missing, f"{len(missing)} acknowledged commits lost, e.g. {sorted(missing)[:5]}"


def assert_tpcb_balanced(dsn: str) -> None:
    """pgbench's invariant: every balance total equals the sum of the history deltas."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts),"
            " (SELECT sum(bbalance) FROM pgbench_branches),"
            " (SELECT sum(tbalance) FROM pgbench_tellers),"
            " (SELECT coalesce(sum(delta), 0) FROM pgbench_history),"
            " (SELECT count(*) FROM pgbench_history)").fetchone()
    assert row is not None
    accounts, branches, tellers, history, transactions = row
    assert accounts == branches == tellers == history, row
    assert transactions > 0, "pgbench committed nothing: the check proves nothing"


def amcheck(spec: ComputeSpec) -> None:
    pg_tool("pg_amcheck", spec, "--heapallindexed", "--install-missing", "postgres")


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
