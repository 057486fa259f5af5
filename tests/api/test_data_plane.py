"""One conformance suite for the compute's data path over both transports: gRPC streams
and the framed protocol (unix socket and TCP), through the compute's own clients
(``compute.remote``) against a real page server in-process. Every case must give the
same answers, statuses and exactly-once behaviour on each."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import grpc
import pytest

from common.client import StrataClient
from common.convert import op_to_pb, relation_from_pb
from common.frames import (
    MAGIC,
    FrameType,
    Hello,
    StreamKind,
    decode_ack,
    decode_error,
    encode_hello,
    receive_frame,
    send_frame,
)
from common.keys import PAGE_SIZE, Relation
from common.ops import Batch, Create, Unlink, Write, encode_batch
from compute.framed import FramedIngest, FramedRefused, parse_address
from compute.remote import (
    BatchWriter,
    PageReader,
    PageServerRefused,
    PageServerUnavailable,
)
from compute.view import StorageFullError
from pageserver.api import auth
from proto import strata_pb2 as pb
from tests.api.conftest import Live
from tests.servers import PageServerProcess

TRANSPORTS = ("grpc", "unix", "tcp")


def _page(fill: int) -> bytes:
    return bytes([fill]) * PAGE_SIZE


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, live: Live) -> str:
    """The compute's ``data_plane`` setting of each transport ("": gRPC)."""
    return {"grpc": "", "unix": live.data_unix, "tcp": live.data_tcp}[request.param]


def _client(live: Live, token: str = "") -> StrataClient:
    return StrataClient(f"127.0.0.1:{live.server.port}", token or live.admin_token)


def _writer_epoch(client: StrataClient) -> int:
    """Tenant ``t``, empty, and the writer epoch of its ``main``."""
    client.create_tenant("t", empty=True)
    return int(client.attach_writer("t", "main", holder="test").writer_epoch)


def _relation(client: StrataClient) -> Relation:
    (listed,) = [f for f in client.list_files("t", "main").files if f.path == "f"]
    return relation_from_pb(listed.relation)


def _refused(code: grpc.StatusCode, call: object) -> str:
    assert callable(call)
    with pytest.raises(PageServerRefused) as refused:
        call()
    assert refused.value.code is code, refused.value
    return str(refused.value)


def test_batches_are_acknowledged_in_order_and_read_back(live: Live, transport: str) -> None:
    with _client(live) as client:
        epoch = _writer_epoch(client)
        writer = BatchWriter(client, "t", "main", epoch, 0, data_plane=transport)
        reader = PageReader(client, "t", "main", data_plane=transport)
        try:
            first = writer.write(Batch((Create("f"), Write("f", 0, _page(1) + _page(2))),
                                       batch_id=1))
            second = writer.write(Batch((Write("f", 2 * PAGE_SIZE, _page(3)),), batch_id=2))
            assert 0 < first < second == writer.acked_lsn
            relation = _relation(client)
            assert reader.get_pages(relation, [2, 0, 7]) == [_page(3), _page(1),
                                                              bytes(PAGE_SIZE)]
            last = client.get_branch("t", "main").last_batch
            assert (last.writer_epoch, last.batch_id, last.lsn) == (epoch, 2, second)
        finally:
            writer.close()
            reader.close()


@pytest.mark.parametrize("address", ["data_unix", "data_tcp"])
def test_the_framed_stream_takes_protobuf_batches_and_checks_a_records_epoch(
        live: Live, address: str) -> None:
    """A BATCH frame (an IngestBatch message, as older computes send) is still applied;
    a RECORD naming another writer epoch than its stream's is refused, the stream ends."""
    with _client(live) as client:
        epoch = _writer_epoch(client)
        stream = FramedIngest(getattr(live, address), client.token, "t", "main", epoch)
        try:
            message = pb.IngestBatch(batch_id=1, ops=[op_to_pb(Create("f"))])
            kind, payload = stream.call(FrameType.BATCH, message.SerializeToString())
            assert kind is FrameType.ACK and decode_ack(payload).batch_id == 1
            assert stream.send(Batch((Write("f", 0, _page(4)),), batch_id=2))[0] > 0
            with pytest.raises(FramedRefused) as refused:
                stream.call(FrameType.RECORD, encode_batch(
                    Batch((Unlink("f"),), writer_epoch=epoch + 1, batch_id=3)))
            assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
            assert "writer epoch" in refused.value.message
        finally:
            stream.close()
        assert [f.size for f in client.list_files("t", "main").files if f.path == "f"] == [
            PAGE_SIZE]


