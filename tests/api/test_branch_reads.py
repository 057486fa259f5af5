"""The lighter branch reads: GetBranch ``head_only`` (what the proxy's undo reads while it
holds a destructive statement) answers the record and the head without sizes, and
ListBranches walks each branch's layers for its history bytes only when asked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.client import StrataClient
from pageserver import gc
from tests.api.conftest import Live

TENANT = "reads"
RECORD = ("name", "timeline_id", "parent", "branch_lsn", "last_lsn", "last_wal_lsn",
          "last_time_us", "created_at_us", "expires_at_us", "writer_epoch", "undo_off",
          "protected", "history_window_s")
SIZES = ("logical_size", "owned_bytes", "history_bytes", "reclaim_bytes")


@pytest.fixture
def client(live: Live) -> Iterator[StrataClient]:
    with StrataClient(f"127.0.0.1:{live.server.port}", live.admin[0][1].split()[1]) as admin:
        admin.create_tenant(TENANT)  # initdb: main has layers, so sizes
        admin.create_branch(TENANT, "fork", ttl_s=3600)
        admin.update_branch(TENANT, "fork", undo_off=True)
        yield admin


def test_head_only_answers_the_record_without_sizes(client: StrataClient) -> None:
    for name in ("main", "fork"):
        full = client.get_branch(TENANT, name)
        head = client.get_branch(TENANT, name, head_only=True)
        assert [getattr(head, f) for f in RECORD] == [getattr(full, f) for f in RECORD]
        assert [getattr(head, f) for f in SIZES] == [0, 0, 0, 0]
    assert client.get_branch(TENANT, "main").logical_size > 0
    assert client.get_branch(TENANT, "fork", head_only=True).undo_off


def test_list_computes_history_bytes_only_when_asked(live: Live, client: StrataClient) -> None:
    main = live.engine.tenant(TENANT).branch("main")
    client.compact(TENANT, force=True)  # layers, and images over the older ones
    assert gc.history_bytes(main) > 0
    plain = {b.name: b for b in client.list_branches(TENANT)}
    asked = {b.name: b for b in client.list_branches(TENANT, history_bytes=True)}
    assert plain["main"].history_bytes == 0
    assert asked["main"].history_bytes == gc.history_bytes(main)
    assert asked["main"].history_bytes == client.get_branch(TENANT, "main").history_bytes
    assert plain["main"].owned_bytes == asked["main"].owned_bytes > 0  # other sizes stay
