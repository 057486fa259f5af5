"""Images inside the history window: GC writes them at its cutoff, where the deltas they
cover can go; compaction at the newest LSN only when reads would search too many deltas."""

from __future__ import annotations

from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver.engine import Engine
from pageserver.tenant import BranchPoint
from pageserver.timeline import Timeline
from tests.engine.conftest import EngineFactory

REL_PATH = "base/5/16384"
BLOCKS = 16
HOUR_S = 3600.0


def _engine(make_engine: EngineFactory, read_threshold: int, **config: object) -> Engine:
    settings: dict[str, object] = {"l0_compaction_threshold": 2, "image_threshold": 2}
    settings.update(config)
    engine = make_engine(pitr_window_s=HOUR_S, image_read_threshold=read_threshold,
                         **settings)
    engine.create_tenant("t").branch("main").ingest(
        Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH))))
    return engine


def _version(engine: Engine, tag: int) -> int:
    """Every block rewritten with ``tag`` and flushed as an L0; the LSN of the write."""
    lsn = engine.timeline("t", "main").ingest(Batch(tuple(
        Write(REL_PATH, block * PAGE_SIZE, bytes([tag]) * PAGE_SIZE) for block in range(BLOCKS))))
    engine.flush("t")
    return lsn


def _reads(main: Timeline, lsn: int) -> bytes:
    return main.read_file(REL_PATH, 0, None, lsn=lsn)


def test_inside_the_window_compaction_writes_no_image(make_engine: EngineFactory) -> None:
    engine = _engine(make_engine, read_threshold=100)
    for tag in range(1, 7):
        _version(engine, tag)
        engine.compact("t")
    main = engine.timeline("t", "main")
    assert not any(layer.is_image for layer in main.layers)
    assert sum(1 for layer in main.layers if not layer.is_image) >= 3  # stacked, kept


def test_reads_searching_too_many_deltas_get_an_image_at_the_newest_lsn(
        make_engine: EngineFactory) -> None:
    engine = _engine(make_engine, read_threshold=3)
    for tag in range(1, 7):
        _version(engine, tag)
        engine.compact("t")
    main = engine.timeline("t", "main")
    images = [layer for layer in main.layers if layer.is_image]
    assert images and all(image.lsn_start > main.gc_cutoff for image in images)


def test_gc_writes_an_image_at_its_cutoff_and_drops_the_deltas_below(
        make_engine: EngineFactory) -> None:
    engine = _engine(make_engine, read_threshold=100)
    lsns = {}
    for tag in range(1, 5):
        lsns[tag] = _version(engine, tag)
        engine.compact("t")  # two L1 generations, wholly older than v4's batch
    main = engine.timeline("t", "main")
    cutoff = main.disk_consistent_lsn  # v4 is what leaves the window
    for tag in (5, 6):
        lsns[tag] = _version(engine, tag)
    before = main.owned_bytes()
    collected = engine.gc("t", cutoff_lsn=cutoff)
    images = [layer for layer in main.layers if layer.is_image]
    assert images and all(image.lsn_start == cutoff for image in images)
    assert collected.layers_removed >= 2 and main.owned_bytes() < before
    assert _reads(main, cutoff) == bytes([4]) * PAGE_SIZE * BLOCKS
    for tag in (5, 6):
        assert _reads(main, lsns[tag]) == bytes([tag]) * PAGE_SIZE * BLOCKS
    assert engine.gc("t", cutoff_lsn=cutoff).layers_removed == 0  # nothing more to write


def _one_delta_of_many_versions(make_engine: EngineFactory) -> tuple[Engine, int]:
    """Four versions of every block in one L0 (one flush); its LSN."""
    engine = _engine(make_engine, read_threshold=100, image_threshold=100)
    main = engine.timeline("t", "main")
    for tag in range(1, 5):
        main.ingest(Batch(tuple(Write(REL_PATH, block * PAGE_SIZE, bytes([tag]) * PAGE_SIZE)
                                for block in range(BLOCKS))))
    engine.flush("t")
    return engine, main.disk_consistent_lsn


def test_gc_images_one_delta_holding_many_versions_per_page(
        make_engine: EngineFactory) -> None:
    engine, cutoff = _one_delta_of_many_versions(make_engine)
    main = engine.timeline("t", "main")
    _version(engine, 5)  # newer than the cutoff: stays
    before = main.owned_bytes()
    assert engine.gc("t", cutoff_lsn=cutoff).layers_removed == 1
    assert main.owned_bytes() < before
    assert _reads(main, cutoff) == bytes([4]) * PAGE_SIZE * BLOCKS


def test_gc_writes_no_image_where_a_branch_point_keeps_the_deltas(
        make_engine: EngineFactory) -> None:
    engine, cutoff = _one_delta_of_many_versions(make_engine)
    main = engine.timeline("t", "main")
    engine.tenant("t").create_branch("old", at=BranchPoint(lsn=cutoff - 1))
    _version(engine, 5)
    before = main.owned_bytes()
    assert engine.gc("t", cutoff_lsn=cutoff).layers_removed == 0
    assert not any(layer.is_image for layer in main.layers)  # it would only add bytes
    assert main.owned_bytes() == before
