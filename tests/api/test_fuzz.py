"""Random and malformed requests to a live server: each gets a status, the server keeps serving."""

from __future__ import annotations

from collections import Counter
from typing import Any

import grpc
import hypothesis.strategies as st
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings

from pageserver.api import auth
from proto import strata_pb2 as pb
from tests.api.conftest import Live

METHODS: list[MethodDescriptor] = [
    method for service in pb.DESCRIPTOR.services_by_name.values() for method in service.methods
]
# Statuses a well-behaved server may answer with; INTERNAL and UNKNOWN would be bugs.
ALLOWED = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
}
NAMES = st.sampled_from(["t", "main", "dev", "", "x" * 70, "a/b", "..", "\u00e9t\u00e9", "cp"])
SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: NAMES,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_UINT32: st.sampled_from([0, 1, 5, 255, 256, 2**32 - 1]),
    FieldDescriptor.TYPE_UINT64: st.sampled_from([0, 1, 3, 2**32, 2**63 - 1, 2**64 - 1]),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_ENUM: st.integers(0, 2),
    # NaN, infinities and the edges of what a setting in seconds accepts
    FieldDescriptor.TYPE_DOUBLE: st.floats() | st.sampled_from([0.0, 0.1, 300.0, -1.0]),
}


def _fill(draw: st.DrawFn, message: Message, descriptor: Descriptor, depth: int) -> None:
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None:
            if depth > 3:
                continue
            count = draw(st.integers(1, 3)) if field.is_repeated else 1
            for _ in range(count):
                child = getattr(message, field.name).add() if field.is_repeated else \
                    getattr(message, field.name)
                _fill(draw, child, field.message_type, depth + 1)
                if not field.is_repeated:
                    child.SetInParent()
        elif field.is_repeated:
            getattr(message, field.name).extend(
                draw(st.lists(SCALARS[field.type], max_size=4)))
        else:
            setattr(message, field.name, draw(SCALARS[field.type]))


@st.composite
def payloads(draw: st.DrawFn, method: MethodDescriptor) -> bytes:
    """Bytes of a random request: a random valid message, or random bytes."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=48))
    message_class = getattr(pb, method.input_type.name)
    message = message_class()
    _fill(draw, message, method.input_type, 0)
    if method.name == "CreateTenant":
        message.empty = True  # keep initdb out of the fuzz loop: it takes a second a call
    raw: bytes = message.SerializeToString()
    return raw


@st.composite
def calls(draw: st.DrawFn) -> tuple[MethodDescriptor, list[bytes], str]:
    method = draw(st.sampled_from(METHODS))
    count = draw(st.integers(1, 3)) if method.client_streaming else 1
    token = draw(st.sampled_from(["admin", "tenant", "compute", "none", "garbage"]))
    return method, [draw(payloads(method)) for _ in range(count)], token


def _identity(raw: bytes) -> bytes:
    return raw


Metadata = tuple[tuple[str, str], ...]


def _invoke(live: Live, tokens: dict[str, Metadata], method: MethodDescriptor,
            bodies: list[bytes], token: str) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    metadata: Metadata = ()
    if token == "admin":
        metadata = live.admin
    elif token in tokens:
        metadata = tokens[token]
    elif token == "garbage":
        metadata = (("authorization", "Bearer not.a.jwt"),)
    try:
        if method.client_streaming:
            stream = live.channel.stream_stream(path, request_serializer=_identity,
                                                response_deserializer=_identity)
            list(stream(iter(bodies), metadata=metadata, timeout=20))
        else:
            unary = live.channel.unary_unary(path, request_serializer=_identity,
                                             response_deserializer=_identity)
            unary(bodies[0], metadata=metadata, timeout=20)
    except grpc.RpcError as exc:
        # A random DetachTenant leaves a tenant here nowhere: calls on it are UNAVAILABLE
        # (retry, it may be attached again), which is the one UNAVAILABLE that is right.
        detached = exc.code() == grpc.StatusCode.UNAVAILABLE and \
            "detached from this page server" in str(exc.details())
        assert exc.code() in ALLOWED or detached, f"{path}: {exc.code()} {exc.details()}"
        return exc.code()
    return grpc.StatusCode.OK


def test_random_requests_get_statuses_and_server_survives(live: Live) -> None:
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True), metadata=live.admin)
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant="keep", empty=True),
                             metadata=live.admin)

    # Issued now: the fuzz may delete tenant "t", after which no token of it can be made
    # (and these are refused, as a deleted tenant's tokens must be).
    tokens = {name: live.metadata("t", auth.Scope(name)) for name in ("tenant", "compute")}
    seen: Counter[grpc.StatusCode] = Counter()

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(calls())
    def fuzz(call: tuple[MethodDescriptor, list[bytes], str]) -> None:
        seen[_invoke(live, tokens, *call)] += 1

    fuzz()
    # The fuzz reached the services, not only the authentication gate.
    for code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                 grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED):
        assert seen[code] > 0, seen
    check = live.channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    assert check(health_pb2.HealthCheckRequest(), timeout=5).status == \
        health_pb2.HealthCheckResponse.SERVING
    kept = live.manage.GetBranch(pb.GetBranchRequest(tenant="keep", name="main"),
                                 metadata=live.admin, timeout=5)
    assert kept.branch.name == "main"
