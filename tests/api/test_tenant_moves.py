"""Two page server processes on one object store serve different tenants; a tenant moves
from one to the other with DetachTenant and AttachTenant and reads the same pages there."""

from __future__ import annotations

import json
import signal

import grpc
import pytest

from common.client import ClientError, StrataClient
from common.convert import op_to_pb
from common.keys import PAGE_SIZE
from common.ops import Create, Write
from proto import strata_pb2 as pb
from tests.servers import PageServerProcess


def _admin_token(server: PageServerProcess) -> str:
    return (server.home / "state" / "auth" / "admin.token").read_text().strip()


def _client(server: PageServerProcess, token: str | None = None) -> StrataClient:
    return StrataClient(f"127.0.0.1:{server.port}", token or _admin_token(server))


def _tenant_with_pages(client: StrataClient, tenant: str) -> None:
    """An empty tenant whose main holds a file of four tagged pages."""
    client.create_tenant(tenant, empty=True)
    epoch = client.attach_writer(tenant, "main", holder="test").writer_epoch
    pages = b"".join(f"{tenant}:{block}".encode().ljust(PAGE_SIZE, b".") for block in range(4))
    list(client.open_ingest_stream(iter([
        pb.IngestRequest(open=pb.IngestOpen(tenant=tenant, branch="main", writer_epoch=epoch)),
        pb.IngestRequest(batch=pb.IngestBatch(batch_id=1, ops=[
            op_to_pb(Create("f")), op_to_pb(Write("f", 0, pages))])),
    ])))
    client.detach_writer(tenant, "main", epoch)


def _pages(client: StrataClient, tenant: str) -> list[bytes]:
    at = pb.ReadPoint(tenant=tenant, latest=True)
    (listed,) = [file for file in client.list_files(tenant, "main").files if file.path == "f"]
    relation = listed.relation
    reply = next(client.open_page_stream(iter([pb.GetPagesRequest(
        request_id=1, at=at, relation=relation, blocks=[0, 1, 2, 3])])))
    assert reply.status.code == 0, reply.status.message
    return list(reply.pages)


def test_a_tenant_moves_between_two_page_servers(
        pair: tuple[PageServerProcess, PageServerProcess]) -> None:
    first, second = pair
    with _client(first) as on_first, _client(second) as on_second:
        _tenant_with_pages(on_first, "a")
        _tenant_with_pages(on_second, "b")
        before = _pages(on_first, "a")
        assert before[2].startswith(b"a:2")
        assert [t.tenant for t in on_first.list_tenants()] == ["a"]
        assert [t.tenant for t in on_second.list_tenants()] == ["b"]

        with pytest.raises(ClientError) as refused:  # a still serves it
            on_second.attach_tenant("a")
        assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert f"127.0.0.1:{first.port}" in refused.value.message

        detached = on_first.detach_tenant("a")
        assert detached.detached and not detached.here
        with pytest.raises(ClientError) as gone:
            _pages(on_first, "a")
        assert gone.value.code == grpc.StatusCode.UNAVAILABLE  # retried: it may come back
        assert "detached from this page server" in gone.value.message
        assert gone.value.location == ""  # attached nowhere yet

        attached = on_second.attach_tenant("a")
        assert attached.here and attached.generation == detached.generation + 1
        assert attached.address == f"127.0.0.1:{second.port}"
        assert _pages(on_second, "a") == before
        assert [t.tenant for t in on_second.list_tenants()] == ["a", "b"]

        with pytest.raises(ClientError) as elsewhere:
            on_first.get_tenant("a")
        assert elsewhere.value.code == grpc.StatusCode.UNAVAILABLE
        assert elsewhere.value.location == f"127.0.0.1:{second.port}"
        assert f"attached to page server {attached.pageserver_id} at " \
               f"127.0.0.1:{second.port}" in elsewhere.value.message

        everywhere = {t.tenant: t for t in on_first.list_tenants(all_in_store=True)}
        assert sorted(everywhere) == ["a", "b"]
        assert not any(t.here for t in everywhere.values())
        assert {t.address for t in everywhere.values()} == {f"127.0.0.1:{second.port}"}


def test_a_restarted_page_server_does_not_take_a_moved_tenant_back(
        pair: tuple[PageServerProcess, PageServerProcess]) -> None:
    first, second = pair
    with _client(first) as on_first:
        _tenant_with_pages(on_first, "a")
        before = _pages(on_first, "a")
    assert first.signal(signal.SIGKILL) == -signal.SIGKILL  # dies holding the tenant
    with _client(second) as on_second:
        with pytest.raises(ClientError, match="has not stopped or detached it"):
            on_second.attach_tenant("a")  # it registered and never stopped cleanly
        assert on_second.attach_tenant("a", force=True).here
        assert _pages(on_second, "a") == before
    first.start()
    with _client(first) as on_first:
        assert on_first.list_tenants() == []
    attached = json.loads((first.home / "state" / "attached.json").read_text())
    assert attached == {"tenants": []}
    assert "is not attached again" in (first.home / "pageserver.log").read_text()


def test_a_cleanly_stopped_page_server_lets_its_tenants_go(
        pair: tuple[PageServerProcess, PageServerProcess]) -> None:
    first, second = pair
    with _client(first) as on_first:
        _tenant_with_pages(on_first, "a")
        before = _pages(on_first, "a")
    assert first.signal(signal.SIGTERM) == 0
    with _client(second) as on_second:
        assert on_second.attach_tenant("a").here
        assert _pages(on_second, "a") == before


def test_only_admin_tokens_attach_and_detach(
        pair: tuple[PageServerProcess, PageServerProcess]) -> None:
    first, _ = pair
    with _client(first) as admin:
        admin.create_tenant("a", empty=True)
        token = admin.create_token("a", "tenant").token
    with _client(first, token) as tenant:
        for call in (tenant.detach_tenant, tenant.attach_tenant):
            with pytest.raises(ClientError) as refused:
                call("a")
            assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    with _client(first) as admin:
        assert [t.tenant for t in admin.list_tenants()] == ["a"]
        entries = admin.read_audit()
        assert not any(entry.action.startswith("tenant.detach") for entry in entries)
        admin.detach_tenant("a")
        assert [entry.action for entry in admin.read_audit()][-1] == "tenant.detach"
