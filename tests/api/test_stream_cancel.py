"""A stream its client cancels (every compute unmount) is quiet and counted as CANCELLED."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterator

import grpc
import pytest
from prometheus_client import generate_latest

from common.client import StrataClient
from common.convert import op_to_pb
from common.keys import PAGE_SIZE, parse_relation_path
from common.ops import Batch, Create, Mkdir, Write
from compute.remote import BatchWriter, PageReader
from pageserver.api import auth
from proto import strata_pb2 as pb
from tests.api.conftest import Live

TIMEOUT = 10


def _requests(source: queue.Queue[pb.GetPagesRequest | pb.IngestRequest | None]
              ) -> Iterator[pb.GetPagesRequest | pb.IngestRequest]:
    while (request := source.get()) is not None:
        yield request


def _count(live: Live, method: str, code: str) -> float:
    value = live.metrics.registry.get_sample_value(
        "strata_rpc_requests_total", {"method": method, "code": code})
    return value or 0.0


def _wait_for_count(live: Live, method: str, code: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while _count(live, method, code) < 1:
        assert time.monotonic() < deadline, generate_latest(live.metrics.registry).decode()
        time.sleep(0.02)


def _tenant(live: Live) -> int:
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True),
                             metadata=live.admin, timeout=TIMEOUT)
    return int(live.manage.AttachWriter(pb.AttachWriterRequest(tenant="t", branch="main"),
                                        metadata=live.admin, timeout=TIMEOUT).writer_epoch)


def test_cancelled_streams_log_no_error_and_count_as_cancelled(
        live: Live, caplog: pytest.LogCaptureFixture) -> None:
    epoch = _tenant(live)
    caplog.set_level(logging.DEBUG, logger="pageserver")
    pages: queue.Queue[pb.GetPagesRequest | pb.IngestRequest | None] = queue.Queue()
    page_stream = live.pages.GetPages(_requests(pages), metadata=live.admin)
    pages.put(pb.GetPagesRequest(request_id=1, at=pb.ReadPoint(tenant="t", latest=True)))
    assert next(page_stream).request_id == 1
    ingest: queue.Queue[pb.GetPagesRequest | pb.IngestRequest | None] = queue.Queue()
    ingest_stream = live.ingest.Ingest(_requests(ingest), metadata=live.admin)
    ingest.put(pb.IngestRequest(open=pb.IngestOpen(tenant="t", branch="main",
                                                   writer_epoch=epoch)))
    ingest.put(pb.IngestRequest(batch=pb.IngestBatch(batch_id=1, ops=[op_to_pb(Create("f"))])))
    assert next(ingest_stream).batch_id == 1

    page_stream.cancel()
    ingest_stream.cancel()
    _wait_for_count(live, "PageService/GetPages", "CANCELLED")
    _wait_for_count(live, "IngestService/Ingest", "CANCELLED")
    pages.put(None)
    ingest.put(None)

    assert _count(live, "PageService/GetPages", "INTERNAL") == 0
    assert _count(live, "IngestService/Ingest", "INTERNAL") == 0
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]
    quiet = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("PageService/GetPages" in m and "CANCELLED" in m for m in quiet), quiet
    assert any("IngestService/Ingest" in m and "CANCELLED" in m for m in quiet), quiet


def test_a_real_failure_in_a_stream_is_still_an_error(
        live: Live, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a client's cancel is quiet: an unexpected exception still logs ERROR, INTERNAL."""
    epoch = _tenant(live)

    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(live.engine.timeline("t", "main"), "ingest", broken)
    stream = live.ingest.Ingest(iter([
        pb.IngestRequest(open=pb.IngestOpen(tenant="t", branch="main", writer_epoch=epoch)),
        pb.IngestRequest(batch=pb.IngestBatch(batch_id=1, ops=[op_to_pb(Create("f"))])),
    ]), metadata=live.admin, timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as err:
        list(stream)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert _count(live, "IngestService/Ingest", "INTERNAL") == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info
    assert "IngestService/Ingest failed" in errors[0].getMessage()


def test_a_stream_the_client_half_closes_counts_as_ok(live: Live) -> None:
    _tenant(live)
    for _ in range(20):
        request = pb.GetPagesRequest(request_id=1, at=pb.ReadPoint(tenant="t", latest=True))
        assert len(list(live.pages.GetPages(iter([request]), metadata=live.admin,
                                            timeout=TIMEOUT))) == 1
    deadline = time.monotonic() + TIMEOUT
    while _count(live, "PageService/GetPages", "OK") < 20:
        assert time.monotonic() < deadline, generate_latest(live.metrics.registry).decode()
        time.sleep(0.02)
    assert _count(live, "PageService/GetPages", "CANCELLED") == 0


def test_a_compute_closing_its_streams_ends_them_cleanly(live: Live) -> None:
    """What a compute's unmount does: close its page reader and batch writer, then the
    channel; the page server sees every stream end normally, not cancelled."""
    epoch = _tenant(live)
    path = "base/5/16384"
    parsed = parse_relation_path(path)
    assert parsed is not None
    client = StrataClient(f"127.0.0.1:{live.server.port}",
                          live.authority.issue("t", auth.Scope.COMPUTE, 600))
    writer = BatchWriter(client, "t", "main", epoch, acked_lsn=0)
    reader = PageReader(client, "t", "main", streams=2)
    try:
        writer.write(Batch((Mkdir("base"), Mkdir("base/5"), Create(path),
                            Write(path, 0, b"\x07" * PAGE_SIZE)), batch_id=1))
        assert reader.get_pages(parsed[0], [0]) == [b"\x07" * PAGE_SIZE]
        writer.close()
        reader.close()
    finally:
        client.close()
    deadline = time.monotonic() + TIMEOUT
    while (_count(live, "PageService/GetPages", "OK") < 1
           or _count(live, "IngestService/Ingest", "OK") < 1):
        assert time.monotonic() < deadline, generate_latest(live.metrics.registry).decode()
        time.sleep(0.02)
    assert _count(live, "PageService/GetPages", "CANCELLED") == 0
    assert _count(live, "IngestService/Ingest", "CANCELLED") == 0
