"""A tenant moves between two page server processes on one object store while a writer
is connected: the page server it left names the new one (trailing metadata), the
compute's client follows, and tokens issued by either page server hold on both."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable

import grpc
import pytest

from common.client import ClientError, StrataClient
from common.convert import relation_from_pb
from common.errors import TENANT_LOCATION
from common.keys import PAGE_SIZE, Relation
from common.ops import Batch, Create, Write
from compute.remote import BatchWriter, PageReader
from pageserver.api.token_registry import REFRESH_S
from proto import strata_pb2 as pb
from tests.servers import PageServerProcess

BLOCKS = 64


def _client(server: PageServerProcess, **options: bool) -> StrataClient:
    token = (server.home / "state" / "auth" / "admin.token").read_text().strip()
    return StrataClient(f"127.0.0.1:{server.port}", token, **options)


def _page(block: int, round_: int) -> bytes:
    return f"{block}:{round_}".encode().ljust(PAGE_SIZE, b".")


def _relation(client: StrataClient) -> Relation:
    (listed,) = [f for f in client.list_files("t", "main").files if f.path == "f"]
    return relation_from_pb(listed.relation)


def test_the_page_server_left_names_the_new_one(
        pair: tuple[PageServerProcess, PageServerProcess]) -> None:
    first, second = pair
    with _client(first) as on_first, _client(second) as on_second:
        on_first.create_tenant("t", empty=True)
        on_first.detach_tenant("t")
        with pytest.raises(grpc.RpcError) as nowhere:
            next(on_first.open_page_stream(iter([pb.GetPagesRequest(
                request_id=1, at=pb.ReadPoint(tenant="t", latest=True), blocks=[0])])))
        assert nowhere.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "not attached to any page server" in (nowhere.value.details() or "")
        on_second.attach_tenant("t")
        address = f"127.0.0.1:{second.port}"
        with pytest.raises(grpc.RpcError) as moved:
            next(on_first.open_page_stream(iter([pb.GetPagesRequest(
                request_id=1, at=pb.ReadPoint(tenant="t", latest=True), blocks=[0])])))
        assert moved.value.code() is grpc.StatusCode.UNAVAILABLE
        assert f"moved to {address}" in (moved.value.details() or "")
        trailing = [(m.key, str(m.value)) for m in moved.value.trailing_metadata() or ()]
        assert (TENANT_LOCATION, address) in trailing
        for call in (lambda: on_first.get_branch("t", "main"),
                     lambda: on_first.attach_writer("t", "main")):
            with pytest.raises(ClientError) as refused:
                call()
            assert (refused.value.code, refused.value.location) == (
                grpc.StatusCode.UNAVAILABLE, address)


@pytest.mark.parametrize("transport", ["grpc", "framed"])
@pytest.mark.parametrize("force", [False, True], ids=["detach-attach", "attach-force"])
def test_a_writer_and_a_reader_follow_their_tenant(
        pair: tuple[PageServerProcess, PageServerProcess], force: bool, transport: str) -> None:
    """Batches go on being acknowledged while the tenant moves from the first page server
    to the second (detached, then attached; or taken with force while the first still
    serves it, which the first learns from its next write); each is applied exactly once,
    and the reader reads every acknowledged page from the second. On the framed data
    plane the first page server's ERROR frame names the second, as gRPC's trailing
    metadata does, and the compute goes on there over gRPC."""
    first, second = pair
    data_plane = f"unix:{first.data_socket}" if transport == "framed" else ""
    with _client(first) as on_first, _client(second) as on_second, \
            _client(first, follow_moves=True) as compute:
        on_first.create_tenant("t", empty=True)
        attached = compute.attach_writer("t", "main", holder="test")
        writer = BatchWriter(compute, "t", "main", attached.writer_epoch, attached.lsn,
                             data_plane=data_plane)
        reader = PageReader(compute, "t", "main", data_plane=data_plane)
        writer.write(Batch((Create("f"), Write("f", 0, _page(0, 0) * BLOCKS)), batch_id=1))
        relation = _relation(on_first)
        acked: list[int] = []
        stop = threading.Event()
        failure: list[BaseException] = []

        def load() -> None:
            batch_id = 2
            try:
                while not stop.is_set():
                    block = batch_id % BLOCKS
                    writer.write(Batch((Write("f", block * PAGE_SIZE, _page(block, batch_id)),),
                                       batch_id=batch_id))
                    acked.append(batch_id)
                    assert reader.get_pages(relation, [block]) == [_page(block, batch_id)]
                    batch_id += 1
            except BaseException as exc:  # reported by the test's thread
                failure.append(exc)

        loader = threading.Thread(target=load)
        loader.start()
        try:
            _wait_for(lambda: len(acked) >= 20 or bool(failure), "batches before the move")
            if not force:
                on_first.detach_tenant("t")
            before_attach = len(acked)
            on_second.attach_tenant("t", force=force)
            _wait_for(lambda: len(acked) >= before_attach + 20 or bool(failure),
                      "batches after the move")
        finally:
            stop.set()
            loader.join(timeout=60)
        assert not failure, failure
        assert compute.address == f"127.0.0.1:{second.port}"
        if data_plane:  # the batches before the move went over the framed socket
            url = f"http://127.0.0.1:{first.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            assert 'code="UNAVAILABLE",method="Framed/Ingest"' in text
        newest = {acked_id % BLOCKS: acked_id for acked_id in acked}
        pages = reader.get_pages(relation, sorted(newest))
        assert pages == [_page(block, newest[block]) for block in sorted(newest)]
        last = on_second.get_branch("t", "main").last_batch
        assert (last.writer_epoch, last.batch_id) == (attached.writer_epoch, acked[-1])
        writer.close()
        reader.close()


def test_tokens_hold_on_every_page_server_and_revocations_reach_them(
        pair: tuple[PageServerProcess, PageServerProcess]) -> None:
    first, second = pair
    with _client(first) as on_first, _client(second) as on_second:
        on_first.create_tenant("t", empty=True)
        issued = on_first.create_token("t", "tenant", 600)
        on_first.detach_tenant("t")
        on_second.attach_tenant("t")
        with StrataClient(f"127.0.0.1:{second.port}", issued.token) as as_tenant:
            assert as_tenant.get_branch("t", "main").name == "main"
            on_first.revoke_token(issued.token_id)  # on the page server it left
            deadline = time.monotonic() + REFRESH_S * 3
            while True:
                try:
                    as_tenant.get_branch("t", "main")
                except ClientError as exc:
                    assert exc.code is grpc.StatusCode.UNAUTHENTICATED
                    assert "revoked" in exc.message
                    break
                assert time.monotonic() < deadline, "the revocation never reached it"
                time.sleep(0.2)
        assert issued.token_id in {t.token_id for t in on_second.list_tokens()}


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)

