"""A tenant at its storage quota, through PostgreSQL: the client gets disk_full (SQLSTATE
53100), and every acknowledged row is there after the quota is raised and the compute
restarted."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from common.client import StrataClient
from compute.node import ComputeNode
from proto import strata_pb2 as pb
from tests.compute.conftest import TENANT
from tests.servers import PageServerProcess

Cluster = tuple[PageServerProcess, StrataClient]
HEADROOM = 8 * 1000 * 1000  # bytes of quota left when the test starts filling it
ROWS_PER_COMMIT = 200  # ~200 kB of heap a commit
MAX_COMMITS = 2000  # ~400 MB: far past any quota the test sets


def test_storage_quota_is_a_full_disk_and_loses_nothing(
        cluster: Cluster, make_compute: Callable[..., ComputeNode]) -> None:
    _, client = cluster
    node = make_compute("main")
    node.start()
    dsn = node.spec.dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE fill(id bigint PRIMARY KEY, pad text)")
    stored = client.get_tenant(TENANT).stored_bytes
    client.set_quotas(TENANT, pb.Quotas(max_storage=stored + HEADROOM))
    acked: list[int] = []
    refused: psycopg.Error | None = None
    with psycopg.connect(dsn, autocommit=True) as conn:
        for commit in range(MAX_COMMITS):
            first = commit * ROWS_PER_COMMIT
            try:
                conn.execute("INSERT INTO fill SELECT g, repeat('x', 1000) "
                             "FROM generate_series(%s::bigint, %s) g",
                             (first, first + ROWS_PER_COMMIT - 1))
            except psycopg.Error as exc:
                refused = exc
                break
            acked.append(commit)
    assert refused is not None, "the quota never refused anything"
    print(f"\nafter {len(acked)} commits the client got SQLSTATE {refused.sqlstate}: "
          f"{str(refused).strip()}")
    assert refused.sqlstate == "53100", f"{refused.sqlstate}: {refused}"
    assert "No space left on device" in str(refused)
    assert acked, "nothing was committed before the quota: the test proves nothing"
    with psycopg.connect(dsn, autocommit=True) as conn:  # PostgreSQL is still up
        assert conn.execute("SELECT count(*) FROM fill").fetchone() == (
            len(acked) * ROWS_PER_COMMIT,)

    client.set_quotas(TENANT, pb.Quotas(max_storage=0))
    node.kill()  # the strongest restart: crash recovery from what the page server has
    node.start()
    with psycopg.connect(node.spec.dsn(), autocommit=True) as conn:
        ids = {row[0] for row in conn.execute("SELECT id / %s FROM fill GROUP BY 1 "
                                              "HAVING count(*) = %s",
                                              (ROWS_PER_COMMIT, ROWS_PER_COMMIT))}
        assert set(acked) <= ids, f"lost commits: {sorted(set(acked) - ids)[:5]}"
        conn.execute("INSERT INTO fill VALUES (-1, 'after the quota was raised')")
    node.stop()
