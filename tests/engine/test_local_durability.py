"""Tenants acknowledged after a local fsync, through the engine: the setting stays with
the tenant, a restart uploads what its disk acknowledged, a move drops it loudly, and a
branch never names a point the store does not hold."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from common.durability import Durability
from common.errors import InvalidArgumentError
from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Write
from pageserver.engine import Engine
from pageserver.remote import LocalDirectoryStorage
from pageserver.remote.faults import FaultPlan, FaultyStorage
from tests.engine.conftest import EngineFactory

PATH = "f"
LOCAL = Durability("local", 5.0)


def page(tag: int) -> bytes:
    return tag.to_bytes(8, "big") * (PAGE_SIZE // 8)


def write(engine: Engine, tag: int, block: int = 0) -> int:
    return engine.timeline("t", "main").ingest(Batch((Write(PATH, block * PAGE_SIZE,
                                                            page(tag)),)))


def blocks(engine: Engine, count: int) -> list[bytes]:
    data = engine.timeline("t", "main").read_file(PATH)
    return [data[b * PAGE_SIZE:(b + 1) * PAGE_SIZE] for b in range(count)]


@pytest.fixture
def store(tmp_path: Path) -> LocalDirectoryStorage:
    return LocalDirectoryStorage(tmp_path / "shared")


def crash_with_a_local_tail(make_engine: EngineFactory, store: LocalDirectoryStorage,
                            state: str) -> Engine:
    """An engine whose local tenant acknowledged batches 1..4 (blocks 0..3) that never
    reached the store (its log creates fail), stopped without flushing."""
    faulty = FaultyStorage(store, FaultPlan(error=1.0, ops=frozenset({"put_if_absent"})),
                           enabled=False)
    engine = make_engine(faulty, state=state)
    engine.create_tenant("t", LOCAL).branch("main").ingest(Batch((Create(PATH),)))
    engine.tenant("t").log.wait_durable(engine.tenant("t").log.acknowledged_seqno)
    faulty.enabled = True
    for tag in range(1, 5):
        write(engine, tag, tag - 1)
    engine.close(flush=False)
    return engine


def test_the_setting_stays_with_the_tenant(make_engine: EngineFactory,
                                           store: LocalDirectoryStorage, tmp_path: Path) -> None:
    first = make_engine(store, state="a")
    tenant = first.create_tenant("t", Durability("local", 2.5))
    assert tenant.log.durability == Durability("local", 2.5)
    first.close()
    again = make_engine(store, state="a")  # a restart
    assert again.tenant("t").manifest.durability == Durability("local", 2.5)
    assert again.tenant("t").log.durability.local
    again.tenant("t").set_durability(Durability())
    again.close()
    shutil.rmtree(tmp_path / "a")
    elsewhere = make_engine(store, state="b")
    assert elsewhere.attach_tenant("t").log.durability == Durability()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="not one of store, local"):
        Durability("fast")
    with pytest.raises(InvalidArgumentError, match=r"outside 0\.1 s to 300 s"):
        Durability("local", 0.01)


def test_a_restart_uploads_what_the_disk_acknowledged(
        make_engine: EngineFactory, store: LocalDirectoryStorage, tmp_path: Path) -> None:
    crash_with_a_local_tail(make_engine, store, "a")
    assert any((tmp_path / "a" / "tenant-logs" / "t").iterdir())
    restarted = make_engine(store, state="a")
    assert blocks(restarted, 4) == [page(1), page(2), page(3), page(4)]
    segments = [p.name for p in (tmp_path / "a" / "tenant-logs" / "t").iterdir()]
    assert not [name for name in segments if name.startswith("00000001-")], \
        "generation 1's local log is deleted once uploaded"
    restarted.close()
    shutil.rmtree(tmp_path / "a")  # and now the store alone has them
    elsewhere = make_engine(store, state="b")
    elsewhere.attach_tenant("t")
    assert blocks(elsewhere, 4) == [page(1), page(2), page(3), page(4)]


def test_a_tenant_that_moved_drops_its_local_tail_loudly(
        make_engine: EngineFactory, store: LocalDirectoryStorage, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    crash_with_a_local_tail(make_engine, store, "a")
    other = make_engine(store, state="b")
    other.attach_tenant("t", force=True)
    write(other, 9, 0)
    other.detach_tenant("t")
    with caplog.at_level(logging.ERROR):
        restarted = make_engine(store, state="a")
    assert "t" not in restarted.tenants()
    # The new owner flushed and released generation 1's chunks: which batches of the
    # local log the store held cannot be told any more, so every one is counted.
    assert "DROPPING up to 5 acknowledged batches" in caplog.text
    assert not (tmp_path / "a" / "tenant-logs" / "t").exists()
    back = restarted.attach_tenant("t")
    assert back.branch("main").read_file(PATH) == page(9)


def test_a_branch_point_is_in_the_store_before_a_manifest_names_it(
        make_engine: EngineFactory, store: LocalDirectoryStorage, tmp_path: Path) -> None:
    engine = make_engine(store, state="a")
    engine.create_tenant("t", LOCAL).branch("main").ingest(Batch((Create(PATH),)))
    write(engine, 1)
    engine.tenant("t").create_branch("dev")
    engine.close(flush=False)
    shutil.rmtree(tmp_path / "a")  # the disk is lost after the branch was made
    other = make_engine(store, state="b")
    dev = other.attach_tenant("t", force=True).branch("dev")
    assert dev.read_file(PATH) == page(1)
