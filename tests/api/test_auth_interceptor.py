"""AuthInterceptor on a real gRPC server on loopback, in front of echoing fake servicers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.bearer import call_credentials_metadata
from pageserver.api.auth import (
    AuthInterceptor,
    Scope,
    TokenAuthority,
    current_claims,
)
from pageserver.api.signing_keys import KeyRing
from pageserver.api.token_registry import TokenRegistry
from proto import strata_pb2 as pb
from proto import strata_pb2_grpc as pb_grpc
from tests.tokens import every_tenant

KEY = b"s" * 32
TIMEOUT_S = 5


class FakeManagement(pb_grpc.ManagementServiceServicer):
    """ListBranches echoes the tenant; ListTenants shows the caller's claims."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def ListBranches(self, request: pb.ListBranchesRequest,
                     context: grpc.ServicerContext) -> pb.ListBranchesResponse:
        self.calls.append(request.tenant)
        return pb.ListBranchesResponse(branches=[pb.BranchInfo(name=f"{request.tenant}/main")])

    def ListTenants(self, request: pb.ListTenantsRequest,
                    context: grpc.ServicerContext) -> pb.ListTenantsResponse:
        claims = current_claims.get()
        assert claims is not None
        return pb.ListTenantsResponse(tenants=[pb.TenantInfo(tenant=claims.tenant)])


class FakePages(pb_grpc.PageServiceServicer):
    """GetPages echoes each request; like the real handlers it maps any failure to INTERNAL."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def GetPages(self, requests: Iterator[pb.GetPagesRequest],
                 context: grpc.ServicerContext) -> Iterator[pb.GetPagesResponse]:
        try:
            for request in requests:
                self.calls.append(request.at.tenant)
                claims = current_claims.get()
                assert claims is not None
                yield pb.GetPagesResponse(request_id=request.request_id,
                                          status=pb.Status(message=claims.tenant))
        except Exception:
            context.abort(grpc.StatusCode.INTERNAL, "internal error")


class FakeIngest(pb_grpc.IngestServiceServicer):
    """Ingest acknowledges each batch after the open message."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def Ingest(self, requests: Iterator[pb.IngestRequest],
               context: grpc.ServicerContext) -> Iterator[pb.IngestResponse]:
        for request in requests:
            if request.HasField("open"):
                self.calls.append(request.open.tenant)
            else:
                yield pb.IngestResponse(batch_id=request.batch.batch_id, lsn=1)


@dataclass
class Harness:
    channel: grpc.Channel
    authority: TokenAuthority
    management: FakeManagement
    pages: FakePages
    ingest: FakeIngest
    management_stub: Any
    pages_stub: Any
    ingest_stub: Any

    def metadata(self, tenant: str, scope: Scope = Scope.TENANT) -> tuple[tuple[str, str], ...]:
        return call_credentials_metadata(self.authority.issue(tenant, scope, 60))

    def list_branches(self, tenant: str, metadata: Any) -> pb.ListBranchesResponse:
        response: pb.ListBranchesResponse = self.management_stub.ListBranches(
            pb.ListBranchesRequest(tenant=tenant), metadata=metadata, timeout=TIMEOUT_S)
        return response

    def get_pages(self, tenants: list[str], metadata: Any
                  ) -> tuple[list[pb.GetPagesResponse], grpc.RpcError | None]:
        """The responses of one GetPages stream, and the error that ended it if any."""
        requests = (pb.GetPagesRequest(request_id=i, at=pb.ReadPoint(tenant=t), blocks=[0])
                    for i, t in enumerate(tenants))
        responses: list[pb.GetPagesResponse] = []
        try:
            responses.extend(self.pages_stub.GetPages(requests, metadata=metadata,
                                                      timeout=TIMEOUT_S))
        except grpc.RpcError as exc:
            return responses, exc
        return responses, None

    def assert_serving(self) -> None:
        """The server still answers a good call."""
        response = self.list_branches("ok", self.metadata("ok"))
        assert [b.name for b in response.branches] == ["ok/main"]


@pytest.fixture(scope="module")
def running() -> Iterator[Harness]:
    authority = TokenAuthority(KeyRing(KEY), TokenRegistry(None), every_tenant)
    management, pages, ingest_ = FakeManagement(), FakePages(), FakeIngest()
    server = grpc.server(ThreadPoolExecutor(max_workers=8),
                         interceptors=[AuthInterceptor(authority)])
    try:
        # The generated gRPC module has no annotations.
        pb_grpc.add_ManagementServiceServicer_to_server(management, server)  # type: ignore[no-untyped-call]
        pb_grpc.add_PageServiceServicer_to_server(pages, server)  # type: ignore[no-untyped-call]
        pb_grpc.add_IngestServiceServicer_to_server(ingest_, server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        assert port
        server.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}",
                                   options=[("grpc.enable_http_proxy", 0)]) as channel:
            yield Harness(
                channel, authority, management, pages, ingest_,
                pb_grpc.ManagementServiceStub(channel),  # type: ignore[no-untyped-call]
                pb_grpc.PageServiceStub(channel),  # type: ignore[no-untyped-call]
                pb_grpc.IngestServiceStub(channel))  # type: ignore[no-untyped-call]
    finally:
        server.stop(grace=None).wait()


@pytest.fixture
def harness(running: Harness) -> Harness:
    for servicer in (running.management, running.pages, running.ingest):
        servicer.calls.clear()
    return running


