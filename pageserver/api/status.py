"""Engine errors to gRPC status codes: the one place the mapping is made."""

from __future__ import annotations

import errno
from typing import NoReturn

import grpc

from common.errors import (
    STORAGE_FULL,
    TENANT_LOCATION,
    AlreadyExistsError,
    CorruptionError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    QuotaExceededError,
    StorageQuotaError,
    StrataError,
    TenantElsewhereError,
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


def trailing_metadata_of(error: StrataError) -> tuple[tuple[str, str], ...]:
    """What a client learns from the trailing metadata beside the status: that a storage
    quota refused (not a busy server), or where a tenant that left is attached now."""
    if isinstance(error, StorageQuotaError):
        return (STORAGE_FULL,)
    if isinstance(error, TenantElsewhereError) and error.address:
        return ((TENANT_LOCATION, error.address),)
    return ()


def abort_with(context: grpc.ServicerContext, exc: StrataError) -> NoReturn:
    """End the call with ``exc``'s status and message, and its trailing metadata (a
    storage quota says so; a tenant that moved says where to)."""
    metadata = trailing_metadata_of(exc)
    if metadata:
        context.set_trailing_metadata(metadata)
    context.abort(status_of(exc), str(exc))


_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException) -> OSError | None:
    """The out-of-space ``OSError`` (ENOSPC, EDQUOT) that is ``exc`` or caused it, if any.

    A full disk is not a bug (INTERNAL) but a condition that passes once space is freed:
    it is answered UNAVAILABLE, which clients retry.
    """
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain of causes; never loop on a cycle
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def disk_full_message(error: OSError) -> str:
    """What a client is told when the page server's disk is full."""
    where = f": {error.filename}" if error.filename else ""
    return (f"the page server's disk is full ({error.strerror or error}{where}); "
            "retry once space is freed")
