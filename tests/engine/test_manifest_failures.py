"""A manifest upload that fails changes nothing: memory stays as it was, and the next
successful change does not publish the refused one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from common.errors import NotFoundError
from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver import gc
from pageserver.engine import Engine
from pageserver.fencing import Fence
from pageserver.manifest import (
    Quotas,
    TenantManifest,
    TimelineManifest,
    tenant_manifest_prefix,
    timeline_manifest_prefix,
)
from pageserver.manifest_store import ManifestStore
from pageserver.remote import ForwardingStorage, LocalDirectoryStorage, RemoteStorageError
from pageserver.remote.retry import CALL_POLICY
from pageserver.tenant import BranchPoint, Tenant
from tests.engine.conftest import EngineFactory

TENANT_MANIFEST = re.compile(r"^tenants/t/manifest/")
TIMELINE_MANIFEST = re.compile(r"/timelines/[^/]+/manifest/")


class FailingStorage(ForwardingStorage):
    """Fails one chosen write, as an object store that stays unreachable for longer than
    the engine retries one call would."""

    def __init__(self, inner: LocalDirectoryStorage) -> None:
        super().__init__(inner)
        self._marker: re.Pattern[str] | None = None
        self._skip = 0
        self._failing: str | None = None  # the key whose writes fail, while ``_left``
        self._left = 0

    def fail_once(self, marker: re.Pattern[str], skip: int = 0) -> None:
        """Fail the write of the first key ``marker`` finds after ``skip`` such writes,
        and the engine's retries of that write."""
        self._marker, self._skip = marker, skip

    def _check(self, key: str) -> None:
        if self._failing == key and self._left:
            self._left -= 1
            raise RemoteStorageError(f"injected failure writing {key} (again)")
        if self._marker is not None and self._marker.search(key):
            if not self._skip:
                self._marker = None
                self._failing, self._left = key, CALL_POLICY.attempts - 1
                raise RemoteStorageError(f"injected failure writing {key}")
            self._skip -= 1

    def put(self, key: str, data: bytes) -> None:
        self._check(key)
        super().put(key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self._check(key)
        return super().put_if_absent(key, data)


@pytest.fixture
def storage(tmp_path: Path) -> FailingStorage:
    return FailingStorage(LocalDirectoryStorage(tmp_path / "remote"))


@pytest.fixture
def tenant(make_engine: EngineFactory, storage: FailingStorage) -> Tenant:
    engine: Engine = make_engine(storage)
    tenant = engine.create_tenant("t")
    tenant.branch("main").ingest(Batch((Mkdir("base"), Create("base/f"))))
    tenant.branch("main").ingest(Batch((Write("base/f", 0, b"a" * PAGE_SIZE),)))
    return tenant


def _newest(storage: FailingStorage, prefix: str) -> dict[str, Any]:
    return ManifestStore(storage, prefix, Fence("t", 0)).read()


def published(storage: FailingStorage) -> TenantManifest:
    """The tenant manifest a page server attaching now would load."""
    return TenantManifest.from_json(_newest(storage, tenant_manifest_prefix("t")))


def published_timeline(storage: FailingStorage, timeline_id: str) -> TimelineManifest:
    return TimelineManifest.from_json(
        _newest(storage, timeline_manifest_prefix("t", timeline_id)))


def _publish_something(tenant: Tenant) -> None:
    """A successful change after the failed one: it persists the whole tenant manifest."""
    tenant.create_checkpoint("main", "later")


def _snapshot(tenant: Tenant) -> tuple[dict[str, object], dict[str, object], set[str]]:
    manifest = tenant.manifest
    return dict(manifest.branches), dict(manifest.checkpoints), set(tenant.timelines)


# --- tenant manifest --------------------------------------------------------------


def test_failed_create_checkpoint(tenant: Tenant, storage: FailingStorage) -> None:
    storage.fail_once(TENANT_MANIFEST)
    with pytest.raises(RemoteStorageError):
        tenant.create_checkpoint("main", "cp")
    with pytest.raises(NotFoundError):
        tenant.checkpoint("cp")
    _publish_something(tenant)
    assert "cp" not in published(storage).checkpoints
    tenant.create_checkpoint("main", "cp")  # the name is still free
    assert "cp" in published(storage).checkpoints


def test_failed_delete_checkpoint(tenant: Tenant, storage: FailingStorage) -> None:
    record = tenant.create_checkpoint("main", "cp")
    storage.fail_once(TENANT_MANIFEST)
    with pytest.raises(RemoteStorageError):
        tenant.delete_checkpoint("cp")
    assert tenant.checkpoint("cp") == record
    _publish_something(tenant)
    assert published(storage).checkpoints["cp"] == record


@pytest.mark.parametrize("marker", [TENANT_MANIFEST, TIMELINE_MANIFEST])
def test_failed_create_branch(tenant: Tenant, storage: FailingStorage,
                              marker: re.Pattern[str]) -> None:
    before = _snapshot(tenant)
    storage.fail_once(marker)
    with pytest.raises(RemoteStorageError):
        tenant.create_branch("dev")
    assert _snapshot(tenant) == before
    with pytest.raises(NotFoundError):
        tenant.branch("dev")
    _publish_something(tenant)
    assert "dev" not in published(storage).branches
    tenant.create_branch("dev")
    assert "dev" in published(storage).branches


def test_failed_restore(tenant: Tenant, storage: FailingStorage) -> None:
    dev = tenant.create_branch("dev")
    dev.ingest(Batch((Write("base/f", 0, b"b" * PAGE_SIZE),)))
    before = _snapshot(tenant)
    storage.fail_once(TENANT_MANIFEST)
    with pytest.raises(RemoteStorageError):
        tenant.restore_branch("dev", BranchPoint(lsn=dev.branch_lsn), preserve_as="old-dev")
    assert _snapshot(tenant) == before
    assert tenant.branch("dev") is dev
    assert dev.read_file("base/f") == b"b" * PAGE_SIZE
    _publish_something(tenant)
    assert published(storage).branches["dev"].timeline_id == dev.timeline_id
    assert "old-dev" not in published(storage).branches


def test_failed_delete_branch(tenant: Tenant, storage: FailingStorage) -> None:
    dev = tenant.create_branch("dev")
    tenant.create_checkpoint("dev", "on-dev")
    before = _snapshot(tenant)
    storage.fail_once(TENANT_MANIFEST)
    with pytest.raises(RemoteStorageError):
        tenant.delete_branch("dev")
    assert _snapshot(tenant) == before
    assert tenant.branch("dev") is dev and not dev.deleted
    assert dev.read_file("base/f") == b"a" * PAGE_SIZE
    _publish_something(tenant)
    assert {"dev", "main"} <= set(published(storage).branches)
    assert "on-dev" in published(storage).checkpoints


def test_failed_delete_of_restored_branch(tenant: Tenant, storage: FailingStorage) -> None:
    """Deleting a restored branch drops it, the unnamed timeline its restore left behind and
    the checkpoints on it in one change: a failure keeps all three."""
    dev = tenant.create_branch("dev")
    lsn = dev.ingest(Batch((Write("base/f", 0, b"b" * PAGE_SIZE),)))
    dev.ingest(Batch((Write("base/f", 0, b"c" * PAGE_SIZE),)))
    tenant.create_checkpoint("dev", "cp", lsn)
    tenant.restore_branch("dev", BranchPoint(lsn=lsn))
    assert tenant.branch("dev").ancestor is dev  # the old timeline, now unnamed
    before = _snapshot(tenant)
    storage.fail_once(TENANT_MANIFEST)
    with pytest.raises(RemoteStorageError):
        tenant.delete_branch("dev")
    assert _snapshot(tenant) == before and not dev.deleted
    assert tenant.branch("dev").read_file("base/f") == b"b" * PAGE_SIZE
    _publish_something(tenant)
    assert "cp" in published(storage).checkpoints
    assert "dev" in published(storage).branches


def test_failed_update_branch(tenant: Tenant, storage: FailingStorage) -> None:
    tenant.create_branch("dev")
    before = _snapshot(tenant)
    storage.fail_once(TENANT_MANIFEST)
    with pytest.raises(RemoteStorageError):
        tenant.update_branch("dev", {"protected": True})
    assert _snapshot(tenant) == before
    _publish_something(tenant)
    assert not published(storage).branches["dev"].protected


def test_failed_set_quotas(tenant: Tenant, storage: FailingStorage) -> None:
    before = tenant.manifest.quotas
    storage.fail_once(TENANT_MANIFEST)
    with pytest.raises(RemoteStorageError):
        tenant.set_quotas(Quotas(max_branches=1))
    assert tenant.manifest.quotas == before
    tenant.create_branch("dev")  # a quota of one branch would refuse this
    assert published(storage).quotas == before


# --- timeline manifests --------------------------------------------------------------


def test_failed_flush(tenant: Tenant, storage: FailingStorage) -> None:
    main = tenant.branch("main")
    main.freeze()
    storage.fail_once(TIMELINE_MANIFEST)
    with pytest.raises(RemoteStorageError):
        main.flush()
    assert main.layers == [] and len(main.frozen) == 1 and main.disk_consistent_lsn == 0
    assert main.read_file("base/f") == b"a" * PAGE_SIZE
    main.flush()
    assert len(main.layers) == 1 and not main.frozen and main.disk_consistent_lsn == 2
    assert published_timeline(storage, main.timeline_id).disk_consistent_lsn == 2


def test_failed_gc(tenant: Tenant, storage: FailingStorage) -> None:
    main = tenant.branch("main")
    main.freeze()
    main.flush()
    storage.fail_once(TIMELINE_MANIFEST)
    with pytest.raises(RemoteStorageError):
        gc.collect(main, 2)
    assert main.gc_cutoff == 0
    main.attach_writer()  # publishes the timeline manifest again
    assert published_timeline(storage, main.timeline_id).gc_cutoff == 0


def test_failed_attach_writer(tenant: Tenant, storage: FailingStorage) -> None:
    main = tenant.branch("main")
    epoch = main.writer_epoch
    storage.fail_once(TIMELINE_MANIFEST)
    with pytest.raises(RemoteStorageError):
        main.attach_writer("host:/computes/a")
    assert main.writer_epoch == epoch and main.writer_lease.current() is None
    assert main.attach_writer("host:/computes/b") == epoch + 1  # no lease was granted
    assert published_timeline(storage, main.timeline_id).writer_epoch == epoch + 1
