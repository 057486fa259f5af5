"""Layers a compaction or GC replaced are deleted only once no read that may use them is
in flight: a read slower than the wait keeps them, and the next tick deletes them."""

from __future__ import annotations

import time

from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver.compaction import compact
from tests.engine.conftest import EngineFactory

REL_PATH = "base/5/16384"


def test_replaced_layers_outlive_a_read_in_flight(make_engine: EngineFactory) -> None:
    engine = make_engine(l0_compaction_threshold=2, read_drain_s=0.2)
    tenant = engine.create_tenant("t")
    main = tenant.branch("main")
    main.ingest(Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH))))
    for tag in range(4):  # four L0 deltas to merge
        main.ingest(Batch((Write(REL_PATH, tag * PAGE_SIZE, bytes([tag]) * PAGE_SIZE),)))
        main.freeze()
        main.flush()
    old = [layer for layer in main.layers if layer.desc.level == 0]
    assert len(old) == 4

    def stored(keys: list[str]) -> set[str]:
        return set(keys) & set(engine.storage.list("tenants/t/"))

    old_keys = [layer.remote_key for layer in old]
    with tenant.reads.reading():  # a read that started before the swap, still going
        compact(main, engine.config)
        assert not any(layer in main.layers for layer in old)  # out of the manifest ...
        assert stored(old_keys) == set(old_keys)  # ... but not deleted under the read
        assert main.has_unpublished_layers
    engine.tick()  # the read is over: the next tick deletes them
    deadline = time.monotonic() + 10
    while main.has_unpublished_layers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not main.has_unpublished_layers and stored(old_keys) == set()
    data = main.read_file(REL_PATH)  # what the merged layer holds
    assert [data[tag * PAGE_SIZE] for tag in range(4)] == [0, 1, 2, 3]
