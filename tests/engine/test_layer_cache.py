"""Layer files on the page server's disk: read in place from a local store (one copy);
from S3, a cache held to its limit that never evicts a layer a read is using, downloads
an evicted layer again, and can be lost without harm."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver.engine import Engine
from pageserver.layer_cache import LayerCache
from pageserver.remote import LocalDirectoryStorage, S3Storage
from tests.engine.conftest import EngineFactory

REL_PATH = "base/5/16384"
LAYERS = 6
PAGES_PER_LAYER = 16  # random pages: each layer ~128 KB, whatever lz4 does


def _write_layers(engine: Engine, pages: dict[int, bytes]) -> None:
    """Tenant ``t`` with ``LAYERS`` L0 deltas on main, each of fresh random pages."""
    timeline = engine.create_tenant("t").branch("main")
    timeline.ingest(Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH))))
    for layer_no in range(LAYERS):
        writes = []
        for block in range(layer_no * PAGES_PER_LAYER, (layer_no + 1) * PAGES_PER_LAYER):
            pages[block] = os.urandom(PAGE_SIZE)
            writes.append(Write(REL_PATH, block * PAGE_SIZE, pages[block]))
        timeline.ingest(Batch(tuple(writes)))
        engine.flush("t")


def _check_pages(engine: Engine, pages: dict[int, bytes]) -> None:
    timeline = engine.timeline("t", "main")
    for block, page in pages.items():
        assert timeline.read_file(REL_PATH, block * PAGE_SIZE, PAGE_SIZE) == page


def _cached_files(state: Path) -> list[Path]:
    return [path for path in (state / "layers").rglob("*") if path.is_file()]


def test_a_local_store_is_read_in_place(make_engine: EngineFactory, tmp_path: Path) -> None:
    pages: dict[int, bytes] = {}
    engine = make_engine()
    _write_layers(engine, pages)
    _check_pages(engine, pages)
    assert _cached_files(tmp_path / "state") == []  # written, uploaded, read: one copy
    engine.close(flush=True)
    stale = tmp_path / "state" / "layers" / "t" / "old" / "delta-copy"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"a copy an older version kept")
    again = make_engine()
    assert _cached_files(tmp_path / "state") == []  # older copies are dropped at start
    _check_pages(again, pages)
    stats = again.layer_cache.stats()
    assert stats.in_place and stats.bytes == 0 and stats.misses == 0 and stats.hits > 0


@pytest.fixture
def s3_engine(make_engine: EngineFactory, make_s3_storage: Callable[[str, str], S3Storage],
              s3_bucket: str) -> Callable[[int], Engine]:
    """Engines on one S3 bucket and state dir, with a layer cache of the given bytes."""
    def make(limit_bytes: int) -> Engine:
        return make_engine(make_s3_storage(s3_bucket, "t"), layer_cache_bytes=limit_bytes)
    return make


def _layer_bytes(engine: Engine) -> list[int]:
    return [layer.desc.size for layer in engine.timeline("t", "main").layers]


@pytest.mark.s3
def test_the_cache_stays_under_its_limit_and_downloads_again(
        s3_engine: Callable[[int], Engine], tmp_path: Path) -> None:
    pages: dict[int, bytes] = {}
    writer = s3_engine(1 << 30)
    _write_layers(writer, pages)
    sizes = _layer_bytes(writer)
    writer.close(flush=True)
    shutil.rmtree(tmp_path / "state" / "layers")  # a cold cache
    limit = max(sizes) * 2 + 1  # room for two layers of the six
    engine = s3_engine(limit)
    _check_pages(engine, pages)
    first = engine.layer_cache.stats()
    assert not first.in_place
    assert first.misses >= LAYERS and first.downloaded_bytes >= sum(sizes)
    assert first.bytes <= limit and first.evictions >= LAYERS - 2
    assert sum(path.stat().st_size for path in _cached_files(tmp_path / "state")) <= limit
    _check_pages(engine, pages)  # the evicted layers come back
    second = engine.layer_cache.stats()
    assert second.misses > first.misses and second.bytes <= limit


@pytest.mark.s3
def test_a_layer_a_read_holds_is_not_evicted(s3_engine: Callable[[int], Engine],
                                             tmp_path: Path) -> None:
    pages: dict[int, bytes] = {}
    writer = s3_engine(1 << 30)
    _write_layers(writer, pages)
    writer.close(flush=True)
    shutil.rmtree(tmp_path / "state" / "layers")
    engine = s3_engine(1)  # every layer not in use is evicted at once
    held = engine.timeline("t", "main").layers[0]
    with held.reading() as reader:
        _check_pages(engine, pages)  # downloads and evicts every other layer
        assert held.local_path.exists()
        assert reader.summary.lsn_start == held.lsn_start  # still mapped, still readable
        assert engine.layer_cache.stats().evictions >= LAYERS - 1
    engine.layer_cache.shrink()
    assert not held.local_path.exists()  # released: evictable like the rest
    assert _cached_files(tmp_path / "state") == []


@pytest.mark.s3
def test_losing_the_cache_is_harmless(s3_engine: Callable[[int], Engine],
                                      tmp_path: Path) -> None:
    pages: dict[int, bytes] = {}
    engine = s3_engine(1 << 30)
    _write_layers(engine, pages)
    _check_pages(engine, pages)
    assert len(_cached_files(tmp_path / "state")) == LAYERS  # written here, kept
    engine.close(flush=True)
    limit = sum(path.stat().st_size for path in _cached_files(tmp_path / "state")) // 2
    smaller = s3_engine(limit)  # a previous run's files are accounted, then trimmed
    assert smaller.layer_cache.stats().bytes <= limit
    assert sum(path.stat().st_size for path in _cached_files(tmp_path / "state")) <= limit
    _check_pages(smaller, pages)
    smaller.close(flush=False)
    shutil.rmtree(tmp_path / "state" / "layers")  # the disk lost
    again = s3_engine(1 << 30)
    _check_pages(again, pages)
    assert again.layer_cache.stats().misses == LAYERS


def test_a_bad_cache_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        LayerCache(tmp_path / "layers", LocalDirectoryStorage(tmp_path / "remote"), 0)
