"""Branch deletes that cannot be undone: main lives as long as its tenant, and a dry run
says exactly what a delete would remove."""

from __future__ import annotations

import pytest

from common.errors import FailedPreconditionError
from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver.engine import Engine
from pageserver.tenant import BranchPoint, Tenant

REL_PATH = "base/5/16384"


def _tenant(engine: Engine) -> Tenant:
    engine.create_tenant("t").branch("main").ingest(
        Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH))))
    return engine.tenant("t")


def _write(tenant: Tenant, branch: str, tag: int) -> None:
    tenant.branch(branch).ingest(Batch((Write(REL_PATH, 0, bytes([tag]) * PAGE_SIZE),)))


def test_main_is_never_deleted_not_even_forced(engine: Engine) -> None:
    tenant = _tenant(engine)
    tenant.create_branch("dev")
    for dry_run in (True, False):
        with pytest.raises(FailedPreconditionError,
                           match="'main' cannot be deleted while tenant 't' exists; "
                                 "delete the tenant instead"):
            tenant.delete_branch("main", cascade=True, force=True, dry_run=dry_run)
    assert sorted(tenant.branch_names()) == ["dev", "main"]


def test_a_cascade_from_mains_preserved_past_leaves_main(engine: Engine) -> None:
    """main reads through the timeline a restore preserved, but it is not that branch's
    child by name: deleting the preserved branch, even cascading, never takes main."""
    tenant = _tenant(engine)
    tenant.create_checkpoint("main", "start")
    _write(tenant, "main", 1)
    tenant.restore_branch("main", BranchPoint(checkpoint="start"), preserve_as="main-before")
    assert tenant.branch("main").ancestor is tenant.branch("main-before")
    deleted = tenant.delete_branch("main-before", cascade=True, force=True)
    assert deleted.branches == ["main-before"]
    assert sorted(tenant.branch_names()) == ["main"]
    assert tenant.branch("main").ancestor is not None  # the history it reads stays


def test_a_dry_run_says_what_the_delete_then_removes(engine: Engine) -> None:
    tenant = _tenant(engine)
    tenant.create_branch("a")
    _write(tenant, "a", 1)
    tenant.create_checkpoint("a", "a-1")
    tenant.create_branch("b", parent="a")
    _write(tenant, "b", 2)
    tenant.create_checkpoint("b", "b-1")
    tenant.create_checkpoint("main", "kept")
    engine.flush("t")
    doomed = [tenant.branch("a"), tenant.branch("b")]
    assert all(t.owned_bytes() > 0 for t in doomed)
    objects = sorted(engine.storage.list("tenants/t/"))

    plan = tenant.delete_branch("a", cascade=True, dry_run=True)
    assert (plan.branches, plan.checkpoints) == (["b", "a"], ["a-1", "b-1"])
    assert plan.freed_bytes == sum(t.owned_bytes() for t in doomed)
    assert sorted(engine.storage.list("tenants/t/")) == objects  # nothing went
    assert sorted(tenant.branch_names()) == ["a", "b", "main"]

    assert tenant.delete_branch("a", cascade=True) == plan
    assert sorted(tenant.branch_names()) == ["main"]
    assert sorted(tenant.manifest.checkpoints) == ["kept"]
    assert not any(t.timeline_id in key for t in doomed
                   for key in engine.storage.list("tenants/t/"))


def test_a_dry_run_counts_the_unnamed_past_a_restore_left(engine: Engine) -> None:
    tenant = _tenant(engine)
    fork = tenant.create_branch("fork")
    _write(tenant, "fork", 1)
    tenant.create_checkpoint("fork", "ok")
    _write(tenant, "fork", 2)
    engine.flush("t")
    restored, _ = tenant.restore_branch("fork", BranchPoint(checkpoint="ok"))
    _write(tenant, "fork", 3)
    engine.flush("t")
    plan = tenant.delete_branch("fork", dry_run=True)
    assert (plan.branches, plan.checkpoints) == (["fork"], ["ok"])
    assert plan.freed_bytes == fork.owned_bytes() + restored.owned_bytes()
    assert tenant.delete_branch("fork") == plan
    assert fork.deleted and sorted(tenant.timelines) == [tenant.branch("main").timeline_id]
