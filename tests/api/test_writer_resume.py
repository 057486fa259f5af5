"""A compute's writer against a real page server process: after a broken stream it learns
what was applied from the page server's record of its numbered batches, never from LSNs."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from common.client import ServerUnreachable, StrataClient
from common.convert import op_to_pb, relation_from_pb
from common.keys import PAGE_SIZE
from common.ops import Batch, Create, FileKind, FileOp, Truncate, Write
from compute.page_cache import MIB, PageCache
from compute.remote import BatchWriter, PageReader, PageServerRefused, PageServerUnavailable
from compute.view import BranchView, Node
from proto import strata_pb2 as pb
from tests.api.conftest import Live
from tests.servers import PageServerProcess

P = PAGE_SIZE
RECONNECT_S = 10


class _AckLost:
    """An Ingest call whose stream breaks once the page server has acknowledged batch
    ``lose``: the acknowledgement never reaches the writer."""

    def __init__(self, call: Iterator[pb.IngestResponse], lose: int) -> None:
        self._call = call
        self._lose = lose

    def __iter__(self) -> Iterator[pb.IngestResponse]:
        return self

    def __next__(self) -> pb.IngestResponse:
        response = next(self._call)
        if response.batch_id == self._lose:
            self.cancel()
            return next(self._call)  # raises: CANCELLED
        return response

    def exception(self, timeout: float | None = None) -> object:
        return self._call.exception(timeout)  # type: ignore[attr-defined]

    def cancel(self) -> bool:
        return bool(self._call.cancel())  # type: ignore[attr-defined]


class _LosesAnAck(StrataClient):
    """A client whose ingest streams lose the acknowledgement of batch ``lose``, once."""

    def __init__(self, address: str, token: str, lose: int) -> None:
        super().__init__(address, token)
        self.lose = lose

    def open_ingest_stream(self, requests: Iterator[pb.IngestRequest]
                           ) -> Iterator[pb.IngestResponse]:
        call = super().open_ingest_stream(requests)
        lose, self.lose = self.lose, 0
        return _AckLost(call, lose) if lose else call


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PageServerProcess]:
    process = PageServerProcess(tmp_path)
    try:
        process.start()
        yield process
    finally:
        process.stop()


def _token(server: PageServerProcess) -> str:
    return (server.home / "state" / "auth" / "admin.token").read_text().strip()


def _client(server: PageServerProcess) -> StrataClient:
    client = StrataClient(f"127.0.0.1:{server.port}", _token(server))
    client.create_tenant("t", empty=True)
    return client


def _attach(client: StrataClient, holder: str) -> int:
    return int(client.attach_writer("t", "main", holder=holder).writer_epoch)


def _branch_once_reachable(client: StrataClient) -> pb.BranchInfo:
    """Main's info, once the client reconnected to a restarted page server."""
    deadline = time.monotonic() + RECONNECT_S
    while True:
        try:
            return client.get_branch("t", "main")
        except ServerUnreachable:
            assert time.monotonic() < deadline, "the page server was not reachable again"
            time.sleep(0.1)


