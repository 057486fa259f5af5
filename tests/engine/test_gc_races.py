"""GC racing the creation of a branch (or checkpoint) at an old LSN: the new branch is
either refused with "below the GC cutoff" or reads its whole history; never an empty or
partial tree. Hooks force each interleaving; nothing sleeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from common.errors import BelowGcCutoffError
from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver.engine import Engine
from pageserver.layer import Layer
from pageserver.tenant import BranchPoint
from pageserver.timeline import Timeline

REL_PATH = "base/5/16384"
OLD_LSN = 3  # the second write: page 1


def _page(tag: int) -> bytes:
    return bytes([tag]) * PAGE_SIZE


def _history(engine: Engine) -> Timeline:
    """``main`` with four versions of a page, compacted to an image GC can keep alone."""
    main = engine.create_tenant("t").branch("main")
    main.ingest(Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH))))
    for tag in range(4):
        main.ingest(Batch((Write(REL_PATH, 0, _page(tag)),)))
    engine.flush("t")
    engine.compact("t", force=True)
    return main


def _while_gc_chooses(main: Timeline, monkeypatch: pytest.MonkeyPatch,
                      attempt: Callable[[], object]) -> list[object]:
    """Make GC on ``main`` run ``attempt`` once, after it chose what to delete and before
    it deleted; the list receives what ``attempt`` returned or the cutoff error it raised."""
    real_replace = main.replace_layers
    outcome: list[object] = []

    def replace_layers(added: list[Layer], removed: list[Layer], **rest: Any) -> None:
        if removed and not outcome:
            try:
                outcome.append(attempt())
            except BelowGcCutoffError as exc:
                outcome.append(exc)
        real_replace(added, removed, **rest)

    monkeypatch.setattr(main, "replace_layers", replace_layers)
    return outcome


def test_a_branch_created_while_gc_chooses_is_refused(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Created after GC chose what to delete, before it deleted: GC's cutoff is already
    published, so the create is refused instead of getting a tree GC then empties."""
    main = _history(engine)
    tenant = engine.tenant("t")
    outcome = _while_gc_chooses(
        main, monkeypatch, lambda: tenant.create_branch("late", at=BranchPoint(lsn=OLD_LSN)))
    assert engine.gc("t", cutoff_lsn=main.durable_lsn).layers_removed >= 1
    assert len(outcome) == 1
    if isinstance(outcome[0], Timeline):
        assert outcome[0].read_file(REL_PATH) == _page(1), "the branch lost its history"
    assert isinstance(outcome[0], BelowGcCutoffError)


def test_a_branch_checked_before_gc_is_kept_by_it(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked against the old cutoff, then a whole GC runs before the branch is
    registered: GC must keep what the branch reads."""
    main = _history(engine)
    tenant = engine.tenant("t")
    real_new_timeline = tenant._new_timeline
    collected: list[int] = []

    def new_timeline(ancestor: Timeline | None, branch_lsn: int) -> Timeline:
        if not collected:
            collected.append(engine.gc("t", cutoff_lsn=main.durable_lsn).layers_removed)
        return real_new_timeline(ancestor, branch_lsn)

    monkeypatch.setattr(tenant, "_new_timeline", new_timeline)
    late = tenant.create_branch("late", at=BranchPoint(lsn=OLD_LSN))
    assert collected  # GC ran in the window
    assert late.read_file(REL_PATH) == _page(1)
    assert main.read_file(REL_PATH) == _page(3)


def test_a_checkpoint_taken_while_gc_chooses_is_refused(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    main = _history(engine)
    tenant = engine.tenant("t")
    outcome = _while_gc_chooses(
        main, monkeypatch, lambda: tenant.create_checkpoint("main", "old", lsn=OLD_LSN))
    engine.gc("t", cutoff_lsn=main.durable_lsn)
    assert len(outcome) == 1 and isinstance(outcome[0], BelowGcCutoffError)
