"""What a batch costs the engine follows the bytes it carries, never the sizes it names."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgumentError
from common.keys import PAGE_SIZE, RELSEG_BLOCKS
from common.ops import Batch, Create, Mkdir, Truncate, Write
from pageserver.engine import Engine
from pageserver.ingest import MAX_FILE_SIZE
from pageserver.timeline import Timeline

REL_PATH = "base/5/16384"


def _versions_at(timeline: Timeline, lsn: int) -> int:
    """Page versions the open memtable holds at ``lsn``."""
    return sum(1 for blocks in timeline.open_memtable.pages.values()
               for versions in blocks.values() for at, _ in versions if at == lsn)


def test_growing_and_shrinking_a_file_stores_no_page_it_was_not_sent(engine: Engine) -> None:
    main = engine.create_tenant("t").branch("main")
    main.ingest(Batch((Create("f"), Write("f", 0, b"a" * 3 * PAGE_SIZE))))
    lsn = main.ingest(Batch((Truncate("f", MAX_FILE_SIZE), Truncate("f", 0))))
    assert _versions_at(main, lsn) == 3  # tombstones of the 3 stored pages, not of 8 M blocks
    main.ingest(Batch((Truncate("f", 5 * PAGE_SIZE),)))
    assert main.read_file("f") == bytes(5 * PAGE_SIZE)


def test_a_write_far_past_the_end_then_a_shrink_costs_the_pages_written(engine: Engine) -> None:
    main = engine.create_tenant("t").branch("main")
    far = MAX_FILE_SIZE - PAGE_SIZE
    lsn = main.ingest(Batch((Create("f"), Write("f", far, b"z" * PAGE_SIZE),
                             Write("f", 0, b"y"), Truncate("f", 0))))
    assert _versions_at(main, lsn) == 2  # both pages written, then tombstoned
    main.ingest(Batch((Truncate("f", PAGE_SIZE),)))
    assert main.read_file("f") == bytes(PAGE_SIZE)


def test_a_shrink_tombstones_pages_in_layers_and_in_the_ancestor(engine: Engine) -> None:
    tenant = engine.create_tenant("t")
    main = tenant.branch("main")
    main.ingest(Batch((Create("f"), Write("f", 0, b"p" * 4 * PAGE_SIZE))))
    main.freeze()
    main.flush()  # the pages now live in a layer, not in a memtable
    child = tenant.create_branch("child")
    lsn = child.ingest(Batch((Truncate("f", PAGE_SIZE + 1),)))
    assert _versions_at(child, lsn) == 3  # 2 tombstones and the cut tail page
    child.ingest(Batch((Truncate("f", 4 * PAGE_SIZE),)))
    assert child.read_file("f") == b"p" * (PAGE_SIZE + 1) + bytes(3 * PAGE_SIZE - 1)
    assert main.read_file("f") == b"p" * 4 * PAGE_SIZE


def test_a_relation_segment_file_stays_within_one_segment(engine: Engine) -> None:
    main = engine.create_tenant("t").branch("main")
    main.ingest(Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH))))
    segment = RELSEG_BLOCKS * PAGE_SIZE
    main.ingest(Batch((Write(REL_PATH, segment - PAGE_SIZE, b"x" * PAGE_SIZE),)))
    lsn = main.durable_lsn
    with pytest.raises(InvalidArgumentError, match="beyond its size limit of 1073741824"):
        main.ingest(Batch((Write(REL_PATH, segment, b"x"),)))
    with pytest.raises(InvalidArgumentError, match="beyond its size limit"):
        main.ingest(Batch((Truncate(REL_PATH, 4 << 30),)))
    assert main.durable_lsn == lsn
