"""A full disk (ENOSPC, injected where the page server writes) is answered UNAVAILABLE,
which computes retry, with a message that says so; the server keeps serving and the
ingest log is not poisoned by a write that failed (only a failed fsync poisons it)."""

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
from pageserver import ingest_log, timeline
from pageserver.api.limits import CallLimits
from proto import strata_pb2 as pb
from tests.api.conftest import Live, serving
from tests.small_disk import fill

TIMEOUT = 10


def _no_space(*args: object, **kwargs: object) -> int:
    raise OSError(errno.ENOSPC, "No space left on device", "/state/ingest-log/0001.log")


def _tenant(live: Live) -> int:
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True),
                             metadata=live.admin, timeout=TIMEOUT)
    return int(live.manage.AttachWriter(pb.AttachWriterRequest(tenant="t", branch="main"),
                                        metadata=live.admin, timeout=TIMEOUT).writer_epoch)


def _ingest(live: Live, epoch: int, path: str, size: int = 0) -> list[pb.IngestResponse]:
    ops: list[FileOp] = [Create(path), *([Write(path, 0, b"s" * size)] if size else [])]
    return list(live.ingest.Ingest(iter([
        pb.IngestRequest(open=pb.IngestOpen(tenant="t", branch="main", writer_epoch=epoch)),
        pb.IngestRequest(batch=pb.IngestBatch(batch_id=1, ops=[op_to_pb(op) for op in ops])),
    ]), metadata=live.admin, timeout=TIMEOUT))


def _count(live: Live, method: str, code: str) -> float:
    return live.metrics.registry.get_sample_value(
        "strata_rpc_requests_total", {"method": method, "code": code}) or 0.0


def test_a_full_disk_under_the_ingest_log_is_retryable(
        live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    epoch = _tenant(live)
    with monkeypatch.context() as full:
        full.setattr(ingest_log, "_pwrite_all", _no_space)
        with pytest.raises(grpc.RpcError) as err:
            _ingest(live, epoch, "lost")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    assert err.value.code() in RETRYABLE
    assert str(err.value.details()).startswith("the page server's disk is full (No space left")
    assert _count(live, "IngestService/Ingest", "INTERNAL") == 0, \
        generate_latest(live.metrics.registry).decode()
    # Space is back: the same server takes the batch; the refused one was never applied.
    assert [r.batch_id for r in _ingest(live, epoch, "kept")] == [1]
    main = live.engine.timeline("t", "main")
    assert set(main.list_files()) == {"kept"}


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


def test_a_really_full_state_dir_refuses_batches_until_space_is_back(
        tmp_path: Path, small_disk: Callable[[Path, int], Path]) -> None:
    """The same, on a state dir whose disk (a small tmpfs) really runs out of space."""
    state = small_disk(tmp_path / "state", 8 * 1024 * 1024)
    with serving(tmp_path, CallLimits(max_streams=8, max_calls=4, admin_threads=4)) as live:
        epoch = _tenant(live)
        assert [r.batch_id for r in _ingest(live, epoch, "before", 8192)] == [1]
        filler = fill(state)
        with pytest.raises(grpc.RpcError) as err:
            _ingest(live, epoch, "lost", 65536)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
        assert str(err.value.details()).startswith("the page server's disk is full (No space")
        filler.unlink()
        assert [r.batch_id for r in _ingest(live, epoch, "after", 65536)] == [1]
    with serving(tmp_path, CallLimits()) as restarted:  # from the ingest log on that disk
        main = restarted.engine.timeline("t", "main")
        assert set(main.list_files()) == {"before", "after"}
        assert main.read_file("after") == b"s" * 65536
