"""Checkpoints and lineage across restore and reset: a checkpoint stays addressable and
names the branch it was taken on; parents and children are branch names, never timelines."""

from __future__ import annotations

import pytest

from common.errors import FailedPreconditionError
from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver.engine import Engine
from pageserver.tenant import BranchPoint, Tenant
from pageserver.timeline import Timeline
from tests.engine.conftest import EngineFactory

REL_PATH = "base/5/16384"


def _page(tag: int) -> bytes:
    return bytes([tag]) * PAGE_SIZE


def _write(timeline: Timeline, tag: int) -> int:
    return timeline.ingest(Batch((Write(REL_PATH, 0, _page(tag)),)))


def _tenant(engine: Engine) -> Tenant:
    tenant = engine.create_tenant("t")
    main = tenant.branch("main")
    main.ingest(Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH))))
    _write(main, 1)
    return tenant


def _migrated_then_undone(tenant: Tenant, reset: bool) -> Timeline:
    """The README's session: fork try-1, checkpoint, migrate, restore to the checkpoint
    and (if ``reset``) reset to main. Returns try-1's first timeline."""
    first = tenant.create_branch("try-1")
    _write(first, 2)  # the state before the migration
    tenant.create_checkpoint("try-1", "before-migration")
    _write(first, 3)  # the migration
    tenant.restore_branch("try-1", BranchPoint(checkpoint="before-migration"))
    if reset:
        tenant.restore_branch("try-1", None)
    return first


def test_the_readme_session_reaches_its_checkpoint_after_a_reset(
        make_engine: EngineFactory) -> None:
    engine = make_engine()
    tenant = _tenant(engine)
    _migrated_then_undone(tenant, reset=True)
    assert tenant.branch("try-1").read_file(REL_PATH) == _page(1)  # main's newest state
    undo = tenant.create_branch("try-1-undo", at=BranchPoint(checkpoint="before-migration"))
    assert undo.read_file(REL_PATH) == _page(2)
    again, _ = tenant.restore_branch("try-1", BranchPoint(checkpoint="before-migration"))
    assert again.read_file(REL_PATH) == _page(2)
    tenant.restore_branch("try-1", None)

    engine.close(flush=False)
    restarted = make_engine().tenant("t")  # the pinned past timeline was persisted
    late = restarted.create_branch("late-undo", at=BranchPoint(checkpoint="before-migration"))
    assert late.read_file(REL_PATH) == _page(2)


@pytest.mark.parametrize("reset", [False, True])
def test_checkpoints_name_their_branch_after_restore_and_reset(
        make_engine: EngineFactory, reset: bool) -> None:
    engine = make_engine()
    tenant = _tenant(engine)
    _migrated_then_undone(tenant, reset)
    assert tenant.checkpoint("before-migration").branch == "try-1"
    engine.close(flush=False)
    assert make_engine().tenant("t").checkpoint("before-migration").branch == "try-1"


def test_lineage_after_restore_and_reset_names_branches_only(
        make_engine: EngineFactory) -> None:
    tenant = _tenant(make_engine())
    for reset in (False, True):
        if reset:
            tenant.restore_branch("try-1", None)
        else:
            _migrated_then_undone(tenant, reset=False)
        main, try_1 = tenant.branch_info("main"), tenant.branch_info("try-1")
        assert main.children == ("try-1",) and main.parent is None
        assert try_1.parent == "main" and try_1.children == ()


@pytest.mark.parametrize("reset", [False, True])
def test_a_branch_from_a_checkpoint_taken_before_a_restore_names_that_branch(
        make_engine: EngineFactory, reset: bool) -> None:
    tenant = _tenant(make_engine())
    _migrated_then_undone(tenant, reset)
    tenant.create_branch("t2-undo", at=BranchPoint(checkpoint="before-migration"))
    assert tenant.branch_info("t2-undo").parent == "try-1"
    assert tenant.branch_info("try-1").children == ("t2-undo",)
    assert tenant.branch_info("main").children == ("try-1",)


def test_gc_keeps_what_a_checkpoint_on_a_past_timeline_needs(
        make_engine: EngineFactory) -> None:
    engine = make_engine(image_threshold=1)
    tenant = _tenant(engine)
    first = tenant.create_branch("try-1")
    _write(first, 2)
    tenant.create_checkpoint("try-1", "before-migration")
    for tag in range(3, 8):
        _write(first, tag)
    tenant.restore_branch("try-1", BranchPoint(checkpoint="before-migration"))
    tenant.restore_branch("try-1", None)  # first is now unnamed, kept for the checkpoint
    _collect_everything(engine, first)
    undo = tenant.create_branch("undo", at=BranchPoint(checkpoint="before-migration"))
    assert undo.read_file(REL_PATH) == _page(2)


