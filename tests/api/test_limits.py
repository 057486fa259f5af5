"""Per-tenant limits over gRPC: streams past a tenant's limit are refused, others go on,
and a compute's page reader shares the streams it has when a new one is refused."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from common.client import StrataClient
from common.keys import Relation
from compute.remote import PageReader
from pageserver.api import auth
from pageserver.api.limits import CallLimits
from proto import strata_pb2 as pb
from tests.api.conftest import Live, serving

TIMEOUT = 10


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Live]:
    limits = CallLimits(streams_per_tenant=2, calls_per_tenant=2, max_streams=6, max_calls=4,
                        admin_threads=2)
    with serving(tmp_path, limits) as running:
        for tenant in ("a", "b"):
            running.manage.CreateTenant(pb.CreateTenantRequest(tenant=tenant, empty=True),
                                        metadata=running.admin, timeout=TIMEOUT)
        yield running


def _idle_stream(live: Live, tenant: str, stop: threading.Event
                 ) -> grpc.Future[pb.GetPagesResponse]:
    """A GetPages stream of ``tenant`` that sends nothing until ``stop``."""
    def requests() -> Iterator[pb.GetPagesRequest]:
        stop.wait()
        yield from ()

    call: grpc.Future[pb.GetPagesResponse] = live.pages.GetPages(
        requests(), metadata=live.metadata(tenant, auth.Scope.COMPUTE))
    return call


def _read_one(live: Live, tenant: str) -> pb.GetPagesResponse:
    request = pb.GetPagesRequest(at=pb.ReadPoint(tenant=tenant, latest=True),
                                 relation=pb.Relation(rel_number=1), blocks=[0])
    responses = live.pages.GetPages(iter([request]), timeout=TIMEOUT,
                                    metadata=live.metadata(tenant, auth.Scope.COMPUTE))
    response: pb.GetPagesResponse = next(iter(responses))
    return response


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_tenant_past_its_stream_limit_is_refused_and_others_go_on(limited: Live) -> None:
    stop = threading.Event()
    idle = [_idle_stream(limited, "a", stop) for _ in range(2)]
    try:
        _until(lambda: _refused_now(limited), "a's third stream to be refused")
        assert not any(call.done() for call in idle)
        with pytest.raises(grpc.RpcError) as refused:
            _read_one(limited, "a")
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("tenant 'a' has 2 GetPages streams open at once, its limit "
                "(streams_per_tenant = 2)") in (refused.value.details() or "")
        assert _read_one(limited, "b").status.code == 0  # another tenant is not held up
        tenant = limited.manage.GetTenant(pb.GetTenantRequest(tenant="a"),
                                          metadata=limited.metadata("a", auth.Scope.TENANT),
                                          timeout=TIMEOUT)
        assert tenant.tenant.tenant == "a"  # nor are a's own unary calls
        idle[0].cancel()
        _until(lambda: not _refused_now(limited), "a's slot to come back")
    finally:
        stop.set()
        for call in idle:
            call.cancel()


def _refused_now(live: Live) -> bool:
    """Whether a new GetPages stream of tenant a is refused right now."""
    try:
        _read_one(live, "a")
    except grpc.RpcError as exc:
        if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
            return True
        raise
    return False


def test_a_compute_reads_through_the_streams_it_may_open(limited: Live) -> None:
    token = limited.authority.issue("a", auth.Scope.COMPUTE, 600)
    client = StrataClient(f"127.0.0.1:{limited.server.port}", token)
    reader = PageReader(client, "a", "main", retry_budget_s=TIMEOUT, streams=4)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def read() -> None:
        try:
            start.wait()
            for _ in range(5):
                assert reader.get_pages(Relation(0, 0, 1, 0), [0]) == [bytes(8192)]
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    try:
        assert errors == []
        assert reader.open_streams == 2  # the refused slots were given up, not retried forever
    finally:
        reader.close()
        client.close()
