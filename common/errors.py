"""Exceptions raised by the storage engine; each maps to one gRPC status later. Also how any
exception is told in one line (``first_line``)."""


class StrataError(Exception):
    """Base class of every error the engine raises on purpose."""


class NotFoundError(StrataError):
    """An unknown tenant, timeline, branch, checkpoint, file or object."""


class AlreadyExistsError(StrataError):
    """Something that must be new already exists."""


class InvalidArgumentError(StrataError):
    """A request that can never succeed as written (bad path, bad operation)."""


class OutOfRangeError(StrataError):
    """An LSN beyond the last durable LSN, or a branch point beyond the parent's."""


class BelowGcCutoffError(OutOfRangeError):
    """A read at an LSN whose history garbage collection already removed."""


class FailedPreconditionError(StrataError):
    """The state does not allow the operation now (children exist, stale epoch...)."""


class QuotaExceededError(StrataError):
    """A tenant quota (branches, TTL, computes) would be exceeded."""


class StorageQuotaError(QuotaExceededError):
    """A batch would grow a tenant that already uses all of its storage quota.

    Sent with the trailing metadata ``STORAGE_FULL`` so that a compute can tell it from
    a busy server (both are RESOURCE_EXHAUSTED) and answer ENOSPC rather than retry.
    """


STORAGE_FULL = ("strata-refusal", "storage-quota")


class TooBusyError(QuotaExceededError):
    """A tenant already has as many streams open, or calls in flight, as it may."""


class PermissionDeniedError(StrataError):
    """The caller may not do this: its token does not allow the call on this tenant, or
    the servicer refuses it (a token wider than the caller's own)."""


class CorruptionError(StrataError):
    """Bytes read from disk or the object store failed verification."""


class TenantElsewhereError(StrataError):
    """A tenant this page server does not serve any more (detached, being detached, or
    attached by another page server). UNAVAILABLE, so clients retry; ``address`` names the
    page server now holding it ("" while it is attached nowhere), sent as the trailing
    metadata ``TENANT_LOCATION`` for a compute to follow."""

    def __init__(self, message: str, address: str = "") -> None:
        super().__init__(message)
        self.address = address


TENANT_LOCATION = "strata-tenant-location"
"""Trailing metadata key: the address of the page server a moved tenant is attached to."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none: what a
    one-line error shows of a driver's or a program's failure."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
