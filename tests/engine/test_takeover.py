"""Two page servers, one object store: the newer attach wins, the older one can no longer
acknowledge, publish or delete anything, and nothing acknowledged is lost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from common.errors import TenantElsewhereError
from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Write
from pageserver import compaction, gc
from pageserver.engine import Engine
from pageserver.fencing import SupersededError
from pageserver.manifest_store import ManifestStore
from pageserver.remote import LocalDirectoryStorage, RemoteStorageError
from pageserver.remote.create_journal import CreateJournal
from tests.engine.conftest import EngineFactory

PATH = "f"


def page(tag: int) -> bytes:
    return tag.to_bytes(8, "big") * (PAGE_SIZE // 8)


def write(engine: Engine, branch: str, tag: int, block: int = 0) -> int:
    return engine.timeline("t", branch).ingest(
        Batch((Write(PATH, block * PAGE_SIZE, page(tag)),)))


def attached(state: Path) -> list[str]:
    return list(json.loads((state / "attached.json").read_text())["tenants"])


@pytest.fixture
def store(tmp_path: Path) -> LocalDirectoryStorage:
    return LocalDirectoryStorage(tmp_path / "shared")


def test_a_lost_state_directory_loses_no_acknowledged_batch(
        make_engine: EngineFactory, store: LocalDirectoryStorage, tmp_path: Path) -> None:
    first = make_engine(store, state="a")
    first.create_tenant("t").branch("main").ingest(Batch((Create(PATH),)))
    for tag in range(1, 40):
        write(first, "main", tag, tag % 5)  # acknowledged, never flushed to layers
    first.tenant("t").create_branch("dev")
    write(first, "dev", 99)
    shutil.rmtree(tmp_path / "a")  # the page server's disk is gone with its memtables
    second = make_engine(store, state="b")
    tenant = second.attach_tenant("t")
    main = tenant.branch("main").read_file(PATH)
    assert [main[b * PAGE_SIZE:(b + 1) * PAGE_SIZE] for b in range(5)] == [
        page(35), page(36), page(37), page(38), page(39)]
    assert tenant.branch("dev").read_file(PATH, 0, PAGE_SIZE) == page(99)


def test_the_older_page_server_is_fenced(
        make_engine: EngineFactory, store: LocalDirectoryStorage, tmp_path: Path) -> None:
    old = make_engine(store, state="a")
    old.create_tenant("t").branch("main").ingest(Batch((Create(PATH),)))
    for tag in range(1, 6):
        write(old, "main", tag, tag)
        old.flush("t")  # L0 layers for a compaction to replace
    acked = write(old, "main", 7)
    new = make_engine(store, state="b")
    new.attach_tenant("t")
    objects = set(store.list("tenants/t/"))

    tenant, timeline = old.tenant("t"), old.timeline("t", "main")  # held across the loss
    with pytest.raises(SupersededError, match="generation 2"):
        write(old, "main", 8)
    with pytest.raises(SupersededError):
        tenant.create_branch("late")
    with pytest.raises(SupersededError):
        compaction.compact(timeline, old.config, force=True)
    with pytest.raises(SupersededError):
        gc.collect(timeline, acked)
    # Once it knows, the page server names the tenant as elsewhere to every new call.
    with pytest.raises(TenantElsewhereError, match="attached to page server"):
        old.compact("t", force=True)
    assert objects <= set(store.list("tenants/t/")), "the older page server deleted objects"

    main = new.timeline("t", "main")
    assert main.durable_lsn == acked
    assert main.read_file(PATH, 0, PAGE_SIZE) == page(7)
    assert new.timeline("t", "main").ingest(Batch((Write(PATH, 0, page(9)),))) == acked + 1
    old.tick()  # drops the tenant it lost, so that a restart does not take it back
    assert old.tenants() == [] and attached(tmp_path / "a") == []
    assert attached(tmp_path / "b") == ["t"]


def test_a_stale_page_server_is_fenced_through_the_create_journal_and_a_power_loss(
        make_engine: EngineFactory, tmp_path: Path) -> None:
    """Each page server on its own handle of one local store (as two processes): the
    newer attach fences the older through the journal's lock, and a power loss that
    takes every name and byte not yet written back loses no acknowledged batch and
    brings back none the older page server was refused."""
    root = tmp_path / "shared"
    old = make_engine(LocalDirectoryStorage(root), state="a")
    old.create_tenant("t").branch("main").ingest(Batch((Create(PATH),)))
    acked = [write(old, "main", tag, tag) for tag in range(1, 4)]
    new = make_engine(LocalDirectoryStorage(root), state="b")
    new.attach_tenant("t")
    with pytest.raises(SupersededError):
        write(old, "main", 8, 1)
    after = write(new, "main", 9, 2)
    pending = CreateJournal(root / "tenants" / "t")
    with pending.locked():
        lost = [entry.key for entry in pending.entries()]
    pending.close()
    assert any("/log/" in key for key in lost), "nothing waits in the journal: no test"
    for key in lost:  # the power loss: these were never written back
        (root / key).unlink()
    shutil.rmtree(tmp_path / "b")
    third = make_engine(LocalDirectoryStorage(root), state="c")  # replays the journal
    main = third.attach_tenant("t", force=True).branch("main")
    assert main.durable_lsn == after == acked[-1] + 1
    assert main.read_file(PATH, PAGE_SIZE, 3 * PAGE_SIZE) == page(1) + page(9) + page(3)


def test_a_restarted_page_server_replays_from_the_store(
        make_engine: EngineFactory, store: LocalDirectoryStorage) -> None:
    engine = make_engine(store, state="a")
    engine.create_tenant("t").branch("main").ingest(Batch((Create(PATH),)))
    acked = [write(engine, "main", tag) for tag in range(1, 20)]
    engine.close(flush=False)
    again = make_engine(store, state="a")
    main = again.timeline("t", "main")
    assert main.durable_lsn == acked[-1]
    assert main.read_file(PATH) == page(19)
    assert again.tenant("t").generation == 2


def test_the_scrubber_removes_orphans_and_nothing_named(
        make_engine: EngineFactory, store: LocalDirectoryStorage) -> None:
    """A flush whose manifest publish failed leaves its uploaded layer behind; the
    scrubber deletes it, and what the manifest names stays."""
    engine = make_engine(store, state="a")
    engine.create_tenant("t").branch("main").ingest(Batch((Create(PATH),)))
    write(engine, "main", 1)
    engine.flush("t")
    main = engine.timeline("t", "main")
    write(engine, "main", 2)
    main.freeze()
    published = main.layers
    with pytest.MonkeyPatch.context() as patch:
        def refuse(*args: object) -> None:
            raise RemoteStorageError("injected: manifest not published")
        patch.setattr(ManifestStore, "publish", refuse)
        with pytest.raises(RemoteStorageError):
            main.flush()
    layers = f"tenants/t/timelines/{main.timeline_id}/layers/"
    assert len(store.list(layers)) == len(published) + 1  # the orphan
    assert main.scrub() == 1
    assert sorted(store.list(layers)) == sorted(layer.remote_key for layer in published)
    main.flush()  # the retry publishes a new layer; nothing named was lost
    assert main.read_file(PATH, 0, PAGE_SIZE) == page(2)
    engine.close(flush=False)
    assert make_engine(store, state="a").timeline("t", "main").read_file(
        PATH, 0, PAGE_SIZE) == page(2)