def test_gc_keeps_a_checkpoint_below_a_restored_branch_point(
        make_engine: EngineFactory) -> None:
    """The checkpoint is taken on the restored branch at an LSN its ancestor holds: that
    ancestor must keep it."""
    engine = make_engine(image_threshold=1)
    tenant = _tenant(engine)
    first = tenant.create_branch("try-1")
    early = _write(first, 2)
    first.freeze()
    first.flush()
    for tag in range(3, 8):
        _write(first, tag)
        first.freeze()
        first.flush()
    tenant.restore_branch("try-1", BranchPoint(lsn=early + 2))
    tenant.create_checkpoint("try-1", "early", early)
    _collect_everything(engine, first)
    assert early in first.retain_lsns()
    undo = tenant.create_branch("undo", at=BranchPoint(checkpoint="early"))
    assert undo.read_file(REL_PATH) == _page(2)
    same = tenant.create_branch("same", parent="try-1", at=BranchPoint(lsn=early))
    assert same.read_file(REL_PATH) == _page(2)


def _collect_everything(engine: Engine, timeline: Timeline) -> None:
    """Flush, compact and collect with the highest cutoff: only pinned history stays."""
    engine.flush("t")
    engine.compact("t", force=True)
    assert engine.gc("t", cutoff_lsn=2**62).layers_removed > 0
    assert timeline.gc_cutoff == timeline.durable_lsn


def test_deleting_a_branch_takes_its_checkpoints_from_before_its_reset(
        make_engine: EngineFactory) -> None:
    engine = make_engine()
    tenant = _tenant(engine)
    first = _migrated_then_undone(tenant, reset=True)
    assert first.timeline_id in tenant.timelines  # pinned by the checkpoint
    tenant.delete_branch("try-1")
    assert tenant.manifest.checkpoints == {}
    assert first.deleted and not engine.storage.list(f"tenants/t/timelines/{first.timeline_id}/")
    assert sorted(tenant.timelines) == [tenant.branch("main").timeline_id]


def test_deleting_the_last_checkpoint_on_a_past_timeline_reclaims_it(
        make_engine: EngineFactory) -> None:
    engine = make_engine()
    tenant = _tenant(engine)
    first = _migrated_then_undone(tenant, reset=True)
    tenant.delete_checkpoint("before-migration")
    assert first.deleted and not engine.storage.list(f"tenants/t/timelines/{first.timeline_id}/")
    assert tenant.branch("try-1").read_file(REL_PATH) == _page(1)


def test_a_branch_from_a_past_checkpoint_is_a_child_that_delete_respects(
        make_engine: EngineFactory) -> None:
    tenant = _tenant(make_engine())
    first = _migrated_then_undone(tenant, reset=True)
    tenant.create_branch("t2-undo", at=BranchPoint(checkpoint="before-migration"))
    with pytest.raises(FailedPreconditionError, match="child branches t2-undo"):
        tenant.delete_branch("try-1")
    assert tenant.delete_branch("try-1", cascade=True).branches == ["t2-undo", "try-1"]
    assert first.deleted and tenant.manifest.checkpoints == {}


def test_deleting_a_preserved_past_keeps_what_the_restored_branch_reads(
        make_engine: EngineFactory) -> None:
    """The preserved state is no parent of the restored branch: deleting it drops its name
    and its checkpoints; the history the restored branch reads through stays."""
    tenant = _tenant(make_engine())
    first = tenant.create_branch("try-1")
    kept = _write(first, 2)
    _write(first, 3)
    tenant.create_checkpoint("try-1", "on-first", kept)
    tenant.restore_branch("try-1", BranchPoint(lsn=kept), preserve_as="broken")
    tenant.create_checkpoint("broken", "broken-state")
    assert tenant.branch_info("broken").children == ()
    assert tenant.delete_branch("broken").branches == ["broken"]
    assert sorted(tenant.manifest.checkpoints) == ["on-first"]  # try-1's stays
    assert not first.deleted and tenant.branch("try-1").read_file(REL_PATH) == _page(2)
