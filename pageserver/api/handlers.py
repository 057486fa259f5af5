"""gRPC method handlers built from the service descriptors of proto/strata.proto.

Every method gets the same treatment: request bytes that do not parse become
INVALID_ARGUMENT (not INTERNAL), engine errors become their status with the
engine's message, a full disk (ENOSPC, EDQUOT) becomes UNAVAILABLE, which clients
retry, anything unexpected is logged and becomes INTERNAL, and
every call (or streamed request) is counted and timed. Every call of a tenant
holds a slot of ``CallAdmission`` while it runs (refused at once beyond its
limits), so that no tenant can hold all of the server's threads. A stream its client
cancels (every compute unmount) is routine: logged at debug level and counted
as CANCELLED (DEADLINE_EXCEEDED when the client's deadline ran out).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError, Message

from common.errors import InvalidArgumentError, StrataError
from pageserver.api.auth import ALL_TENANTS, current_claims
from pageserver.api.limits import CallAdmission
from pageserver.api.status import abort_with, disk_full, disk_full_message, status_of
from pageserver.metrics import Metrics
from proto import strata_pb2

log = logging.getLogger(__name__)


class Malformed:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, error: str) -> None:
        self.error = error


def _safe_parser(message_class: type[Message]) -> Callable[[bytes], Message | Malformed]:
    def parse(raw: bytes) -> Message | Malformed:
        try:
            return message_class.FromString(raw)
        except (DecodeError, RuntimeError, ValueError) as exc:
            return Malformed(str(exc) or type(exc).__name__)

    return parse


def checked(requests: Iterator[Any]) -> Iterator[Any]:
    """A request stream in which a malformed message raises InvalidArgumentError."""
    for request in requests:
        if isinstance(request, Malformed):
            raise InvalidArgumentError(f"malformed request message: {request.error}")
        yield request


def _caller_tenant() -> str | None:
    """The tenant whose token makes the current call; None for the admin token."""
    claims = current_claims.get()
    return None if claims is None or claims.tenant == ALL_TENANTS else claims.tenant


def unexpected_status(exc: Exception, name: str) -> tuple[grpc.StatusCode, str]:
    """Log an exception that is no engine error; the status and message to end the call
    with: UNAVAILABLE (retried) when the disk is full, otherwise INTERNAL."""
    full = disk_full(exc)
    if full is not None:
        log.error("%s failed: the disk is full: %s", name, full)
        return grpc.StatusCode.UNAVAILABLE, disk_full_message(full)
    log.exception("%s failed", name)
    return grpc.StatusCode.INTERNAL, f"internal error in {name}; see the page server log"


def service_handler(service: str, servicer: object, metrics: Metrics,
                    admission: CallAdmission) -> grpc.GenericRpcHandler:
    """A generic handler serving ``service`` (e.g. "PageService") with ``servicer``'s methods."""
    descriptor = strata_pb2.DESCRIPTOR.services_by_name[service]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in descriptor.methods:
        request_class = getattr(strata_pb2, method.input_type.name)
        response_class = getattr(strata_pb2, method.output_type.name)
        behaviour = getattr(servicer, method.name)
        name = f"{service}/{method.name}"
        parse = _safe_parser(request_class)
        serialize = response_class.SerializeToString
        if method.client_streaming and method.server_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                _stream(behaviour, name, metrics, admission), parse, serialize)
        elif not method.client_streaming and not method.server_streaming:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _unary(behaviour, name, metrics, admission), parse, serialize)
        else:
            raise TypeError(f"{name}: only unary and bidirectional methods are supported")
    return grpc.method_handlers_generic_handler(descriptor.full_name, handlers)


def _unary(behaviour: Callable[[Any, grpc.ServicerContext], Message], name: str,
           metrics: Metrics, admission: CallAdmission
           ) -> Callable[[Any, grpc.ServicerContext], Message]:
    def handle(request: Any, context: grpc.ServicerContext) -> Message:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if isinstance(request, Malformed):
                raise InvalidArgumentError(f"malformed request message: {request.error}")
            with admission.call(_caller_tenant()):
                return behaviour(request, context)
        except StrataError as exc:
            code = status_of(exc)
            abort_with(context, exc)
        except Exception as exc:
            code, message = unexpected_status(exc, name)
            context.abort(code, message)
        finally:
            metrics.rpc_requests.labels(name, code.name).inc()
            metrics.rpc_seconds.labels(name).observe(time.perf_counter() - started)

    return handle


def _stream(behaviour: Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Message]],
            name: str, metrics: Metrics, admission: CallAdmission
            ) -> Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Message]]:
    def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Message]:
        code = grpc.StatusCode.OK
        try:
            with admission.stream(_caller_tenant(), name.rpartition("/")[2]):
                yield from behaviour(requests, context)
        except GeneratorExit:  # gRPC stopped asking for responses: the client is gone
            code = _ended_by_client(context, name)
            raise
        except StrataError as exc:
            code = status_of(exc)
            abort_with(context, exc)
        except Exception as exc:
            aborted = _aborted_with(context)
            if aborted is not None:  # e.g. the auth interceptor refused a streamed request
                code = aborted
                raise
            if isinstance(exc, grpc.RpcError) and not context.is_active():
                code = _ended_by_client(context, name)
                return
            code, message = unexpected_status(exc, name)
            context.abort(code, message)
        finally:
            if code is grpc.StatusCode.OK:
                _count_when_settled(context, name, metrics)
            else:
                metrics.rpc_requests.labels(name, code.name).inc()

    return handle


def _count_when_settled(context: grpc.ServicerContext, name: str, metrics: Metrics) -> None:
    """Count a stream whose requests ended once the call has terminated.

    A client's cancel can wake the request iterator as if the client had
    half-closed, before gRPC marks the call cancelled; only when the call has
    terminated is it known which of the two it was.
    """
    def settle() -> None:
        code = (_ended_by_client(context, name) if _client_cancelled(context)
                else grpc.StatusCode.OK)
        metrics.rpc_requests.labels(name, code.name).inc()

    if not context.add_callback(settle):
        settle()


def _client_cancelled(context: grpc.ServicerContext) -> bool:
    """Whether the client cancelled a call that has terminated.

    Once a call has terminated, ``is_active()`` is False whether it completed or
    was cancelled, and gRPC's public API has no other way to tell the two apart,
    so this reads the call state of gRPC's synchronous server
    (``grpc._server._RPCState.client``); tests/api/test_stream_cancel.py fails if
    an upgrade of gRPC changes it.
    """
    return getattr(getattr(context, "_state", None), "client", None) == "cancelled"


def _ended_by_client(context: grpc.ServicerContext, name: str) -> grpc.StatusCode:
    """How a client ended a stream it no longer waits for (a cancel, or its deadline),
    logged at debug level: routine, not a failure of the page server."""
    code = (grpc.StatusCode.DEADLINE_EXCEEDED if context.time_remaining() <= 0
            else grpc.StatusCode.CANCELLED)
    log.debug("%s: stream ended by the client (%s)", name, code.name)
    return code


def _aborted_with(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The status a call was already aborted with, if any."""
    code = cast(Callable[[], "grpc.StatusCode | None"], context.code)()  # type: ignore[attr-defined]
    return code if code not in (None, grpc.StatusCode.OK) else None
