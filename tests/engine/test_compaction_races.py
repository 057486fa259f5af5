"""Two compactions of one branch at once (an on-demand Compact beside the background
one) run one after the other: no duplicate layers, neither fails."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

import pytest

from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver.compaction import CompactionResult, compact
from pageserver.layer import Layer
from pageserver.layer_file import LayerSummary
from pageserver.timeline import MetaEntry, PageEntry
from tests.engine.conftest import EngineFactory

REL_PATH = "base/5/16384"
OTHER_WAITS_S = 2.0  # how long the first pass lets the second one run before going on


def test_concurrent_compactions_of_one_branch_do_not_overlap(
        make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(l0_compaction_threshold=2)
    main = engine.create_tenant("t").branch("main")
    main.ingest(Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH))))
    for tag in range(4):  # four L0 deltas
        main.ingest(Batch((Write(REL_PATH, tag * PAGE_SIZE, bytes([tag]) * PAGE_SIZE),)))
        main.freeze()
        main.flush()
    assert sum(layer.desc.level == 0 for layer in main.layers) == 4

    results: list[CompactionResult] = []
    errors: list[BaseException] = []
    real_write_layer = main.write_layer
    started = threading.Event()

    def second_pass() -> None:
        try:
            results.append(engine.compact("t", force=True))  # as the Compact RPC does
        except BaseException as exc:  # the test reports it below
            errors.append(exc)

    other = threading.Thread(target=second_pass)

    def write_layer(summary: LayerSummary, pages: Iterable[PageEntry],
                    metas: Iterable[MetaEntry], batches: Sequence[tuple[int, int, int]] = (),
                    *, level: int, partial: bool = False) -> Layer:
        """The first pass, mid-way through writing, starts the second and lets it run."""
        if not started.is_set():
            started.set()
            other.start()
            other.join(OTHER_WAITS_S)  # it finishes here unless it must wait for this pass
        return real_write_layer(summary, pages, metas, batches, level=level, partial=partial)

    monkeypatch.setattr(main, "write_layer", write_layer)
    results.append(compact(main, engine.config))  # as the background tick does
    other.join(30)
    assert not other.is_alive() and errors == []

    assert sum(result.l0_merged for result in results) == 4  # the L0s were merged once
    spans = [(layer.desc.kind, layer.desc.key_start, layer.desc.key_end, layer.lsn_start,
              layer.lsn_end) for layer in main.layers]
    assert len(spans) == len(set(spans)), f"duplicate layers: {sorted(spans)}"
    assert all(layer.desc.level == 1 for layer in main.layers)
    for tag in range(4):
        assert main.read_file(REL_PATH, tag * PAGE_SIZE, PAGE_SIZE) == bytes([tag]) * PAGE_SIZE
