"""A compute's page cache takes disk for what it holds, and a stop gives it back."""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg

from common.client import StrataClient
from common.sparse import allocated_bytes
from compute.node import STATS_FILE, ComputeNode
from compute.page_cache import DATA_FILE, INDEX_FILE
from tests.compute.conftest import TENANT
from tests.servers import PageServerProcess

Cluster = tuple[PageServerProcess, StrataClient]
MB = 1024 * 1024
SLACK = 256 * 1024  # the file's last block and the filesystem's indirect blocks
SCAN = "SELECT sum(abalance) FROM pgbench_accounts"  # scale 1: ~13 MB through the mount


def _scan(node: ComputeNode) -> int:
    with psycopg.connect(node.spec.dsn(), autocommit=True) as conn:
        row = conn.execute(SCAN).fetchone()
    assert row is not None
    return int(row[0])


def _held_at_stop(node: ComputeNode) -> int:
    """Bytes of pages the cache held when the daemon closed it (its last counters)."""
    stats = json.loads((node.spec.run_dir / STATS_FILE).read_text())
    return int(stats["cache"]["bytes_used"])


def test_the_cache_follows_its_content_and_a_stop_deletes_it(
        cluster: Cluster, make_compute: Callable[..., ComputeNode]) -> None:
    cluster[1].create_branch(TENANT, "cache-disk")
    node = make_compute("cache-disk")  # 256 MB of slots, keeps nothing when stopped
    data = node.spec.cache_dir / DATA_FILE
    node.start()
    try:
        started = allocated_bytes(data)
        total = _scan(node)
        running = allocated_bytes(data)
        assert running >= started + 10 * MB  # the table's pages came in
    finally:
        node.stop()
    assert running <= _held_at_stop(node) + SLACK  # what it held, not its 256 MB
    assert not data.exists() and not (node.spec.cache_dir / INDEX_FILE).exists()

    node.start()  # cold, from the page server alone
    try:
        assert _scan(node) == total
    finally:
        node.kill()  # no close: the killed daemon's file goes when the compute is stopped
    assert not data.exists()


def test_a_stop_keeps_cache_keep_mb_for_the_next_start(
        cluster: Cluster, make_compute: Callable[..., ComputeNode]) -> None:
    cluster[1].create_branch(TENANT, "cache-keep")
    node = make_compute("cache-keep", cache_keep_mb=4)
    data = node.spec.cache_dir / DATA_FILE
    node.start()
    try:
        total = _scan(node)
        assert allocated_bytes(data) >= 10 * MB
    finally:
        node.stop()
    kept = allocated_bytes(data)
    assert 0 < kept <= 4 * MB + SLACK
    assert (node.spec.cache_dir / INDEX_FILE).exists()

    node.start()  # reuses the kept pages
    try:
        assert _scan(node) == total
    finally:
        node.stop()
