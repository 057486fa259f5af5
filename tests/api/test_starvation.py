"""One tenant cannot starve a real page server process: with 300 idle GetPages streams and
a batch naming files of 4 and 64 GiB from tenant A, tenant B's commits are acknowledged
while A's streams stay open and the server's memory stays bounded. (How fast is a bench
figure, not asserted here.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from common.bearer import call_credentials_metadata
from common.convert import op_to_pb
from common.ops import Create, FileOp, Mkdir, Truncate, Write
from pageserver.ingest import MAX_FILE_SIZE
from proto import strata_pb2 as pb
from proto import strata_pb2_grpc as pb_grpc
from tests.servers import PageServerProcess

IDLE_STREAMS = 300
TIMEOUT = 30
MIB = 1 << 20


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PageServerProcess]:
    process = PageServerProcess(tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc")


class Tenant:
    """A tenant of the server, with a compute token and the writer epoch of its main."""

    def __init__(self, process: PageServerProcess, channel: grpc.Channel, name: str) -> None:
        manage = pb_grpc.ManagementServiceStub(channel)  # type: ignore[no-untyped-call]
        manage.CreateTenant(pb.CreateTenantRequest(tenant=name, empty=True),
                            metadata=process.admin(), timeout=TIMEOUT)
        token = manage.CreateToken(pb.CreateTokenRequest(tenant=name, scope="compute"),
                                   metadata=process.admin(), timeout=TIMEOUT).token
        self.name = name
        self.metadata = call_credentials_metadata(token)
        self.epoch = manage.AttachWriter(pb.AttachWriterRequest(tenant=name, branch="main"),
                                         metadata=self.metadata, timeout=TIMEOUT).writer_epoch
        self.pages = pb_grpc.PageServiceStub(channel)  # type: ignore[no-untyped-call]
        self.ingest_stub = pb_grpc.IngestServiceStub(channel)  # type: ignore[no-untyped-call]

    def ingest(self, ops: list[FileOp], timeout: float = TIMEOUT) -> pb.IngestResponse:
        requests = [
            pb.IngestRequest(open=pb.IngestOpen(tenant=self.name, branch="main",
                                                writer_epoch=self.epoch)),
            pb.IngestRequest(batch=pb.IngestBatch(batch_id=1,
                                                  ops=[op_to_pb(op) for op in ops]))]
        acks: list[pb.IngestResponse] = list(self.ingest_stub.Ingest(
            iter(requests), metadata=self.metadata, timeout=timeout))
        assert len(acks) == 1
        return acks[0]


def test_idle_streams_and_huge_sizes_of_one_tenant_do_not_starve_another(
        server: PageServerProcess) -> None:
    assert server.child is not None
    with server.channel() as channel:
        a, b = Tenant(server, channel, "a"), Tenant(server, channel, "b")
        b.ingest([Mkdir("d0")])  # B's stream works before A starts
        before = _rss(server.child.pid)
        grow_shrink: list[FileOp] = [Create("big"), Truncate("big", 4 << 30), Truncate("big", 0),
                       Truncate("big", MAX_FILE_SIZE), Write("big", MAX_FILE_SIZE - 1, b"x"),
                       Truncate("big", 0)]
        a.ingest(grow_shrink)  # 64 GiB named in 40-odd bytes: accepted, costs nothing
        grown = _rss(server.child.pid) - before

        stop = threading.Event()

        def idle() -> Iterator[pb.GetPagesRequest]:
            stop.wait()
            yield from ()

        streams = [a.pages.GetPages(idle(), metadata=a.metadata) for _ in range(IDLE_STREAMS)]
        try:
            deadline = time.monotonic() + TIMEOUT  # wait until the server has seen them all
            while sum(call.done() for call in streams) < IDLE_STREAMS - 64 \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            refused = [call for call in streams if call.done()]
            assert refused, "no stream of A was refused"
            assert all(call.code() is grpc.StatusCode.RESOURCE_EXHAUSTED for call in refused)
            assert "streams_per_tenant" in (refused[0].details() or "")

            admitted = [call for call in streams if not call.done()]
            latencies = []
            for index in range(5):
                started = time.perf_counter()
                ack = b.ingest([Mkdir(f"d{index + 1}")])
                latencies.append(time.perf_counter() - started)
                assert ack.lsn > 0
            # B was served beside A's open streams, not once they ended: a server whose
            # workers they held would answer B only after stop.set(), or never.
            assert not any(call.done() for call in admitted)
            a.ingest(grow_shrink[1:3])  # and A's own commits still go through
        finally:
            stop.set()
            for call in streams:
                call.cancel()
    print(f"\nRSS growth after grow-then-shrink: {grown / MIB:.1f} MiB; "
          f"{len(refused)} of {IDLE_STREAMS} idle streams refused; "
          f"B's acks: {', '.join(f'{s * 1000:.0f} ms' for s in latencies)}")
    assert grown < 100 * MIB