def test_a_batch_sent_again_is_answered_with_its_lsn_and_applied_once(
        live: Live, transport: str) -> None:
    with _client(live) as client:
        epoch = _writer_epoch(client)
        writer = BatchWriter(client, "t", "main", epoch, 0, data_plane=transport)
        try:
            batch = Batch((Create("f"), Write("f", 0, _page(1))), batch_id=1)
            lsn = writer.write(batch)
            assert writer.write(batch) == lsn  # the same stream: the page server dedups
            writer.close()  # a new stream: the writer asks what was applied
            assert writer.write(batch) == lsn
            assert client.get_branch("t", "main").last_lsn == lsn
        finally:
            writer.close()


def test_a_stale_or_fenced_writer_is_refused(live: Live, transport: str) -> None:
    with _client(live) as client:
        epoch = _writer_epoch(client)
        writer = BatchWriter(client, "t", "main", epoch, 0, data_plane=transport)
        try:
            writer.write(Batch((Create("f"),), batch_id=1))
            client.attach_writer("t", "main", holder="other", force=True)  # fences it
            message = _refused(grpc.StatusCode.FAILED_PRECONDITION,
                               lambda: writer.write(Batch((Create("g"),), batch_id=2)))
            assert "fenced" in message or "stale" in message
            writer.close()
            stale = BatchWriter(client, "t", "main", epoch, 0, data_plane=transport)
            message = _refused(grpc.StatusCode.FAILED_PRECONDITION,
                               lambda: stale.write(Batch((Create("g"),), batch_id=2)))
            assert "stale" in message
            stale.close()
        finally:
            writer.close()


def test_a_page_request_refused_in_band_leaves_the_stream_open(
        live: Live, transport: str) -> None:
    with _client(live) as client:
        epoch = _writer_epoch(client)
        writer = BatchWriter(client, "t", "main", epoch, 0, data_plane=transport)
        reader = PageReader(client, "t", "main", streams=1, data_plane=transport)
        try:
            writer.write(Batch((Create("f"), Write("f", 0, _page(5))), batch_id=1))
            relation = _relation(client)
            message = _refused(grpc.StatusCode.INVALID_ARGUMENT,
                               lambda: reader.get_pages(relation, list(range(5000))))
            assert "5000 blocks in one request" in message
            assert reader.get_pages(relation, [0]) == [_page(5)]
            assert reader.open_streams == 1
        finally:
            writer.close()
            reader.close()


def test_reads_one_after_another_keep_to_one_stream(live: Live, transport: str) -> None:
    """A stream is opened only when every open one is busy: a compute that reads one
    page at a time holds one stream of its tenant's limit, not its whole pool."""
    with _client(live) as client:
        epoch = _writer_epoch(client)
        writer = BatchWriter(client, "t", "main", epoch, 0, data_plane=transport)
        reader = PageReader(client, "t", "main", streams=4, data_plane=transport)
        try:
            writer.write(Batch((Create("f"), Write("f", 0, _page(5))), batch_id=1))
            relation = _relation(client)
            for _ in range(6):
                assert reader.get_pages(relation, [0]) == [_page(5)]
            assert reader.open_streams == 1
        finally:
            writer.close()
            reader.close()


def test_every_connection_is_authenticated_and_authorised(live: Live, transport: str) -> None:
    with _client(live) as admin:
        epoch = _writer_epoch(admin)
        admin.create_tenant("other", empty=True)
        writer = BatchWriter(admin, "t", "main", epoch, 0, data_plane=transport)
        writer.write(Batch((Create("f"), Write("f", 0, _page(9))), batch_id=1))
        writer.close()
        relation = _relation(admin)
    tokens = {
        "forged": (live.admin_token[:-4] + "AAAA", grpc.StatusCode.UNAUTHENTICATED),
        "other tenant": (live.authority.issue("other", auth.Scope.COMPUTE, 600),
                         grpc.StatusCode.PERMISSION_DENIED),
        "other branch": (live.authority.issue("t", auth.Scope.COMPUTE, 600, branches=("b",)),
                         grpc.StatusCode.PERMISSION_DENIED),
    }
    for token, code in tokens.values():
        with _client(live, token) as client:
            reader = PageReader(client, "t", "main", data_plane=transport)
            _refused(code, lambda: reader.get_pages(relation, [0]))  # noqa: B023
            reader.close()
            assert _ingest_status(client, transport, epoch) is code
    read_only = live.authority.issue("t", auth.Scope.COMPUTE, 600, read_only=True)
    with _client(live, read_only) as client:
        reader = PageReader(client, "t", "main", data_plane=transport)
        assert reader.get_pages(relation, [0]) == [_page(9)]
        reader.close()
        assert _ingest_status(client, transport, epoch) is grpc.StatusCode.PERMISSION_DENIED


