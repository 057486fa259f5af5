"""What a checkpoint costs and what deleting it frees, checked against what the delete and
the next GC then really remove; and the storage history the page server samples."""

from __future__ import annotations

from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver.engine import Engine
from pageserver.storage_history import StorageHistory, sample
from pageserver.tenant import BranchPoint, CheckpointCost
from tests.engine.conftest import EngineFactory

REL_PATH = "base/5/16384"
BLOCKS = 8


def _engine(make_engine: EngineFactory) -> Engine:
    engine = make_engine(image_threshold=2)
    engine.create_tenant("t").branch("main").ingest(
        Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH))))
    return engine


def _write_version(engine: Engine, tag: int, branch: str = "main") -> int:
    """Every block rewritten with ``tag``, flushed; the LSN of the write."""
    timeline = engine.timeline("t", branch)
    lsn = timeline.ingest(Batch(tuple(Write(REL_PATH, block * PAGE_SIZE, bytes([tag]) * PAGE_SIZE)
                                      for block in range(BLOCKS))))
    engine.flush("t")
    return lsn


def _gc_past_window(engine: Engine) -> int:
    """GC of main with its cutoff at its newest LSN; the bytes it removed."""
    return engine.gc("t", cutoff_lsn=engine.timeline("t", "main").durable_lsn).bytes_removed


def test_each_checkpoint_frees_what_only_it_reads(make_engine: EngineFactory) -> None:
    engine = _engine(make_engine)
    tenant = engine.tenant("t")
    _write_version(engine, 1)
    tenant.create_checkpoint("main", "a")
    _write_version(engine, 2)
    engine.compact("t", force=True)  # an image at v2: a reads below it, b reads it
    tenant.create_checkpoint("main", "b")
    _write_version(engine, 3)
    engine.compact("t", force=True)
    _gc_past_window(engine)  # what nothing pins is gone; a and b keep the rest

    costs = tenant.checkpoint_costs(["a", "b"])
    assert costs["a"].held_bytes > 0 and costs["b"].held_bytes > 0
    for cost in costs.values():  # each reads layers of its own
        assert cost.freed_bytes == 0 and cost.gc_bytes == cost.held_bytes
    assert _gc_past_window(engine) == 0  # GC again: both still pinned
    tenant.delete_checkpoint("a")
    assert _gc_past_window(engine) == costs["a"].reclaim_bytes
    assert tenant.checkpoint_costs(["b"]) == {"b": costs["b"]}
    tenant.delete_checkpoint("b")
    assert _gc_past_window(engine) == costs["b"].reclaim_bytes


def test_checkpoints_reading_the_same_history_free_nothing_alone(
        make_engine: EngineFactory) -> None:
    engine = _engine(make_engine)
    tenant = engine.tenant("t")
    _write_version(engine, 1)
    tenant.create_checkpoint("main", "a")
    _write_version(engine, 2)
    tenant.create_checkpoint("main", "b")
    _write_version(engine, 3)
    engine.compact("t", force=True)  # one delta layer holds v1 to v3: both read it
    _gc_past_window(engine)

    costs = tenant.checkpoint_costs(["a", "b", "gone"])
    assert set(costs) == {"a", "b"}  # a name deleted meanwhile is left out
    assert costs["a"].held_bytes == costs["b"].held_bytes > 0
    assert costs["a"].reclaim_bytes == costs["b"].reclaim_bytes == 0
    tenant.delete_checkpoint("a")
    assert _gc_past_window(engine) == 0  # b still reads it
    (left,) = tenant.checkpoint_costs(["b"]).values()
    assert left.gc_bytes == costs["b"].held_bytes
    tenant.delete_checkpoint("b")
    assert _gc_past_window(engine) == left.gc_bytes


def test_a_checkpoint_on_a_reset_branchs_past_frees_that_past(
        make_engine: EngineFactory) -> None:
    engine = _engine(make_engine)
    tenant = engine.tenant("t")
    _write_version(engine, 1)
    tenant.create_branch("fork")
    _write_version(engine, 2, branch="fork")
    tenant.create_checkpoint("fork", "mine")
    past = engine.timeline("t", "fork")
    tenant.restore_branch("fork", None)  # reset: only the checkpoint reads the old state
    (cost,) = tenant.checkpoint_costs(["mine"]).values()
    assert cost == CheckpointCost(past.owned_bytes(), past.owned_bytes(), 0)
    assert cost.reclaim_bytes > 0
    stored = tenant.stored_bytes()
    tenant.delete_checkpoint("mine")
    assert stored - tenant.stored_bytes() == cost.freed_bytes


def test_the_past_a_checkpoint_keeps_frees_its_branch_point_on_the_parent_too(
        make_engine: EngineFactory) -> None:
    engine = _engine(make_engine)
    tenant = engine.tenant("t")
    _write_version(engine, 1)
    tenant.create_branch("fork")  # its branch point pins v1 on main
    _write_version(engine, 2)
    engine.compact("t", force=True)
    _gc_past_window(engine)
    _write_version(engine, 3, branch="fork")
    tenant.create_checkpoint("fork", "mine")
    past = engine.timeline("t", "fork")
    tenant.restore_branch("fork", None)  # the fork's past, and its branch point, kept by mine
    _gc_past_window(engine)
    (cost,) = tenant.checkpoint_costs(["mine"]).values()
    assert cost.freed_bytes == past.owned_bytes() > 0
    assert cost.gc_bytes > 0  # main's v1 layers only the old branch point read
    stored = tenant.stored_bytes()
    tenant.delete_checkpoint("mine")
    assert stored - tenant.stored_bytes() == cost.freed_bytes
    assert _gc_past_window(engine) == cost.gc_bytes


def test_the_storage_history_keeps_the_newest_samples(make_engine: EngineFactory) -> None:
    engine = _engine(make_engine)
    tenant = engine.tenant("t")
    _write_version(engine, 1)
    tenant.create_checkpoint("main", "a")
    tenant.create_branch("fork", at=BranchPoint(checkpoint="a"))
    history = StorageHistory(engine.config.state_dir / "history", max_samples=3)
    taken = [sample(tenant) for _ in range(8)]
    for each in taken:
        history.record("t", each)
    assert history.read("t") == taken[-3:]
    assert history.read("t", since_us=taken[-1].at_us) == taken[-1:]
    assert len((engine.config.state_dir / "history" / "t.jsonl").read_text().splitlines()) <= 6
    last = taken[-1]
    assert [b.name for b in last.branches] == ["fork", "main"]
    assert last.branches[1].owned_bytes == engine.timeline("t", "main").owned_bytes()
    assert [(c.name, c.branch) for c in last.checkpoints] == [("a", "main")]
    assert last.stored_bytes == tenant.stored_bytes()
    with (engine.config.state_dir / "history" / "t.jsonl").open("a") as torn:
        torn.write('{"at_us": 1')  # a crash mid-append, then a restart
    history = StorageHistory(engine.config.state_dir / "history", max_samples=3)
    assert history.read("t") == taken[-3:]
    history.record("t", taken[0])
    assert history.read("t") == [*taken[-2:], taken[0]]
    history.forget("t")
    assert history.read("t") == []


def test_the_engine_samples_each_tenant_and_forgets_a_deleted_one(
        make_engine: EngineFactory) -> None:
    engine = _engine(make_engine)
    engine.sample_storage("t")
    engine.sample_storage("nowhere")  # no such tenant: nothing recorded, no error
    (only,) = engine.storage_history.read("t")
    assert [b.name for b in only.branches] == ["main"]
    engine.delete_tenant("t")
    assert engine.storage_history.read("t") == []
