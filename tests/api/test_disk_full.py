"""A full disk (ENOSPC, injected where the page server writes) is answered UNAVAILABLE,
which computes retry, with a message that says so, and the server keeps serving: under
the object store (the local directory), a batch waits until space is back and then
lands once; under the layer cache, the job fails and runs again."""

from __future__ import annotations

import errno

import grpc
import pytest
from prometheus_client import generate_latest

from common.convert import op_to_pb
from common.ops import Batch, Create, Write
from compute.remote import RETRYABLE
from pageserver import timeline
from pageserver.config import LogSettings
from pageserver.remote import LocalDirectoryStorage
from proto import strata_pb2 as pb
from tests.api.conftest import Live

TIMEOUT = 10


def _no_space(*args: object, **kwargs: object) -> int:
    raise OSError(errno.ENOSPC, "No space left on device", "/state/objects/tenants/t/log/1")


def _tenant(live: Live) -> int:
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True),
                             metadata=live.admin, timeout=TIMEOUT)
    return int(live.manage.AttachWriter(pb.AttachWriterRequest(tenant="t", branch="main"),
                                        metadata=live.admin, timeout=TIMEOUT).writer_epoch)


def _ingest(live: Live, epoch: int, path: str) -> list[pb.IngestResponse]:
    return list(live.ingest.Ingest(iter([
        pb.IngestRequest(open=pb.IngestOpen(tenant="t", branch="main", writer_epoch=epoch)),
        pb.IngestRequest(batch=pb.IngestBatch(batch_id=1, ops=[op_to_pb(Create(path))])),
    ]), metadata=live.admin, timeout=TIMEOUT))


def _count(live: Live, method: str, code: str) -> float:
    return live.metrics.registry.get_sample_value(
        "strata_rpc_requests_total", {"method": method, "code": code}) or 0.0


def test_a_full_disk_under_the_object_store_is_retryable(
        live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    live.engine.config.log = LogSettings(ack_timeout_s=0.5)
    epoch = _tenant(live)
    with monkeypatch.context() as full:
        full.setattr(LocalDirectoryStorage, "_write_temp", _no_space)
        with pytest.raises(grpc.RpcError) as err:
            _ingest(live, epoch, "waits")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    assert err.value.code() in RETRYABLE
    assert "has not confirmed the batch yet" in str(err.value.details())
    assert "No space left on device" in str(err.value.details())
    assert _count(live, "IngestService/Ingest", "INTERNAL") == 0, \
        generate_latest(live.metrics.registry).decode()
    # Space is back: the waiting batch lands with the next one, each exactly once.
    assert [r.batch_id for r in _ingest(live, epoch, "next")] == [1]
    main = live.engine.timeline("t", "main")
    assert set(main.list_files()) == {"waits", "next"}
    assert main.durable_lsn == main.last_lsn


def test_a_full_disk_while_writing_layers_is_retryable(
        live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    _tenant(live)
    main = live.engine.timeline("t", "main")
    for tag in range(2):  # two L0 deltas for a forced compaction to merge
        main.ingest(Batch((Create(f"f{tag}"), Write(f"f{tag}", 0, bytes([tag]) * 8192))))
        main.freeze()
        main.flush()
    request = pb.CompactRequest(tenant="t", force=True)
    with monkeypatch.context() as full:
        full.setattr(timeline, "write_layer", _no_space)
        with pytest.raises(grpc.RpcError) as err:
            live.manage.Compact(request, metadata=live.admin, timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    assert "the page server's disk is full" in str(err.value.details())
    assert live.manage.Compact(request, metadata=live.admin, timeout=TIMEOUT).l0_merged == 2
