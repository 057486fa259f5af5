"""Images on a branch hold only what the branch wrote: pages it inherits unchanged stay
its ancestor's, so compacting a fork costs what it changed, and reads stay the same."""

from __future__ import annotations

from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Truncate, Write
from pageserver.engine import Engine
from pageserver.timeline import Timeline
from tests.engine.conftest import EngineFactory

REL_PATH = "base/5/16384"
BLOCKS = 200
CHANGED = range(0, BLOCKS, 10)  # a tenth of the blocks, spread over the file


def _page(tag: int, block: int) -> bytes:
    return bytes([tag, block % 251]) * (PAGE_SIZE // 2)


def _loaded(make_engine: EngineFactory) -> Engine:
    """Main with a file of ``BLOCKS`` distinct pages, flushed and compacted into images."""
    engine = make_engine(image_threshold=1)
    main = engine.create_tenant("t").branch("main")
    main.ingest(Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH))))
    main.ingest(Batch(tuple(Write(REL_PATH, block * PAGE_SIZE, _page(1, block))
                            for block in range(BLOCKS))))
    engine.flush("t")
    engine.compact("t", force=True)
    return engine


def _contents(timeline: Timeline, lsn: int | None = None) -> bytes:
    return timeline.read_file(REL_PATH, 0, None, lsn=lsn)


def test_a_fork_image_holds_only_the_pages_it_changed(make_engine: EngineFactory) -> None:
    engine = _loaded(make_engine)
    tenant = engine.tenant("t")
    fork = tenant.create_branch("fork")
    fork.ingest(Batch(tuple(Write(REL_PATH, block * PAGE_SIZE, _page(2, block))
                            for block in CHANGED)))
    engine.flush("t")
    expected = _contents(fork)
    written = fork.disk_consistent_lsn
    assert engine.compact("t", force=True).images_written >= 1
    images = [layer for layer in fork.layers if layer.is_image]
    assert images and all(layer.desc.partial for layer in images)
    main_images = [layer for layer in tenant.branch("main").layers if layer.is_image]
    assert not any(layer.desc.partial for layer in main_images)
    # the image holds the changed pages, not the file: about a tenth of main's image
    assert sum(layer.desc.size for layer in images) * 4 < sum(
        layer.desc.size for layer in main_images)
    assert _contents(fork) == expected and _contents(fork, written) == expected
    engine.gc("t", cutoff_lsn=fork.disk_consistent_lsn)  # the fork's deltas can go
    assert all(layer.is_image for layer in fork.layers)
    assert _contents(fork) == expected
    assert _contents(tenant.branch("main")) == b"".join(_page(1, b) for b in range(BLOCKS))


def test_pages_a_fork_zeroed_stay_zero_behind_its_image(make_engine: EngineFactory) -> None:
    engine = _loaded(make_engine)
    fork = engine.tenant("t").create_branch("fork")
    fork.ingest(Batch((Truncate(REL_PATH, 0), Truncate(REL_PATH, BLOCKS * PAGE_SIZE))))
    fork.ingest(Batch((Write(REL_PATH, 3 * PAGE_SIZE, _page(3, 3)),)))
    engine.flush("t")
    expected = bytes(3 * PAGE_SIZE) + _page(3, 3) + bytes((BLOCKS - 4) * PAGE_SIZE)
    assert _contents(fork) == expected
    engine.compact("t", force=True)
    engine.gc("t", cutoff_lsn=fork.disk_consistent_lsn)
    assert all(layer.is_image and layer.desc.partial for layer in fork.layers)
    assert _contents(fork) == expected  # tombstones: not the pages main still has
    engine.close()
    fork = make_engine(image_threshold=1).timeline("t", "fork")  # from the manifests
    assert all(layer.is_image and layer.desc.partial for layer in fork.layers)
    assert _contents(fork) == expected


def test_a_fork_of_a_fork_reads_through_both_partial_images(
        make_engine: EngineFactory) -> None:
    engine = _loaded(make_engine)
    tenant = engine.tenant("t")
    first = tenant.create_branch("first")
    first.ingest(Batch((Write(REL_PATH, 0, _page(2, 0)),)))
    second = tenant.create_branch("second", parent="first")
    second.ingest(Batch((Write(REL_PATH, PAGE_SIZE, _page(3, 1)),)))
    engine.flush("t")
    engine.compact("t", force=True)
    engine.gc("t", cutoff_lsn=second.disk_consistent_lsn)
    expected = _page(2, 0) + _page(3, 1) + b"".join(_page(1, b) for b in range(2, BLOCKS))
    assert _contents(second) == expected
