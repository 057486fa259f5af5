"""The page server's gRPC services against a real engine: reads, ingest, management, errors."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2

from common.convert import op_to_pb
from common.keys import PAGE_SIZE, parse_relation_path
from common.ops import Create, FileOp, Mkdir, Write
from pageserver.api import auth
from proto import strata_pb2 as pb
from tests.api.conftest import Live

REL_PATH = "base/5/16384"
TIMEOUT = 10


def _relation() -> pb.Relation:
    parsed = parse_relation_path(REL_PATH)
    assert parsed is not None
    rel = parsed[0]
    return pb.Relation(spc_oid=rel.spc, db_oid=rel.db, rel_number=rel.rel, fork=rel.fork)


def _setup(live: Live, tenant: str = "t") -> int:
    """An empty tenant with one relation file of 4 pages; returns the writer epoch."""
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant=tenant, empty=True),
                             metadata=live.admin, timeout=TIMEOUT)
    epoch = live.manage.AttachWriter(pb.AttachWriterRequest(tenant=tenant, branch="main"),
                                     metadata=live.admin, timeout=TIMEOUT).writer_epoch
    ops: list[FileOp] = [Mkdir("base"), Mkdir("base/5"), Create(REL_PATH)]
    ops += [Write(REL_PATH, blk * PAGE_SIZE, bytes([blk + 1]) * PAGE_SIZE) for blk in range(4)]
    acks = list(live.ingest.Ingest(iter([
        pb.IngestRequest(open=pb.IngestOpen(tenant=tenant, branch="main", writer_epoch=epoch)),
        pb.IngestRequest(batch=pb.IngestBatch(batch_id=7, ops=[op_to_pb(op) for op in ops],
                                              wal_lsn=100)),
    ]), metadata=live.admin, timeout=TIMEOUT))
    assert [(a.batch_id, a.lsn) for a in acks] == [(7, 1)]
    return int(epoch)


def _read(live: Live, blocks: list[int], tenant: str = "t", lsn: int | None = None,
          branch: str = "main") -> pb.GetPagesResponse:
    at = pb.ReadPoint(tenant=tenant, branch=branch, lsn=lsn or 0, latest=lsn is None)
    request = pb.GetPagesRequest(request_id=1, at=at, relation=_relation(), blocks=blocks)
    responses = live.pages.GetPages(iter([request]), metadata=live.admin, timeout=TIMEOUT)
    first: pb.GetPagesResponse = next(iter(responses))
    return first


def test_ingest_then_read_pages_and_files(live: Live) -> None:
    _setup(live)
    response = _read(live, [3, 0, 9])
    assert response.status.code == 0 and response.lsn == 1
    assert list(response.pages) == [b"\x04" * PAGE_SIZE, b"\x01" * PAGE_SIZE, bytes(PAGE_SIZE)]
    at = pb.ReadPoint(tenant="t", branch="main", latest=True)
    listing = live.pages.ListFiles(pb.ListFilesRequest(at=at, prefix="base"),
                                   metadata=live.admin, timeout=TIMEOUT)
    assert [f.path for f in listing.files] == ["base", "base/5", REL_PATH]
    size = live.pages.RelationSize(pb.RelationSizeRequest(at=at, relation=_relation()),
                                   metadata=live.admin, timeout=TIMEOUT)
    assert size.blocks == 4
    stat = live.pages.Stat(pb.StatRequest(at=at, path=REL_PATH), metadata=live.admin)
    assert stat.file.size == 4 * PAGE_SIZE and stat.file.kind == pb.FILE_KIND_FILE


def test_bad_page_request_gets_in_band_status_and_stream_goes_on(live: Live) -> None:
    _setup(live)
    good = pb.GetPagesRequest(request_id=1, at=pb.ReadPoint(tenant="t", latest=True),
                              relation=_relation(), blocks=[0])
    unknown_branch = pb.GetPagesRequest(request_id=2, at=pb.ReadPoint(tenant="t", branch="x",
                                                                       latest=True))
    future = pb.GetPagesRequest(request_id=3, at=pb.ReadPoint(tenant="t", lsn=99),
                                relation=_relation(), blocks=[0])
    too_many = pb.GetPagesRequest(request_id=4, at=pb.ReadPoint(tenant="t", latest=True),
                                  relation=_relation(), blocks=list(range(5000)))
    responses = list(live.pages.GetPages(iter([good, unknown_branch, future, too_many, good]),
                                         metadata=live.admin, timeout=TIMEOUT))
    codes = [(r.request_id, grpc.StatusCode.OK.value[0] if not r.status.code else r.status.code)
             for r in responses]
    assert codes == [(1, 0), (2, grpc.StatusCode.NOT_FOUND.value[0]),
                     (3, grpc.StatusCode.OUT_OF_RANGE.value[0]),
                     (4, grpc.StatusCode.INVALID_ARGUMENT.value[0]), (1, 0)]
    assert "beyond the last durable LSN" in responses[2].status.message


def test_stale_writer_epoch_is_refused(live: Live) -> None:
    epoch = _setup(live)
    newer = live.manage.AttachWriter(pb.AttachWriterRequest(tenant="t", branch="main"),
                                     metadata=live.admin).writer_epoch
    assert newer == epoch + 1
    stream = live.ingest.Ingest(iter([
        pb.IngestRequest(open=pb.IngestOpen(tenant="t", branch="main", writer_epoch=epoch)),
        pb.IngestRequest(batch=pb.IngestBatch(batch_id=1, ops=[op_to_pb(Create("x"))])),
    ]), metadata=live.admin, timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as err:
        list(stream)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "stale" in (err.value.details() or "")


def test_writer_lease_over_grpc(live: Live) -> None:
    """A compute token attaches, renews and shows up as the branch's writer; a second holder
    is refused with a message naming the first; detach frees the slot."""
    _setup(live)
    compute = live.metadata("t", auth.Scope.COMPUTE)
    attached = live.manage.AttachWriter(pb.AttachWriterRequest(
        tenant="t", branch="main", holder="h:/a"), metadata=compute)
    assert attached.lease_ms == 10_000
    live.manage.RenewWriter(pb.RenewWriterRequest(
        tenant="t", branch="main", writer_epoch=attached.writer_epoch, holder="h:/a"),
        metadata=compute)
    info = live.manage.GetBranch(pb.GetBranchRequest(tenant="t", name="main"), metadata=compute)
    assert info.branch.writer == "h:/a"
    with pytest.raises(grpc.RpcError) as err:
        live.manage.AttachWriter(pb.AttachWriterRequest(tenant="t", branch="main",
                                                        holder="h:/b"), metadata=compute)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already has a writer (h:/a" in (err.value.details() or "")
    live.manage.DetachWriter(pb.DetachWriterRequest(
        tenant="t", branch="main", writer_epoch=attached.writer_epoch), metadata=compute)
    live.manage.AttachWriter(pb.AttachWriterRequest(tenant="t", branch="main", holder="h:/b"),
                             metadata=compute)


def test_fencing_takes_effect_mid_stream(live: Live) -> None:
    """A writer attached while another streams: the old stream's next batch is refused."""
    epoch = _setup(live)
    requests: queue.Queue[pb.IngestRequest | None] = queue.Queue()

    def feed() -> Iterator[pb.IngestRequest]:
        while (item := requests.get()) is not None:
            yield item

    requests.put(pb.IngestRequest(open=pb.IngestOpen(tenant="t", branch="main",
                                                     writer_epoch=epoch)))
    requests.put(pb.IngestRequest(batch=pb.IngestBatch(batch_id=8,  # after _setup's 7
                                                       ops=[op_to_pb(Create("a"))])))
    stream = live.ingest.Ingest(feed(), metadata=live.admin, timeout=TIMEOUT)
    assert next(stream).batch_id == 8
    live.manage.AttachWriter(pb.AttachWriterRequest(tenant="t", branch="main"),
                             metadata=live.admin)
    requests.put(pb.IngestRequest(batch=pb.IngestBatch(batch_id=9,
                                                       ops=[op_to_pb(Create("b"))])))
    with pytest.raises(grpc.RpcError) as err:
        next(stream)
    requests.put(None)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_management_errors_map_to_statuses(live: Live) -> None:
    _setup(live)
    manage, admin = live.manage, live.admin
    cases: list[tuple[Callable[[], object], grpc.StatusCode, str]] = [
        (lambda: manage.GetBranch(pb.GetBranchRequest(tenant="t", name="nope"), metadata=admin),
         grpc.StatusCode.NOT_FOUND, "no branch 'nope'"),
        (lambda: manage.ListBranches(pb.ListBranchesRequest(tenant="ghost"), metadata=admin),
         grpc.StatusCode.NOT_FOUND, "no tenant 'ghost'"),
        (lambda: manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="b", lsn=50),
                                     metadata=admin),
         grpc.StatusCode.OUT_OF_RANGE, "beyond the last LSN"),
        (lambda: manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="main"),
                                     metadata=admin),
         grpc.StatusCode.ALREADY_EXISTS, "already exists"),
        (lambda: manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="bad/name"),
                                     metadata=admin),
         grpc.StatusCode.INVALID_ARGUMENT, "invalid branch name"),
        (lambda: manage.CreateToken(pb.CreateTokenRequest(tenant="t", scope="root"),
                                    metadata=admin),
         grpc.StatusCode.INVALID_ARGUMENT, "unknown scope"),
    ]
    for call, code, text in cases:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == code, err.value.details()
        assert text in (err.value.details() or "")
    manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="child"), metadata=admin)
    with pytest.raises(grpc.RpcError) as err:
        manage.DeleteBranch(pb.DeleteBranchRequest(tenant="t", name="main"), metadata=admin)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_branch_info_and_checkpoints(live: Live) -> None:
    _setup(live)
    manage, admin = live.manage, live.admin
    manage.CreateCheckpoint(pb.CreateCheckpointRequest(tenant="t", branch="main", name="cp"),
                            metadata=admin)
    created = manage.CreateBranch(
        pb.CreateBranchRequest(tenant="t", name="dev", checkpoint="cp", ttl_s=3600),
        metadata=admin).branch
    assert (created.parent, created.branch_lsn, created.last_wal_lsn) == ("main", 1, 100)
    assert created.expires_at_us > created.created_at_us
    main = manage.GetBranch(pb.GetBranchRequest(tenant="t", name="main"), metadata=admin).branch
    assert list(main.children) == ["dev"] and main.logical_size == 4 * PAGE_SIZE
    listed = manage.ListCheckpoints(pb.ListCheckpointsRequest(tenant="t"), metadata=admin)
    assert [(c.name, c.branch, c.lsn) for c in listed.checkpoints] == [("cp", "main", 1)]
    assert _read(live, [2], branch="dev").pages[0] == b"\x03" * PAGE_SIZE


