"""Engine errors to gRPC status codes: the one place the mapping is made."""

from __future__ import annotations

import grpc

from common.errors import (
    AlreadyExistsError,
    CorruptionError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    QuotaExceededError,
    StrataError,
)

_STATUS_OF: tuple[tuple[type[StrataError], grpc.StatusCode], ...] = (
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (OutOfRangeError, grpc.StatusCode.OUT_OF_RANGE),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (CorruptionError, grpc.StatusCode.DATA_LOSS),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (QuotaExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
)


def status_of(error: StrataError) -> grpc.StatusCode:
    """The gRPC status an engine error maps to (storage trouble: UNAVAILABLE)."""
    for kind, code in _STATUS_OF:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.UNAVAILABLE