def _read(client: StrataClient, path: str) -> bytes:
    """File ``path`` of main as the page server has it durably (whole pages)."""
    (info,) = [f for f in client.list_files("t", "main").files if f.path == path]
    reader = PageReader(client, "t", "main")
    try:
        blocks = range(info.block_offset, info.block_offset + -(-info.size // P))
        return b"".join(reader.get_pages(relation_from_pb(info.relation), list(blocks)))
    finally:
        reader.close()


def test_a_flush_whose_ack_was_lost_resumes_without_duplicating_or_losing(
        server: PageServerProcess, tmp_path: Path) -> None:
    setup = _client(server)
    epoch = _attach(setup, "h:/a")
    client = _LosesAnAck(f"127.0.0.1:{server.port}", _token(server), lose=2)
    cache = PageCache(tmp_path / "cache", 64 * P / MIB)
    writer = BatchWriter(client, "t", "main", epoch, acked_lsn=0, retry_budget_s=0)
    reader = PageReader(client, "t", "main")
    view = BranchView({"": Node("", FileKind.DIR, 0o700)}, cache, reader, writer,
                      batch_bytes=P)  # a batch ends after each page of data
    try:
        f = view.create("f", 0o600)
        for block in reversed(range(3)):  # not adjacent in order, so not joined into one
            view.write(f, bytes([65 + block]) * P, block * P)
        with pytest.raises(OSError):  # batch 1 acknowledged, 2 applied but its ack lost
            view.flush()
        last = setup.get_branch("t", "main")
        assert (last.last_batch.writer_epoch, last.last_batch.batch_id) == (epoch, 2)
        assert last.last_lsn == last.last_batch.lsn == 2
        view.flush()  # batch 2 is not sent again (its Create would be refused), 3 is
        after = setup.get_branch("t", "main")
        assert (after.last_lsn, after.last_batch.batch_id, after.last_batch.lsn) == (3, 3, 3)
        assert writer.acked_lsn == 3
        assert _read(setup, "f") == b"A" * P + b"B" * P + b"C" * P
    finally:
        writer.close()
        reader.close()
        cache.close()
        client.close()
        setup.close()


def test_a_fenced_writer_that_lost_its_stream_is_refused_not_told_durable(
        server: PageServerProcess) -> None:
    """The page server restarts (keeping the writer's epoch and its last batch); meanwhile
    another compute took the branch and wrote past the old writer's next LSN."""
    address = f"127.0.0.1:{server.port}"
    with _client(server) as before, StrataClient(address, _token(server)) as compute:
        stale_epoch = _attach(before, "h:/a")
        stale = BatchWriter(compute, "t", "main", stale_epoch, acked_lsn=0, retry_budget_s=3)
        assert stale.write(Batch((Create("f"),), batch_id=1)) == 1
        assert server.signal(signal.SIGKILL) == -signal.SIGKILL
        kept = Batch((Write("f", 0, b"stale"),), batch_id=2)
        with pytest.raises(PageServerUnavailable):  # nothing was sent
            stale.write(kept)
        server.start()
        with StrataClient(address, _token(server)) as after:
            info = _branch_once_reachable(after)
            assert info.writer_epoch == stale_epoch
            assert (info.last_batch.writer_epoch, info.last_batch.batch_id,
                    info.last_batch.lsn) == (stale_epoch, 1, 1)
            newer = _attach(after, "h:/b")  # the restart forgot the lease: the slot is free
            fresh = BatchWriter(after, "t", "main", newer, acked_lsn=1)
            fresh.write(Batch((Write("f", 0, b"new"),), batch_id=1))
            fresh.write(Batch((Write("f", 3, b"er"),), batch_id=2))
            fresh.close()
            with pytest.raises(PageServerRefused) as refused:
                stale.write(kept)  # the branch's LSN 3 >= 2 proves nothing about this batch
            stale.close()
            assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION
            assert "stale" in str(refused.value)
            assert _read(after, "f")[:6] == b"newer\0"


def _send(live: Live, epoch: int, batch_id: int, ops: list[FileOp]) -> pb.IngestResponse:
    """Batch ``batch_id`` of ``epoch`` on a stream of its own; its acknowledgement."""
    acks: list[pb.IngestResponse] = list(live.ingest.Ingest(iter([
        pb.IngestRequest(open=pb.IngestOpen(tenant="t", branch="main", writer_epoch=epoch)),
        pb.IngestRequest(batch=pb.IngestBatch(batch_id=batch_id,
                                              ops=[op_to_pb(op) for op in ops]))]),
        metadata=live.admin, timeout=RECONNECT_S))
    (ack,) = acks
    return ack


def test_the_last_batch_sent_again_is_acknowledged_even_at_the_storage_quota(
        live: Live) -> None:
    """A re-sent batch is answered with its LSN, not applied (its Create would fail) nor
    held to the quota it already crossed; an id past the next one is refused."""
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True),
                             metadata=live.admin, timeout=RECONNECT_S)
    epoch = int(live.manage.AttachWriter(pb.AttachWriterRequest(tenant="t", branch="main"),
                                         metadata=live.admin).writer_epoch)
    live.manage.SetQuotas(pb.SetQuotasRequest(tenant="t", quotas=pb.Quotas(
        max_storage=10 * P)), metadata=live.admin, timeout=RECONNECT_S)
    ops: list[FileOp] = [Create("f"), Write("f", 0, b"a" * 20 * P)]
    first = _send(live, epoch, 1, ops)
    assert first.storage_full
    again = _send(live, epoch, 1, ops)
    assert (again.batch_id, again.lsn, again.storage_full) == (1, first.lsn, True)
    main = live.engine.timeline("t", "main")
    assert main.last_lsn == first.lsn
    with pytest.raises(grpc.RpcError) as gap:
        _send(live, epoch, 3, [Truncate("f", P)])
    assert gap.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "never applied" in (gap.value.details() or "")
    assert main.stat("f").size == 20 * P