def refusal(error: grpc.RpcError | None) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a failed call."""
    assert isinstance(error, grpc.Call)
    return error.code(), error.details() or ""


# ---------------------------------------------------------------- authentication

def test_health_check_needs_no_token(harness: Harness) -> None:
    check = harness.channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    response = check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(("metadata", "details"), [
    ((), "missing bearer token"),
    ((("authorization", "Basic dXNlcjpwdw=="),), "must be 'Bearer <token>'"),
    (call_credentials_metadata("not-a-token"), "token malformed"),
    (call_credentials_metadata(TokenAuthority(KeyRing(b"x" * 32), TokenRegistry(None),
                                              every_tenant).issue("acme", Scope.TENANT, 60)),
     "token signature invalid"),
    (call_credentials_metadata(jwt.encode(
        {"tenant": "acme", "scope": "tenant", "iat": int(time.time()) - 120,
         "exp": int(time.time()) - 60, "jti": "old"}, KEY, algorithm="HS256")),
     "token expired"),
])
def test_unauthenticated_calls_are_refused(harness: Harness, metadata: Any,
                                           details: str) -> None:
    with pytest.raises(grpc.RpcError) as exc_info:
        harness.list_branches("acme", metadata)
    code, message = refusal(exc_info.value)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details in message
    responses, error = harness.get_pages(["acme"], metadata)
    assert responses == []
    assert refusal(error) == (code, message)
    assert harness.management.calls == harness.pages.calls == []
    harness.assert_serving()


# ---------------------------------------------------------------- unary calls

def test_own_tenant_and_admin_are_served(harness: Harness) -> None:
    assert harness.list_branches("acme", harness.metadata("acme")).branches[0].name == "acme/main"
    admin = harness.metadata("*", Scope.ADMIN)
    assert harness.list_branches("other", admin).branches[0].name == "other/main"
    assert harness.management.calls == ["acme", "other"]


def test_other_tenant_is_refused_before_the_servicer(harness: Harness) -> None:
    with pytest.raises(grpc.RpcError) as exc_info:
        harness.list_branches("other", harness.metadata("acme"))
    assert refusal(exc_info.value) == (grpc.StatusCode.PERMISSION_DENIED,
                                       "the token is for tenant 'acme', not 'other'")
    assert harness.management.calls == []
    harness.assert_serving()


def test_servicer_sees_the_claims(harness: Harness) -> None:
    stub = harness.management_stub
    response = stub.ListTenants(pb.ListTenantsRequest(), metadata=harness.metadata("acme"),
                                timeout=TIMEOUT_S)
    assert [t.tenant for t in response.tenants] == ["acme"]
    with pytest.raises(grpc.RpcError) as exc_info:
        stub.ListTenants(pb.ListTenantsRequest(), timeout=TIMEOUT_S,
                         metadata=harness.metadata("acme", Scope.COMPUTE))
    assert refusal(exc_info.value)[0] == grpc.StatusCode.PERMISSION_DENIED


# ---------------------------------------------------------------- streams

def test_get_pages_serves_own_tenant(harness: Harness) -> None:
    responses, error = harness.get_pages(["acme", "acme"],
                                         harness.metadata("acme", Scope.COMPUTE))
    assert error is None
    assert [(r.request_id, r.status.message) for r in responses] == [(0, "acme"), (1, "acme")]


def test_get_pages_stream_switching_tenant_is_aborted(harness: Harness) -> None:
    responses, error = harness.get_pages(["acme", "other", "acme"], harness.metadata("acme"))
    assert refusal(error) == (grpc.StatusCode.PERMISSION_DENIED,
                              "the token is for tenant 'acme', not 'other'")
    assert [r.request_id for r in responses] == [0]
    assert harness.pages.calls == ["acme"]
    harness.assert_serving()


def test_get_pages_first_request_for_other_tenant_is_aborted(harness: Harness) -> None:
    responses, error = harness.get_pages(["other"], harness.metadata("acme", Scope.COMPUTE))
    assert responses == []
    assert refusal(error)[0] == grpc.StatusCode.PERMISSION_DENIED
    assert harness.pages.calls == []
    harness.assert_serving()


def ingest(harness: Harness, tenant: str, metadata: Any) -> list[int]:
    requests = [pb.IngestRequest(open=pb.IngestOpen(tenant=tenant, branch="main")),
                pb.IngestRequest(batch=pb.IngestBatch(batch_id=1)),
                pb.IngestRequest(batch=pb.IngestBatch(batch_id=2))]
    stub = harness.ingest_stub
    return [r.batch_id for r in stub.Ingest(iter(requests), metadata=metadata, timeout=TIMEOUT_S)]


def test_ingest_is_authorised_by_its_open_message(harness: Harness) -> None:
    assert ingest(harness, "acme", harness.metadata("acme", Scope.COMPUTE)) == [1, 2]
    with pytest.raises(grpc.RpcError) as exc_info:
        ingest(harness, "other", harness.metadata("acme", Scope.COMPUTE))
    assert refusal(exc_info.value)[0] == grpc.StatusCode.PERMISSION_DENIED
    assert harness.ingest.calls == ["acme"]
    assert ingest(harness, "other", harness.metadata("*", Scope.ADMIN)) == [1, 2]
    harness.assert_serving()
