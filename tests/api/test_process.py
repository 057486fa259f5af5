"""The ``pageserver`` process: readiness, SIGKILL under load, SIGTERM flush, metrics endpoint."""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from common.convert import op_to_pb
from common.keys import PAGE_SIZE
from common.ops import Create, FileOp, Write
from proto import strata_pb2 as pb
from proto import strata_pb2_grpc as pb_grpc
from tests.servers import PageServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PageServerProcess]:
    process = PageServerProcess(tmp_path)
    try:
        yield process
    finally:
        process.stop()


def _write_batches(process: PageServerProcess, acked: list[int], stop: threading.Event) -> None:
    """Stream batches until the server dies or ``stop``; record each acknowledged LSN."""
    with process.channel() as channel:
        manage = pb_grpc.ManagementServiceStub(channel)  # type: ignore[no-untyped-call]
        ingest = pb_grpc.IngestServiceStub(channel)  # type: ignore[no-untyped-call]
        epoch = manage.AttachWriter(pb.AttachWriterRequest(tenant="t", branch="main"),
                                    metadata=process.admin()).writer_epoch

        def requests() -> Iterator[pb.IngestRequest]:
            yield pb.IngestRequest(open=pb.IngestOpen(tenant="t", branch="main",
                                                      writer_epoch=epoch))
            batch = 0
            while not stop.is_set():
                batch += 1
                page = batch.to_bytes(8, "big") * (PAGE_SIZE // 8)
                yield pb.IngestRequest(batch=pb.IngestBatch(
                    batch_id=batch, ops=[op_to_pb(Write("f", (batch % 8) * PAGE_SIZE, page))]))

        try:
            for ack in ingest.Ingest(requests(), metadata=process.admin()):
                acked.append(int(ack.batch_id))
        except grpc.RpcError:
            pass  # the server was killed


def _tenant_with_a_batch(server: PageServerProcess, ops: list[FileOp]) -> None:
    """Start the server, create tenant ``t`` (empty) and ingest ``ops`` into its main."""
    server.start()
    with server.channel() as channel:
        manage = pb_grpc.ManagementServiceStub(channel)  # type: ignore[no-untyped-call]
        manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True),
                            metadata=server.admin())
        epoch = manage.AttachWriter(pb.AttachWriterRequest(tenant="t", branch="main"),
                                    metadata=server.admin()).writer_epoch
        list(pb_grpc.IngestServiceStub(channel).Ingest(iter([  # type: ignore[no-untyped-call]
            pb.IngestRequest(open=pb.IngestOpen(tenant="t", branch="main", writer_epoch=epoch)),
            pb.IngestRequest(batch=pb.IngestBatch(batch_id=0,
                                                  ops=[op_to_pb(op) for op in ops])),
        ]), metadata=server.admin()))


def test_sigkill_under_load_loses_nothing_acknowledged(server: PageServerProcess) -> None:
    _tenant_with_a_batch(server, [Create("f")])
    acked: list[int] = []
    stop = threading.Event()
    writer = threading.Thread(target=_write_batches, args=(server, acked, stop))
    writer.start()
    time.sleep(1.5)
    deadline = time.monotonic() + 120  # a loaded machine acknowledges fewer in 1.5 s
    while len(acked) <= 20 and writer.is_alive():
        assert time.monotonic() < deadline, f"only {len(acked)} batches acknowledged"
        time.sleep(0.05)
    assert server.signal(signal.SIGKILL) == -signal.SIGKILL
    stop.set()
    writer.join(timeout=30)
    assert len(acked) > 20, "too few acknowledged batches to prove anything"
    server.start()
    with server.channel() as channel:
        pages = pb_grpc.PageServiceStub(channel)  # type: ignore[no-untyped-call]
        stat = pages.Stat(pb.StatRequest(at=pb.ReadPoint(tenant="t", latest=True), path="f"),
                          metadata=server.admin())
        relation = stat.file.relation
        reply = next(iter(pages.GetPages(iter([pb.GetPagesRequest(
            request_id=1, at=pb.ReadPoint(tenant="t", latest=True), relation=relation,
            blocks=list(range(8)))]), metadata=server.admin())))
        for block, page in enumerate(reply.pages):
            newest = max((b for b in acked if b % 8 == block), default=0)
            assert int.from_bytes(page[:8], "big") >= newest, f"block {block} lost a batch"
    assert server.signal(signal.SIGTERM) == 0


def test_sigterm_flushes_and_metrics_are_served(server: PageServerProcess) -> None:
    server.start()
    with server.channel() as channel:
        manage = pb_grpc.ManagementServiceStub(channel)  # type: ignore[no-untyped-call]
        manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True),
                            metadata=server.admin())
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    assert 'strata_rpc_requests_total{code="OK",method="ManagementService/CreateTenant"} 1.0' \
        in text
    assert "strata_upload_bytes_total" in text
    assert server.signal(signal.SIGTERM) == 0
    assert not (server.home / "state" / "pageserver.json").exists()
    assert "stopped cleanly" in (server.home / "pageserver.log").read_text()
    assert list((server.home / "objects").rglob("manifest/*.json"))


def test_what_the_server_writes_is_its_own_alone(server: PageServerProcess) -> None:
    """Layers, the ingest log, manifests and keys: 0600 files under 0700 directories,
    whatever umask started the server."""
    _tenant_with_a_batch(server, [Create("f"), Write("f", 0, b"x" * PAGE_SIZE)])
    assert server.signal(signal.SIGTERM) == 0  # flushes: layers and manifests are written
    written = [path for top in ("state", "objects") for path in (server.home / top).rglob("*")]
    assert any(path.parent.name == "manifest" for path in written)
    assert any(path.parent.name == "log" and path.is_file() for path in written)
    loose = {str(path): oct(path.stat().st_mode & 0o777) for path in written
             if path.stat().st_mode & 0o077}
    assert loose == {}
    for top in ("state", "objects"):
        assert (server.home / top).stat().st_mode & 0o777 == 0o700