def test_malformed_bytes_are_invalid_argument(live: Live) -> None:
    _setup(live)
    tenant_token = live.metadata("t", auth.Scope.TENANT)
    raw = live.channel.unary_unary("/strata.v1.ManagementService/GetBranch",
                                   request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
    for metadata in (live.admin, tenant_token):
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff\xff\xff\xff", metadata=metadata, timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed request message" in (err.value.details() or "")


def test_tenant_token_is_confined_and_listing_filtered(live: Live) -> None:
    _setup(live, "a")
    _setup(live, "b")
    token_a = live.metadata("a", auth.Scope.TENANT)
    tenants = live.manage.ListTenants(pb.ListTenantsRequest(), metadata=token_a).tenants
    assert [t.tenant for t in tenants] == ["a"]
    with pytest.raises(grpc.RpcError) as err:
        live.manage.ListBranches(pb.ListBranchesRequest(tenant="b"), metadata=token_a)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        live.manage.CreateToken(pb.CreateTokenRequest(tenant="a", scope="admin"),
                                metadata=token_a)
    assert err.value.code() in (grpc.StatusCode.PERMISSION_DENIED,
                                grpc.StatusCode.INVALID_ARGUMENT)
    minted = live.manage.CreateToken(pb.CreateTokenRequest(tenant="a", scope="compute",
                                                           ttl_s=10 * 365 * 86400),
                                     metadata=token_a)
    assert minted.expires_at <= live.authority.verify(token_a[0][1].split()[1]).expires_at


def test_health_and_metrics(live: Live) -> None:
    check = live.channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    reply = check(health_pb2.HealthCheckRequest(service="strata.v1.PageService"),
                  timeout=TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    _setup(live)
    _read(live, [0, 1])
    from prometheus_client import generate_latest

    text = generate_latest(live.metrics.registry).decode()
    assert "strata_pages_served_total 2.0" in text
    assert 'strata_rpc_requests_total{code="OK",method="ManagementService/CreateTenant"}' in text
    assert "strata_ingest_batches_total 1.0" in text
    assert 'strata_layers{level="L0"}' in text


def test_concurrent_streams(live: Live) -> None:
    _setup(live)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(20):
                assert _read(live, [0, 1, 2, 3]).pages[3] == b"\x04" * PAGE_SIZE
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_an_absurd_ttl_is_refused_before_the_branch_exists(live: Live) -> None:
    """A TTL of 2^63 s made an expiry BranchInfo cannot hold: the branch was created and
    the reply failed with INTERNAL (found by tests/api/test_fuzz.py)."""
    _setup(live)
    with pytest.raises(grpc.RpcError) as err:
        live.manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="b", ttl_s=2**63),
                                 metadata=live.admin, timeout=TIMEOUT)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "100 years" in (err.value.details() or "")
    branches = live.manage.ListBranches(pb.ListBranchesRequest(tenant="t"),
                                        metadata=live.admin, timeout=TIMEOUT).branches
    assert [b.name for b in branches] == ["main"]


