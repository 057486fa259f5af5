"""GC says, per timeline, what it removed and what keeps the rest: the newest data, the
history window, checkpoints and child branch points below the cutoff."""

from __future__ import annotations

from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver.engine import Engine, TimelineGcReport
from pageserver.tenant import BranchPoint
from tests.engine.conftest import EngineFactory

REL_PATH = "base/5/16384"
BLOCKS = 8


def _write_version(engine: Engine, tag: int) -> int:
    """Every block rewritten with ``tag``, flushed as one L0; the LSN of the write."""
    timeline = engine.timeline("t", "main")
    lsn = timeline.ingest(Batch(tuple(Write(REL_PATH, block * PAGE_SIZE, bytes([tag]) * PAGE_SIZE)
                                      for block in range(BLOCKS))))
    engine.flush("t")
    return lsn


def _main_report(engine: Engine, cutoff: int) -> TimelineGcReport:
    result = engine.gc("t", cutoff_lsn=cutoff, explain=True)
    assert len(result.reports) == result.timelines == 2  # main and the child
    (report,) = [r for r in result.reports if r.branches == ["main"]]
    return report


def test_gc_reports_what_keeps_each_layer(make_engine: EngineFactory) -> None:
    engine = make_engine(image_threshold=2)
    engine.create_tenant("t").branch("main").ingest(
        Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH))))
    tenant = engine.tenant("t")
    first = _write_version(engine, 1)
    tenant.create_checkpoint("main", "before-v2")
    _write_version(engine, 2)
    tenant.create_branch("child", at=BranchPoint(lsn=first))
    _write_version(engine, 3)
    engine.compact("t", force=True)  # images at the top: older deltas only serve history
    main = engine.timeline("t", "main")
    owned = main.owned_bytes()

    inside = _main_report(engine, cutoff=first)  # the window reaches back to v1
    assert inside.result.bytes_removed == 0
    assert inside.kept.current > 0 and inside.kept.window > 0
    assert inside.kept.current + inside.kept.window == owned

    past = _main_report(engine, cutoff=main.durable_lsn)  # the window has passed
    kept = past.kept
    assert kept.window == 0 and kept.current > 0
    assert kept.checkpoints + kept.branch_points > 0
    assert {"checkpoint before-v2", "branch child"} & set(kept.pinned_by)
    assert (past.result.bytes_removed + kept.current + kept.checkpoints
            + kept.branch_points) == owned
