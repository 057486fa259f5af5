"""A tenant's storage quota over gRPC: growth refused with RESOURCE_EXHAUSTED, nothing lost."""

from __future__ import annotations

import grpc
import pytest

from common.convert import op_to_pb
from common.keys import PAGE_SIZE
from common.ops import Create, FileOp, Truncate, Write
from compute.remote import refused_for_storage
from pageserver.api import auth
from proto import strata_pb2 as pb
from tests.api.conftest import Live

TIMEOUT = 10


def _ingest(live: Live, epoch: int, first_id: int,
            *batches: list[FileOp]) -> list[pb.IngestResponse]:
    """Send ``batches``, numbered from ``first_id``, on one stream with a compute token of
    tenant t; the acknowledgements."""
    requests = [pb.IngestRequest(open=pb.IngestOpen(tenant="t", branch="main",
                                                    writer_epoch=epoch))]
    requests += [pb.IngestRequest(batch=pb.IngestBatch(
        batch_id=first_id + index, ops=[op_to_pb(op) for op in ops]))
        for index, ops in enumerate(batches)]
    return list(live.ingest.Ingest(iter(requests), metadata=live.metadata("t", auth.Scope.COMPUTE),
                                   timeout=TIMEOUT))


def _tenant(live: Live) -> pb.GetTenantResponse:
    response: pb.GetTenantResponse = live.manage.GetTenant(
        pb.GetTenantRequest(tenant="t"), metadata=live.admin, timeout=TIMEOUT)
    return response


def _set_quota(live: Live, max_storage: int) -> None:
    live.manage.SetQuotas(pb.SetQuotasRequest(tenant="t", quotas=pb.Quotas(
        max_storage=max_storage)), metadata=live.admin, timeout=TIMEOUT)


def test_a_tenant_at_its_storage_quota_cannot_grow_and_loses_nothing(live: Live) -> None:
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True),
                             metadata=live.admin, timeout=TIMEOUT)
    epoch = int(live.manage.AttachWriter(pb.AttachWriterRequest(tenant="t", branch="main"),
                                         metadata=live.admin, timeout=TIMEOUT).writer_epoch)
    _set_quota(live, 100 * PAGE_SIZE)
    assert _tenant(live).quotas.max_storage == 100 * PAGE_SIZE
    acks = _ingest(live, epoch, 1, [Create("f"), Write("f", 0, b"a" * 80 * PAGE_SIZE)],
                   [Write("f", 80 * PAGE_SIZE, b"b" * 40 * PAGE_SIZE)])
    assert [ack.storage_full for ack in acks] == [False, True]  # the quota may be crossed once
    stored = _tenant(live).stored_bytes
    assert stored >= 120 * PAGE_SIZE

    with pytest.raises(grpc.RpcError) as refused:
        _ingest(live, epoch, 3, [Write("f", 120 * PAGE_SIZE, b"c")])
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"tenant 't' uses {stored} bytes of its storage quota of {100 * PAGE_SIZE}" \
        in (refused.value.details() or "")
    assert refused_for_storage(refused.value)  # as a compute tells it from a busy server
    main = live.engine.timeline("t", "main")
    assert main.stat("f").size == 120 * PAGE_SIZE  # nothing of the refused batch applied

    # Overwrites and shrinks still pass: PostgreSQL rewrites its WAL and frees space so.
    _ingest(live, epoch, 3, [Write("f", 0, b"d" * PAGE_SIZE)], [Truncate("f", 110 * PAGE_SIZE)])
    assert main.read_file("f", 0, PAGE_SIZE) == b"d" * PAGE_SIZE
    assert main.read_file("f", 100 * PAGE_SIZE, PAGE_SIZE) == b"b" * PAGE_SIZE

    _set_quota(live, 0)  # unlimited again
    (ack,) = _ingest(live, epoch, 5, [Write("f", 110 * PAGE_SIZE, b"e")])
    assert not ack.storage_full
    assert main.stat("f").size == 110 * PAGE_SIZE + 1
