"""Checkpoint costs and the storage history over gRPC on a live page server: what a
checkpoint holds and frees (listed, dry run, real delete agree), the samples each Gc and
Compact call adds, and who may read them (its tenant's tokens; a token limited to
branches sees only those; read-only tokens read but dry-run no delete)."""

from __future__ import annotations

import grpc
import pytest

from common.bearer import call_credentials_metadata
from common.keys import PAGE_SIZE
from common.ops import Create, Mkdir, Write
from pageserver.api import auth
from proto import strata_pb2 as pb
from tests.api.conftest import Live, ingest_once

TIMEOUT = 10
REL_PATH = "base/5/16384"


@pytest.fixture
def reset_fork(live: Live) -> Live:
    """Tenant t whose fork ``fork`` wrote 16 pages, was checkpointed as ``mine`` and then
    reset: only ``mine`` keeps the fork's old timeline."""
    manage, admin = live.manage, live.admin
    manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True), metadata=admin,
                        timeout=TIMEOUT)
    ingest_once(live, "main", [Mkdir("base"), Mkdir("base/5"), Create(REL_PATH)])
    manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="fork"), metadata=admin,
                        timeout=TIMEOUT)
    ingest_once(live, "fork", [Write(REL_PATH, 0, bytes(range(256)) * (16 * PAGE_SIZE // 256))])
    manage.Compact(pb.CompactRequest(tenant="t"), metadata=admin, timeout=TIMEOUT)  # flushes
    manage.CreateCheckpoint(pb.CreateCheckpointRequest(tenant="t", branch="fork",
                                                       name="mine"),
                            metadata=admin, timeout=TIMEOUT)
    manage.RestoreBranch(pb.RestoreBranchRequest(tenant="t", name="fork", parent_latest=True),
                         metadata=admin, timeout=TIMEOUT)
    return live


def _listed(live: Live, metadata: tuple[tuple[str, str], ...],
            sizes: bool = True) -> dict[str, pb.CheckpointInfo]:
    reply = live.manage.ListCheckpoints(pb.ListCheckpointsRequest(tenant="t", sizes=sizes),
                                        metadata=metadata, timeout=TIMEOUT)
    return {c.name: c for c in reply.checkpoints}


def _stored(live: Live) -> int:
    reply: pb.GetTenantResponse = live.manage.GetTenant(
        pb.GetTenantRequest(tenant="t"), metadata=live.admin, timeout=TIMEOUT)
    return reply.stored_bytes


def test_listing_dry_run_and_delete_agree_on_what_a_checkpoint_frees(
        reset_fork: Live) -> None:
    live = reset_fork
    mine = _listed(live, live.admin)["mine"]
    assert mine.reclaim_bytes == mine.held_bytes > 0  # the fork's past, kept by it alone
    assert _listed(live, live.admin, sizes=False)["mine"].reclaim_bytes == 0  # not asked
    plan = live.manage.DeleteCheckpoint(
        pb.DeleteCheckpointRequest(tenant="t", name="mine", dry_run=True),
        metadata=live.admin, timeout=TIMEOUT)
    assert (plan.freed_bytes, plan.gc_bytes) == (mine.reclaim_bytes, 0)
    assert "mine" in _listed(live, live.admin)  # a dry run deletes nothing
    stored = _stored(live)
    done = live.manage.DeleteCheckpoint(pb.DeleteCheckpointRequest(tenant="t", name="mine"),
                                        metadata=live.admin, timeout=TIMEOUT)
    assert done == plan
    assert stored - _stored(live) == done.freed_bytes
    with pytest.raises(grpc.RpcError) as missing:
        live.manage.DeleteCheckpoint(pb.DeleteCheckpointRequest(tenant="t", name="mine",
                                                                dry_run=True),
                                     metadata=live.admin, timeout=TIMEOUT)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_gc_and_compact_add_samples_to_the_storage_history(reset_fork: Live) -> None:
    live = reset_fork
    before = live.manage.StorageHistory(pb.StorageHistoryRequest(tenant="t"),
                                        metadata=live.admin, timeout=TIMEOUT).samples
    assert len(before) == 1  # the fixture's Compact
    live.manage.Gc(pb.GcRequest(tenant="t"), metadata=live.admin, timeout=TIMEOUT)
    history = live.manage.StorageHistory(pb.StorageHistoryRequest(tenant="t"),
                                         metadata=live.admin, timeout=TIMEOUT)
    assert history.period_s == live.engine.config.storage_sample_period_s
    first, last = history.samples
    assert first == before[0] and last.at_us > first.at_us
    assert last.stored_bytes == _stored(live)
    branches = {b.name: b for b in last.branches}
    assert set(branches) == {"fork", "main"}
    info = live.manage.GetBranch(pb.GetBranchRequest(tenant="t", name="main"),
                                 metadata=live.admin, timeout=TIMEOUT).branch
    assert (branches["main"].owned_bytes, branches["main"].history_bytes) == \
        (info.owned_bytes, info.history_bytes)
    (mark,) = last.checkpoints
    assert (mark.name, mark.branch) == ("mine", "fork")
    assert mark.reclaim_bytes == _listed(live, live.admin)["mine"].reclaim_bytes
    since = live.manage.StorageHistory(pb.StorageHistoryRequest(tenant="t",
                                                                since_us=last.at_us),
                                       metadata=live.admin, timeout=TIMEOUT).samples
    assert list(since) == [last]


def test_who_may_read_costs_and_history(reset_fork: Live) -> None:
    live = reset_fork
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant="u", empty=True),
                             metadata=live.admin, timeout=TIMEOUT)

    def as_token(**claims: object) -> tuple[tuple[str, str], ...]:
        tenant = str(claims.pop("tenant", "t"))
        return call_credentials_metadata(
            live.authority.issue(tenant, auth.Scope.TENANT, 600, **claims))  # type: ignore[arg-type]

    reader = as_token(read_only=True)
    assert _listed(live, reader)["mine"].reclaim_bytes > 0
    live.manage.StorageHistory(pb.StorageHistoryRequest(tenant="t"), metadata=reader,
                               timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as refused:
        live.manage.DeleteCheckpoint(pb.DeleteCheckpointRequest(tenant="t", name="mine",
                                                                dry_run=True),
                                     metadata=reader, timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "read-only" in (refused.value.details() or "")

    main_only = as_token(branches=("main",))
    assert _listed(live, main_only) == {}  # mine is the fork's
    (taken,) = live.manage.StorageHistory(pb.StorageHistoryRequest(tenant="t"),
                                          metadata=main_only, timeout=TIMEOUT).samples
    assert [b.name for b in taken.branches] == ["main"] and not taken.checkpoints
    with pytest.raises(grpc.RpcError) as outside:
        live.manage.DeleteCheckpoint(pb.DeleteCheckpointRequest(tenant="t", name="mine",
                                                                dry_run=True),
                                     metadata=main_only, timeout=TIMEOUT)
    assert outside.value.code() == grpc.StatusCode.PERMISSION_DENIED

    other = as_token(tenant="u")
    for call, request in ((live.manage.StorageHistory, pb.StorageHistoryRequest(tenant="t")),
                          (live.manage.ListCheckpoints,
                           pb.ListCheckpointsRequest(tenant="t", sizes=True))):
        with pytest.raises(grpc.RpcError) as foreign:
            call(request, metadata=other, timeout=TIMEOUT)
        assert foreign.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "'u'" in (foreign.value.details() or "")
