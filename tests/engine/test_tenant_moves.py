"""Tenants move between page servers on one object store: detach, attach, the location
records in the store, and a restart that does not take a tenant back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import FailedPreconditionError, NotFoundError, TenantElsewhereError
from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Write
from pageserver.engine import Engine
from pageserver.locations import Locations
from pageserver.remote import LocalDirectoryStorage
from tests.engine.conftest import EngineFactory


def _page(tag: int) -> bytes:
    return tag.to_bytes(8, "big") * (PAGE_SIZE // 8)


@pytest.fixture
def store(tmp_path: Path) -> LocalDirectoryStorage:
    return LocalDirectoryStorage(tmp_path / "shared")


def _with_data(engine: Engine, tenant_id: str = "t") -> None:
    """A tenant with a branch and a write not flushed yet (in the memtable only)."""
    engine.create_tenant(tenant_id)
    main = engine.timeline(tenant_id, "main")
    main.ingest(Batch((Create("f"), Write("f", 0, _page(1)))))
    engine.flush(tenant_id)
    engine.tenant(tenant_id).create_branch("dev")
    main.ingest(Batch((Write("f", PAGE_SIZE, _page(2)),)))


def _attached_json(tmp_path: Path, state: str) -> list[str]:
    return list(json.loads((tmp_path / state / "attached.json").read_text())["tenants"])


def test_detach_then_attach_elsewhere_keeps_every_write(
        make_engine: EngineFactory, store: LocalDirectoryStorage, tmp_path: Path) -> None:
    first = make_engine(store, state="a")
    _with_data(first)
    generation = first.tenant("t").generation
    first.detach_tenant("t")
    assert first.tenants() == []
    assert _attached_json(tmp_path, "a") == []
    second = make_engine(store, state="b")
    tenant = second.attach_tenant("t")
    assert tenant.generation == generation + 1
    assert sorted(tenant.branch_names()) == ["dev", "main"]
    assert tenant.branch("main").read_file("f") == _page(1) + _page(2)
    assert tenant.branch("dev").read_file("f") == _page(1)
    assert _attached_json(tmp_path, "b") == ["t"]


def test_the_store_records_who_claimed_each_generation(
        make_engine: EngineFactory, store: LocalDirectoryStorage) -> None:
    first = make_engine(store, state="a")
    first.locations.address = "10.0.0.1:6400"
    _with_data(first)
    claim = first.locations.newest("t")
    assert claim is not None
    assert (claim.pageserver_id, claim.address, claim.detached) == (
        first.locations.pageserver_id, "10.0.0.1:6400", False)
    assert claim.claimed_at > 0
    first.detach_tenant("t")
    detached = first.locations.newest("t")
    assert detached is not None and detached.detached
    assert detached.claimed_at == claim.claimed_at
    second = make_engine(store, state="b")
    second.locations.address = "10.0.0.2:6400"
    second.attach_tenant("t")
    moved = Locations(store, "someone-else").newest("t")
    assert moved is not None
    assert (moved.generation, moved.pageserver_id, moved.address, moved.detached) == (
        claim.generation + 1, second.locations.pageserver_id, "10.0.0.2:6400", False)
    assert first.locations.pageserver_id != second.locations.pageserver_id


def test_the_page_server_id_is_stable_across_restarts(make_engine: EngineFactory,
                                                       store: LocalDirectoryStorage) -> None:
    first = make_engine(store, state="a")
    ident = first.locations.pageserver_id
    first.close()
    assert make_engine(store, state="a").locations.pageserver_id == ident


def test_a_restart_does_not_take_back_a_tenant_claimed_elsewhere(
        make_engine: EngineFactory, store: LocalDirectoryStorage, tmp_path: Path) -> None:
    """A page server that died holding the tenant comes back after it moved: it must not
    claim a newer generation and serve it beside the new home."""
    first = make_engine(store, state="a")
    _with_data(first)
    first.flush("t")
    first.close(flush=False)  # died without detaching
    second = make_engine(store, state="b")
    tenant = second.attach_tenant("t")
    again = make_engine(store, state="a")
    assert again.tenants() == []
    assert _attached_json(tmp_path, "a") == []
    with pytest.raises(TenantElsewhereError, match=(
            f"detached from this page server; it is attached to page server "
            f"{second.locations.pageserver_id}")):
        again.tenant("t")
    newest = second.locations.newest("t")
    assert newest is not None and newest.generation == tenant.generation


def test_a_restart_after_a_detach_does_not_attach_it_again(
        make_engine: EngineFactory, store: LocalDirectoryStorage, tmp_path: Path) -> None:
    first = make_engine(store, state="a")
    _with_data(first)
    first.detach_tenant("t")
    first.close()
    (tmp_path / "a" / "attached.json").write_text('{"tenants": ["t"]}')  # a crash before
    again = make_engine(store, state="a")  # the list was written
    assert again.tenants() == []
    with pytest.raises(TenantElsewhereError, match="not attached to any page server"):
        again.tenant("t")


def test_a_restart_keeps_its_own_tenants(make_engine: EngineFactory,
                                          store: LocalDirectoryStorage) -> None:
    first = make_engine(store, state="a")
    _with_data(first)
    first.close(flush=False)
    again = make_engine(store, state="a")
    assert again.tenants() == ["t"]
    assert again.timeline("t", "main").read_file("f") == _page(1) + _page(2)


def test_a_detached_tenant_is_not_found_with_the_reason(make_engine: EngineFactory,
                                                        store: LocalDirectoryStorage) -> None:
    engine = make_engine(store, state="a")
    _with_data(engine)
    engine.detach_tenant("t")
    with pytest.raises(TenantElsewhereError, match="'t' is detached from this page server; "
                                                   "it is not attached to any page server"):
        engine.timeline("t", "main")
    with pytest.raises(NotFoundError, match=r"^no tenant 'u'$"):
        engine.tenant("u")
    engine.attach_tenant("t")  # and back again
    assert engine.timeline("t", "main").read_file("f") == _page(1) + _page(2)


def test_detach_hands_the_writer_over_and_force_fences_it(
        make_engine: EngineFactory, store: LocalDirectoryStorage) -> None:
    """A plain detach leaves a compute's writer epoch as it is, so the compute goes on
    writing on the page server that attaches the tenant next; a forced one fences it."""
    engine = make_engine(store, state="a")
    engine.locations.register("10.0.0.1:6400")
    _with_data(engine)
    dev = engine.timeline("t", "dev")
    epoch = dev.attach_writer("host:/compute")
    engine.detach_tenant("t")
    with pytest.raises(TenantElsewhereError, match="not attached to any page server") as gone:
        engine.timeline("t", "dev")
    assert gone.value.address == ""
    other = make_engine(store, state="b")
    other.locations.register("10.0.0.2:6400")
    moved = other.attach_tenant("t").branch("dev")
    moved.ingest(Batch((Write("f", 0, _page(3)),)), writer_epoch=epoch)  # the same writer
    with pytest.raises(TenantElsewhereError, match=r"moved to 10\.0\.0\.2:6400") as there:
        engine.timeline("t", "dev")
    assert there.value.address == "10.0.0.2:6400"
    other.detach_tenant("t", force=True)
    again = make_engine(store, state="c").attach_tenant("t").branch("dev")
    assert again.read_file("f") == _page(3)
    with pytest.raises(FailedPreconditionError, match="stale"):  # fenced
        again.ingest(Batch((Write("f", 0, _page(4)),)), writer_epoch=epoch)


def test_attach_is_refused_while_the_holder_may_run(make_engine: EngineFactory,
                                                     store: LocalDirectoryStorage) -> None:
    first = make_engine(store, state="a")
    first.locations.register("10.0.0.1:6400")
    _with_data(first)
    second = make_engine(store, state="b")
    with pytest.raises(FailedPreconditionError, match=(
            f"attached to page server {first.locations.pageserver_id} at 10.0.0.1:6400")):
        second.attach_tenant("t")
    assert second.tenants() == []
    first.close()
    first.locations.mark_stopped()  # a clean stop: flushed, serving nothing
    assert second.attach_tenant("t").branch("main").read_file("f") == _page(1) + _page(2)


def test_force_takes_a_tenant_from_a_page_server_that_never_stopped(
        make_engine: EngineFactory, store: LocalDirectoryStorage) -> None:
    first = make_engine(store, state="a")
    first.locations.register("10.0.0.1:6400")
    _with_data(first)
    first.flush("t")
    first.close(flush=False)  # killed: still registered as running
    second = make_engine(store, state="b")
    assert second.attach_tenant("t", force=True).branch("main").read_file("f") == \
        _page(1) + _page(2)


def test_tenants_in_store_and_page_servers(make_engine: EngineFactory,
                                           store: LocalDirectoryStorage) -> None:
    first = make_engine(store, state="a")
    first.locations.register("10.0.0.1:6400")
    second = make_engine(store, state="b")
    second.locations.register("10.0.0.2:6400")
    _with_data(first, "t")
    _with_data(second, "u")
    first.detach_tenant("t")
    assert first.locations.tenants_in_store() == ["t", "u"]
    records = {record.pageserver_id: record for record in first.locations.pageservers()}
    assert {pid: (r.address, r.running) for pid, r in records.items()} == {
        first.locations.pageserver_id: ("10.0.0.1:6400", True),
        second.locations.pageserver_id: ("10.0.0.2:6400", True)}


def test_background_work_stops_for_a_detached_tenant(make_engine: EngineFactory,
                                                     store: LocalDirectoryStorage) -> None:
    engine = make_engine(store, state="a", memtable_bytes=1)
    _with_data(engine)
    engine.tick(gc_due=True)  # queues flushes, compactions and GC
    engine.detach_tenant("t")
    objects = sorted(store.list("tenants/t/"))
    engine.tick(gc_due=True)
    engine.close()
    assert sorted(store.list("tenants/t/")) == objects