def _ingest_status(client: StrataClient, transport: str, epoch: int) -> grpc.StatusCode:
    """The status one batch sent on a new Ingest stream with ``client``'s token ends with
    (the writer would first ask for its branch's record, which such a token cannot)."""
    batch = pb.IngestBatch(batch_id=2, ops=[op_to_pb(Create("g"))])
    try:
        if transport:
            FramedIngest(transport, client.token, "t", "main", epoch).send(
                Batch((Create("g"),), batch_id=2))
        else:
            opening = pb.IngestRequest(open=pb.IngestOpen(tenant="t", branch="main",
                                                          writer_epoch=epoch))
            next(client.open_ingest_stream(iter([opening, pb.IngestRequest(batch=batch)])))
    except FramedRefused as exc:
        return exc.code
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_a_full_storage_quota_is_enospc_not_a_retry(live: Live, transport: str) -> None:
    with _client(live) as client:
        epoch = _writer_epoch(client)
        client.set_quotas("t", pb.Quotas(max_storage=4 * PAGE_SIZE))
        writer = BatchWriter(client, "t", "main", epoch, 0, data_plane=transport)
        try:
            writer.write(Batch((Create("f"), Write("f", 0, _page(1) * 64)), batch_id=1))
            assert writer.storage_full  # the quota may be crossed once; then it holds
            with pytest.raises(StorageFullError, match="storage quota"):
                writer.write(Batch((Write("f", 64 * PAGE_SIZE, _page(2)),), batch_id=2))
        finally:
            writer.close()


def test_a_detached_tenant_is_retried_then_given_up(live: Live, transport: str) -> None:
    with _client(live) as client:
        epoch = _writer_epoch(client)
        writer = BatchWriter(client, "t", "main", epoch, 0, retry_budget_s=0.3,
                             data_plane=transport)
        writer.write(Batch((Create("f"),), batch_id=1))
        relation = _relation(client)
        writer.close()
        client.detach_tenant("t")
        reader = PageReader(client, "t", "main", retry_budget_s=0.3, data_plane=transport)
        with pytest.raises(PageServerUnavailable, match="UNAVAILABLE"):
            reader.get_pages(relation, [0])
        reader.close()


# ---------------------------------------------------------------- the framed server alone

def _connect(address: str) -> socket.socket:
    family, target = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(target)
    return sock


@pytest.mark.parametrize("payload", [b"", b"STRF", MAGIC + bytes(40), b"\xff" * 64],
                         ids=["empty", "short", "lengths", "garbage"])
def test_a_malformed_hello_is_invalid_argument(live: Live, payload: bytes) -> None:
    with _connect(live.data_unix) as sock:
        send_frame(sock, FrameType.HELLO, payload)
        kind, answer = receive_frame(sock)
        assert kind is FrameType.ERROR
        error = decode_error(answer)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], error
        assert error.ends_connection and "malformed frame" in error.message


def test_a_frame_of_the_wrong_kind_ends_the_stream(live: Live) -> None:
    with _client(live) as client:
        _writer_epoch(client)
    with _connect(live.data_tcp) as sock:
        send_frame(sock, FrameType.HELLO,
                   encode_hello(Hello(StreamKind.PAGES, live.admin_token, "t", "main")))
        assert receive_frame(sock)[0] is FrameType.READY
        send_frame(sock, FrameType.BATCH, b"")
        kind, answer = receive_frame(sock)
        assert kind is FrameType.ERROR
        assert "takes PAGES_REQUEST frames, not BATCH" in decode_error(answer).message
        assert sock.recv(1) == b""  # and the connection is closed


def test_the_process_publishes_its_data_socket_and_stops_cleanly_with_a_stream_open(
        tmp_path: Path) -> None:
    server = PageServerProcess(tmp_path, data_plane=True)
    try:
        server.start()
        info = json.loads((tmp_path / "state" / "pageserver.json").read_text())
        assert info["data_socket"] == server.data_socket
        token = (tmp_path / "state" / "auth" / "admin.token").read_text().strip()
        with StrataClient(f"127.0.0.1:{server.port}", token) as client:
            epoch = _writer_epoch(client)
            writer = BatchWriter(client, "t", "main", epoch, 0,
                                 data_plane=f"unix:{server.data_socket}")
            writer.write(Batch((Create("f"),), batch_id=1))
            assert server.signal(signal.SIGTERM) == 0  # the open stream does not hold it
            writer.close()
    finally:
        server.stop()