def test_history_windows_and_sizes_over_grpc(live: Live) -> None:
    _setup(live)
    manage, admin = live.manage, live.admin
    tenant_token = live.metadata("t", auth.Scope.TENANT)
    with pytest.raises(grpc.RpcError) as err:  # the tenant's window is an admin setting
        manage.SetHistory(pb.SetHistoryRequest(tenant="t", history_s=600),
                          metadata=tenant_token)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="x", history_s=10 ** 12),
                            metadata=tenant_token)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "out of range" in (err.value.details() or "")
    manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="dev", history_s=7200),
                        metadata=tenant_token)
    manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="tmp"), metadata=tenant_token)
    set_to = manage.SetHistory(pb.SetHistoryRequest(tenant="t", history_s=600), metadata=admin)
    assert (set_to.history_s, set_to.history_window_from) == (600, "tenant")
    gc = manage.Gc(pb.GcRequest(tenant="t"), metadata=admin)
    windows = {report.branches[0]: (report.history_window_s, report.history_window_from)
               for report in gc.reports}
    assert windows == {"main": (600, "tenant"), "dev": (7200, "branch"),
                       "tmp": (600, "tenant")}
    main = manage.GetBranch(pb.GetBranchRequest(tenant="t", name="main"), metadata=admin).branch
    assert main.logical_size == 4 * PAGE_SIZE and main.reclaim_bytes == 0  # forks read it
    tmp = manage.GetBranch(pb.GetBranchRequest(tenant="t", name="tmp"), metadata=admin).branch
    assert tmp.reclaim_bytes == tmp.owned_bytes == 0
    shown = manage.GetTenant(pb.GetTenantRequest(tenant="t"), metadata=admin)
    assert (shown.history_s, shown.reclaim_bytes) == (600, shown.owned_bytes)
    cleared = manage.UpdateBranch(pb.UpdateBranchRequest(tenant="t", name="dev", history_s=0),
                                  metadata=tenant_token).branch
    assert (cleared.history_s, cleared.history_window_s) == (0, 600)
