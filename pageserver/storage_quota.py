"""A tenant's storage quota: which batches it refuses once reached, and how it says so.

The quota counts ``Tenant.stored_bytes`` (its layer files and the versions still
in memtables). Once that reaches ``max_storage``, a batch that makes any file
longer is refused with ``StorageQuotaError`` (RESOURCE_EXHAUSTED) before it is
applied, so nothing acknowledged is ever undone. Batches that only overwrite,
shrink, remove or rename still pass: PostgreSQL needs them to keep running (its
WAL is rewritten in place) and to free space (DELETE, VACUUM, DROP). What they
add is history, which the PITR window and garbage collection bound.
"""

from __future__ import annotations

from collections.abc import Mapping

from common.errors import StorageQuotaError
from common.ops import Batch, Create, FileMeta, Rename, Truncate, Unlink, Write
from pageserver.tenant import Tenant


def lengthens(batch: Batch, files: Mapping[str, FileMeta]) -> bool:
    """Whether applying ``batch`` over ``files`` makes any file longer than it was."""
    sizes: dict[str, int | None] = {}  # this batch's view of the sizes it touched

    def size_of(path: str) -> int:
        if path in sizes:
            return sizes[path] or 0
        meta = files.get(path)
        return meta.size if meta is not None else 0

    for op in batch.ops:
        match op:
            case Write(path, offset, data) if data and offset + len(data) > size_of(path):
                return True
            case Truncate(path, size) if size > size_of(path):
                return True
            case Create(path):
                sizes[path] = 0
            case Unlink(path):
                sizes[path] = None
            case Rename(src, dst):
                sizes[dst] = size_of(src)
                sizes[src] = None
    return False


def check_storage(tenant: Tenant, batch: Batch, files: Mapping[str, FileMeta]) -> None:
    """Refuse ``batch`` if the tenant is at its storage quota and the batch grows a file."""
    limit = tenant.manifest.quotas.max_storage
    if limit is None:
        return
    used = tenant.stored_bytes()
    if used >= limit and lengthens(batch, files):
        raise StorageQuotaError(
            f"tenant {tenant.tenant_id!r} uses {used} bytes of its storage quota of {limit} "
            "bytes (max_storage): the batch, which makes a file longer, is refused and "
            "nothing was applied; free space (DELETE + VACUUM, drop tables, delete branches) "
            "or raise the quota")


def storage_full(tenant: Tenant) -> bool:
    """Whether the tenant uses all of its storage quota (False without one)."""
    limit = tenant.manifest.quotas.max_storage
    return limit is not None and tenant.stored_bytes() >= limit
