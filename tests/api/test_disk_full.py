"""A full disk (ENOSPC, injected where the page server writes) is answered UNAVAILABLE,
which computes retry, with a message that says so, and the server keeps serving: under
the object store (the local directory), a batch waits until space is back and then
lands once; under the layer cache, the job fails and runs again."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from prometheus_client import generate_latest

from common.convert import op_to_pb
from common.ops import Batch, Create, FileOp, Write
from compute.remote import RETRYABLE
from pageserver import timeline
from pageserver.api.limits import CallLimits
from pageserver.config import LogSettings
from pageserver.remote import local as local_storage
from proto import strata_pb2 as pb
from tests.api.conftest import Live, serving
from tests.small_disk import fill

TIMEOUT = 10


def _no_space(*args: object, **kwargs: object) -> int:
    raise OSError(errno.ENOSPC, "No space left on device", "/state/objects/tenants/t/log/1")


def _tenant(live: Live) -> int:
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True),
                             metadata=live.admin, timeout=TIMEOUT)
    return int(live.manage.AttachWriter(pb.AttachWriterRequest(tenant="t", branch="main"),
                                        metadata=live.admin, timeout=TIMEOUT).writer_epoch)


def _ingest(live: Live, epoch: int, path: str, size: int = 0,
            batch_id: int = 1) -> list[pb.IngestResponse]:
    ops: list[FileOp] = [Create(path), *([Write(path, 0, b"s" * size)] if size else [])]
    return list(live.ingest.Ingest(iter([
        pb.IngestRequest(open=pb.IngestOpen(tenant="t", branch="main", writer_epoch=epoch)),
        pb.IngestRequest(batch=pb.IngestBatch(batch_id=batch_id,
                                              ops=[op_to_pb(op) for op in ops])),
    ]), metadata=live.admin, timeout=TIMEOUT))


def _count(live: Live, method: str, code: str) -> float:
    return live.metrics.registry.get_sample_value(
        "strata_rpc_requests_total", {"method": method, "code": code}) or 0.0


def test_a_full_disk_under_the_object_store_is_retryable(
        live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    live.engine.config.log = LogSettings(ack_timeout_s=0.5)
    epoch = _tenant(live)
    with monkeypatch.context() as full:
        full.setattr(local_storage, "_write_all", _no_space)  # every object write
        with pytest.raises(grpc.RpcError) as err:
            _ingest(live, epoch, "waits")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    assert err.value.code() in RETRYABLE
    assert "has not confirmed the batch yet" in str(err.value.details())
    assert "No space left on device" in str(err.value.details())
    assert _count(live, "IngestService/Ingest", "INTERNAL") == 0, \
        generate_latest(live.metrics.registry).decode()
    # Space is back: the waiting batch lands with the next one, each exactly once.
    assert [r.batch_id for r in _ingest(live, epoch, "next", batch_id=2)] == [2]
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


def test_a_really_full_disk_under_the_store_delays_batches_until_space_is_back(
        tmp_path: Path, small_disk: Callable[[Path, int], Path]) -> None:
    """The same, on a local-directory store whose disk (a small tmpfs) really runs out of
    space: batches wait, answered UNAVAILABLE, and land once there is space again."""
    objects = small_disk(tmp_path / "objects", 8 * 1024 * 1024)
    with serving(tmp_path, CallLimits(max_streams=8, max_calls=4, admin_threads=4)) as live:
        live.engine.config.log = LogSettings(ack_timeout_s=1.0)
        epoch = _tenant(live)
        assert [r.batch_id for r in _ingest(live, epoch, "before", 8192)] == [1]
        filler = fill(objects)
        with pytest.raises(grpc.RpcError) as err:
            _ingest(live, epoch, "waits", 65536, 2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
        assert "No space left on device" in str(err.value.details())
        filler.unlink()
        assert [r.batch_id for r in _ingest(live, epoch, "after", 65536, 3)] == [3]
    with serving(tmp_path, CallLimits()) as restarted:  # from the log in the store
        main = restarted.engine.timeline("t", "main")
        assert set(main.list_files()) == {"before", "waits", "after"}
        assert main.read_file("after") == b"s" * 65536
