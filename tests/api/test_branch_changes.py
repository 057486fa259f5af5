"""BranchChanges on a live page server: what a fork wrote, by relation, named through the
catalog pages it holds, since its fork, a checkpoint or an LSN; created and dropped
relations; what a token limited to another branch may not read."""

from __future__ import annotations

import struct

import grpc
import pytest

from common.keys import PAGE_SIZE
from common.ops import Create, FileOp, Mkdir, Unlink, Write
from pageserver.api import auth
from proto import strata_pb2 as pb
from tests.api.conftest import Live, ingest_once
from tests.heap_pages import XMAX_INVALID, filenode_map, heap_page, oid_and_name, pg_class_row

TIMEOUT = 10
TABLE, INDEX, OLD, FRESH = "base/5/16384", "base/5/16391", "base/5/16395", "base/5/16400"


def _classes(*extra: tuple[bytes, int, int]) -> bytes:
    return heap_page([
        (pg_class_row(1259, "pg_class", 0, "r", 11), 0, XMAX_INVALID),
        (pg_class_row(2610, "pg_index", 2610, "r", 11), 0, XMAX_INVALID),
        (pg_class_row(2615, "pg_namespace", 2615, "r", 11), 0, XMAX_INVALID),
        (pg_class_row(16384, "orders", 16384, "r"), 0, XMAX_INVALID),
        (pg_class_row(16390, "orders_pkey", 16391, "i"), 0, XMAX_INVALID),
        (pg_class_row(16395, "old", 16395, "r"), 0, XMAX_INVALID), *extra])


def _page(fill: int) -> bytes:
    return bytes([fill]) * PAGE_SIZE


def _base() -> list[FileOp]:
    """A database 'postgres' (oid 5) with table orders (8 pages), its index (2 pages)
    and table old (1 page)."""
    ops: list[FileOp] = [Mkdir("global"), Mkdir("base"), Mkdir("base/5")]
    files = {"global/pg_filenode.map": filenode_map({1262: 1262}),
             "global/1262": heap_page([(oid_and_name(5, "postgres"), 0, 0)]),
             "base/5/pg_filenode.map": filenode_map({1259: 1259}),
             "base/5/1259": _classes(),
             "base/5/2610": heap_page([(struct.pack("<II", 16390, 16384), 0, 0)]),
             "base/5/2615": heap_page([(oid_and_name(2200, "public"), 0, 0)]),
             TABLE: b"".join(_page(n) for n in range(8)),
             INDEX: _page(1) + _page(2), OLD: _page(3)}
    for path, data in files.items():
        ops += [Create(path), Write(path, 0, data)]
    return ops


def _changes(live: Live, **since: object) -> dict[str, pb.RelationChange]:
    reply = live.manage.BranchChanges(pb.BranchChangesRequest(tenant="t", branch="fork",
                                                              **since),  # type: ignore[arg-type]
                                      metadata=live.admin, timeout=TIMEOUT)
    assert reply.pages == sum(r.pages for r in reply.relations)
    assert reply.bytes == reply.pages * PAGE_SIZE and reply.complete
    return {r.name or str(r.relation.rel_number): r for r in reply.relations}


@pytest.fixture
def forked(live: Live) -> Live:
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True),
                             metadata=live.admin, timeout=TIMEOUT)
    ingest_once(live, "main", _base())
    live.manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="fork", parent="main"),
                             metadata=live.admin, timeout=TIMEOUT)
    return live


def test_changes_since_the_fork_name_relations_through_the_catalog(forked: Live) -> None:
    live = forked
    ingest_once(live, "fork", [
        Write(TABLE, 2 * PAGE_SIZE, _page(9)), Write(TABLE, 5 * PAGE_SIZE, _page(9)),
        Write(INDEX, PAGE_SIZE, _page(9)),
        Create(FRESH), Write(FRESH, 0, _page(4)), Unlink(OLD),
        Write("base/5/1259", 0, _classes((pg_class_row(16400, "fresh", 16400, "r"), 0, 0)))])
    found = _changes(live)
    orders, index = found["orders"], found["orders_pkey"]
    assert (orders.change, orders.pages, orders.kind, orders.schema, orders.database) == (
        "written", 2, "r", "public", "postgres")
    assert (index.change, index.pages, index.kind, index.table) == ("written", 1, "i", "orders")
    assert (found["fresh"].change, found["fresh"].pages) == ("created", 1)
    assert (found["old"].change, found["old"].pages) == ("dropped", 1)  # the pages it had
    assert found["pg_class"].pages == 1  # a mapped catalog, named through the map
    assert set(found) == {"orders", "orders_pkey", "fresh", "old", "pg_class"}


def test_changes_since_a_checkpoint_or_lsn_leave_out_what_came_before(forked: Live) -> None:
    live = forked
    ingest_once(live, "fork", [Write(TABLE, 0, _page(7))])
    live.manage.CreateCheckpoint(pb.CreateCheckpointRequest(tenant="t", branch="fork",
                                                            name="c1"),
                                 metadata=live.admin, timeout=TIMEOUT)
    lsn = ingest_once(live, "fork", [Write(INDEX, 0, _page(7))])
    assert set(_changes(live, checkpoint="c1")) == {"orders_pkey"}
    assert set(_changes(live, lsn=lsn - 1)) == {"orders_pkey"}
    assert set(_changes(live)) == {"orders", "orders_pkey"}
    assert _changes(live, lsn=lsn) == {}


def test_changes_refuse_unknown_points_and_uncovered_tokens(forked: Live) -> None:
    live = forked
    live.manage.CreateCheckpoint(pb.CreateCheckpointRequest(tenant="t", branch="main",
                                                            name="on-main"),
                                 metadata=live.admin, timeout=TIMEOUT)
    ingest_once(live, "main", [Write(TABLE, 0, _page(7))])
    live.manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="other", parent="main"),
                             metadata=live.admin, timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as refused:
        live.manage.BranchChanges(pb.BranchChangesRequest(tenant="t", branch="fork",
                                                          checkpoint="missing"),
                                  metadata=live.admin, timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    limited = live.metadata("t", auth.Scope.TENANT)
    token = live.manage.CreateToken(pb.CreateTokenRequest(
        tenant="t", scope="tenant", ttl_s=60, branches=["other"]),
        metadata=limited, timeout=TIMEOUT).token
    with pytest.raises(grpc.RpcError) as denied:
        live.manage.BranchChanges(pb.BranchChangesRequest(tenant="t", branch="fork"),
                                  metadata=(("authorization", f"Bearer {token}"),),
                                  timeout=TIMEOUT)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
