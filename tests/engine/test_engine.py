"""Engine behaviour: branches, history resolution, bad input, corruption, restart, attach."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from common.errors import (
    AlreadyExistsError,
    BelowGcCutoffError,
    CorruptionError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    QuotaExceededError,
)
from common.keys import PAGE_SIZE, Relation, parse_relation_path
from common.ops import Batch, Create, Mkdir, Rename, Truncate, Unlink, Write
from pageserver import timeline as timeline_module
from pageserver import writer_lease as writer_lease_module
from pageserver.engine import Engine
from pageserver.manifest import Quotas
from pageserver.remote import LocalDirectoryStorage
from pageserver.tenant import BranchPoint, BranchSettings
from tests.engine.conftest import EngineFactory

REL_PATH = "base/5/16384"


def _page(tag: int) -> bytes:
    return bytes([tag % 256]) * PAGE_SIZE


def _setup(engine: Engine, tenant: str = "t") -> None:
    engine.create_tenant(tenant).branch("main").ingest(
        Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH)))
    )


def test_rename_moves_metadata_not_pages(engine: Engine) -> None:
    _setup(engine)
    main = engine.timeline("t", "main")
    main.ingest(Batch((Create("pg_wal.tmp"), Write("pg_wal.tmp", 0, _page(7) * 3))))
    lsn = main.ingest(Batch((Rename("pg_wal.tmp", "walfile"),)))
    assert main.read_file("walfile") == _page(7) * 3
    assert main.stat("walfile").relation == main.stat("pg_wal.tmp", lsn - 1).relation
    pages_in_batch = sum(
        len(blocks) for blocks in main.open_memtable.pages.values()
        for versions in blocks.values() if versions[-1][0] == lsn
    )
    assert pages_in_batch == 0


def test_unknown_tenant_and_branch(engine: Engine) -> None:
    _setup(engine)
    with pytest.raises(NotFoundError, match="no tenant 'nope'"):
        engine.tenant("nope")
    with pytest.raises(NotFoundError, match="no branch 'ghost'"):
        engine.timeline("t", "ghost")
    with pytest.raises(NotFoundError):
        engine.tenant("t").create_branch("x", parent="ghost")


def test_lsn_beyond_last_durable(engine: Engine) -> None:
    _setup(engine)
    main = engine.timeline("t", "main")
    with pytest.raises(OutOfRangeError, match="beyond the last durable LSN 1"):
        main.list_files(5)
    with pytest.raises(OutOfRangeError, match="beyond the last LSN"):
        engine.tenant("t").create_branch("late", at=BranchPoint(lsn=99))


def test_read_below_gc_cutoff(engine: Engine) -> None:
    _setup(engine)
    main = engine.timeline("t", "main")
    for tag in range(4):
        main.ingest(Batch((Write(REL_PATH, 0, _page(tag)),)))
    engine.flush("t")
    engine.compact("t", force=True)
    result = engine.gc("t", cutoff_lsn=main.durable_lsn)
    assert result.layers_removed >= 1
    with pytest.raises(BelowGcCutoffError, match="below the GC cutoff"):
        main.read_file(REL_PATH, lsn=2)
    with pytest.raises(BelowGcCutoffError):
        engine.tenant("t").create_branch("old", at=BranchPoint(lsn=2))
    assert main.read_file(REL_PATH) == _page(3)


def test_bad_file_operations_are_refused_atomically(engine: Engine) -> None:
    _setup(engine)
    main = engine.timeline("t", "main")
    lsn = main.durable_lsn
    with pytest.raises(NotFoundError, match="no such file or directory: 'missing'"):
        main.ingest(Batch((Write(REL_PATH, 0, _page(1)), Rename("missing", "other"))))
    assert main.durable_lsn == lsn
    assert main.read_file(REL_PATH) == b""
    with pytest.raises(AlreadyExistsError):
        main.ingest(Batch((Create(REL_PATH),)))
    with pytest.raises(InvalidArgumentError, match="not an empty directory"):
        main.ingest(Batch((Rename("base", "base2"), Mkdir("x"), Rename("x", "base2"))))
    with pytest.raises(InvalidArgumentError, match="invalid path"):
        main.ingest(Batch((Create("../etc/passwd"),)))
    with pytest.raises(InvalidArgumentError, match="beyond its size limit"):
        main.ingest(Batch((Truncate(REL_PATH, -1),)))
    with pytest.raises(InvalidArgumentError, match="size limit of 1073741824 bytes"):
        main.ingest(Batch((Truncate(REL_PATH, (1 << 30) + 1),)))
    assert main.durable_lsn == lsn


def test_branch_sees_only_its_history(engine: Engine) -> None:
    _setup(engine)
    tenant = engine.tenant("t")
    main = tenant.branch("main")
    point = main.ingest(Batch((Write(REL_PATH, 0, _page(1)),)))
    main.ingest(Batch((Write(REL_PATH, 0, _page(2)),)))
    child = tenant.create_branch("child", at=BranchPoint(lsn=point))
    assert child.read_file(REL_PATH) == _page(1)
    child.ingest(Batch((Write(REL_PATH, PAGE_SIZE, _page(3)),)))
    assert child.read_file(REL_PATH) == _page(1) + _page(3)
    assert main.read_file(REL_PATH) == _page(2)
    assert child.durable_lsn == point + 1
    rel, _ = parse_relation_path(REL_PATH) or (None, 0)
    assert rel is not None
    pages = child.get_pages(rel, np.array([1, 0, 1]))
    assert pages == [_page(3), _page(1), _page(3)]


def test_a_branch_at_the_newest_lsn_takes_its_parents_tree_and_diverges(
        engine: Engine, make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A branch cut at the parent's newest LSN starts from the parent's file tree (copied,
    not read back through history); after that the two trees are independent, and a
    reopened engine builds the same trees from the store."""
    _setup(engine)
    tenant = engine.tenant("t")
    main = tenant.branch("main")
    main.ingest(Batch((Write(REL_PATH, 0, _page(1)), Create("gone"))))
    main.ingest(Batch((Unlink("gone"),)))
    expected = dict(main.files)

    def history_read(*args: object) -> object:
        raise AssertionError("the new branch read its tree back through history")

    monkeypatch.setattr(timeline_module, "read_metas", history_read)
    child = tenant.create_branch("child")
    assert child.files == expected and child.files is not main.files
    monkeypatch.undo()
    assert "gone" not in child.files
    child.ingest(Batch((Create("only-child"), Truncate(REL_PATH, 0))))
    main.ingest(Batch((Create("only-main"),)))
    assert "only-child" in child.files and "only-child" not in main.files
    assert "only-main" in main.files and "only-main" not in child.files
    assert main.stat(REL_PATH).size == PAGE_SIZE and child.stat(REL_PATH).size == 0
    trees = {name: dict(tenant.branch(name).files) for name in ("main", "child")}
    engine.close()
    reopened = make_engine().tenant("t")
    assert {name: reopened.branch(name).files for name in trees} == trees


def test_branch_at_wal_lsn_and_time(engine: Engine) -> None:
    _setup(engine)
    tenant = engine.tenant("t")
    main = tenant.branch("main")
    stamps = []
    for tag in range(1, 5):
        main.ingest(Batch((Write(REL_PATH, 0, _page(tag)),), wal_lsn=tag * 1000))
        stamps.append(time.time_ns() // 1000)
        time.sleep(0.002)
    engine.flush("t")
    by_wal = tenant.create_branch("w", at=BranchPoint(wal_lsn=2500))
    assert by_wal.read_file(REL_PATH) == _page(3)  # first batch with wal_lsn >= 2500
    by_time = tenant.create_branch("tm", at=BranchPoint(time_us=stamps[1]))
    assert by_time.read_file(REL_PATH) == _page(2)  # last batch at or before the time
    with pytest.raises(OutOfRangeError, match="WAL position"):
        tenant.create_branch("future", at=BranchPoint(wal_lsn=10**9))
    with pytest.raises(OutOfRangeError, match="no state of branch 'main' is as old as"):
        tenant.create_branch("past", at=BranchPoint(time_us=1))


def test_delete_refuses_with_children_and_reclaims(engine: Engine) -> None:
    _setup(engine)
    tenant = engine.tenant("t")
    tenant.create_branch("a")
    b = tenant.create_branch("b", parent="a")
    b.ingest(Batch((Write(REL_PATH, 0, _page(9)),)))
    engine.flush("t")
    info = tenant.branch_info("a")
    assert (info.parent, info.children, info.branch_lsn) == ("main", ("b",), 1)
    assert tenant.branch_info("b").parent == "a"
    with pytest.raises(FailedPreconditionError, match="has child branches b"):
        tenant.delete_branch("a")
    storage = engine.storage
    assert any(b.timeline_id in key for key in storage.list("tenants/t/timelines/"))
    assert tenant.delete_branch("a", cascade=True).branches == ["b", "a"]
    assert not any(b.timeline_id in key for key in storage.list("tenants/t/timelines/"))
    assert sorted(tenant.branch_names()) == ["main"]


def test_checkpoint_pins_history_against_gc(engine: Engine) -> None:
    _setup(engine)
    tenant = engine.tenant("t")
    main = tenant.branch("main")
    pinned = main.ingest(Batch((Write(REL_PATH, 0, _page(1)),)))
    tenant.create_checkpoint("main", "before")
    for tag in range(2, 6):
        main.ingest(Batch((Write(REL_PATH, 0, _page(tag)),)))
    engine.flush("t")
    engine.compact("t", force=True)
    engine.gc("t", cutoff_lsn=main.durable_lsn)
    assert main.read_file(REL_PATH, lsn=pinned) == _page(1)
    restored = tenant.create_branch("restored", at=BranchPoint(checkpoint="before"))
    assert restored.read_file(REL_PATH) == _page(1)
    with pytest.raises(AlreadyExistsError):
        tenant.create_checkpoint("main", "before")


def test_restart_replays_unflushed_batches(make_engine: EngineFactory) -> None:
    engine = make_engine()
    _setup(engine)
    main = engine.timeline("t", "main")
    for tag in range(10):
        main.ingest(Batch((Write(REL_PATH, tag * PAGE_SIZE, _page(tag)),)))
    engine.close(flush=False)
    again = make_engine()
    main = again.timeline("t", "main")
    assert main.durable_lsn == 11
    assert main.read_file(REL_PATH) == b"".join(_page(t) for t in range(10))
    assert again.tenant("t").generation == 2


def test_corrupt_manifest_is_detected(make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = make_engine()
    _setup(engine)
    engine.close(flush=True)
    manifests = sorted((tmp_path / "remote").rglob("manifest/*.json"))
    text = manifests[-1].read_text()
    damaged = re.sub(r'"disk_consistent_lsn": ?(\d+)', '"disk_consistent_lsn":77', text)
    assert damaged != text
    manifests[-1].write_text(damaged)
    with pytest.raises(CorruptionError, match=r"manifest .* checksum mismatch"):
        make_engine()


def test_corrupt_layer_is_detected_not_served(make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = make_engine()
    _setup(engine)
    engine.timeline("t", "main").ingest(Batch((Write(REL_PATH, 0, bytes(range(256)) * 32),)))
    engine.close(flush=True)
    for layer in (tmp_path / "state" / "layers").rglob("delta*"):
        layer.unlink()  # force a download from the store
    remote_layer = next((tmp_path / "remote").rglob("layers/delta*"))
    raw = bytearray(remote_layer.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    remote_layer.write_bytes(bytes(raw))
    with pytest.raises(CorruptionError, match="delta"):
        again = make_engine()
        again.timeline("t", "main").read_file(REL_PATH)


def test_attach_on_empty_local_state(make_engine: EngineFactory, tmp_path: Path) -> None:
    storage = LocalDirectoryStorage(tmp_path / "shared-store")
    first = make_engine(storage, state="node-a")
    _setup(first)
    first.timeline("t", "main").ingest(Batch((Write(REL_PATH, 0, _page(42)),)))
    first.tenant("t").create_branch("dev")
    first.close(flush=True)
    second = make_engine(storage, state="node-b")
    assert second.tenants() == []
    tenant = second.attach_tenant("t")
    assert sorted(tenant.branch_names()) == ["dev", "main"]
    assert tenant.branch("dev").read_file(REL_PATH) == _page(42)
    assert tenant.generation == 2
    tenant.branch("main").ingest(Batch((Write(REL_PATH, 0, _page(43)),)))
    second.flush("t")
    names = storage.list("tenants/t/")
    assert any(name.endswith("-00000002") for name in names)
    assert any("/manifest/" in name for name in names)


def test_writer_epoch_fences_the_old_writer(make_engine: EngineFactory) -> None:
    engine = make_engine()
    _setup(engine)
    main = engine.timeline("t", "main")
    first = main.attach_writer()
    main.ingest(Batch((Write(REL_PATH, 0, _page(1)),)), writer_epoch=first)
    second = main.attach_writer()
    with pytest.raises(FailedPreconditionError, match=f"writer epoch {first} is stale"):
        main.ingest(Batch((Write(REL_PATH, 0, _page(2)),)), writer_epoch=first)
    main.ingest(Batch((Write(REL_PATH, 0, _page(3)),)), writer_epoch=second)
    engine.close(flush=False)
    again = make_engine().timeline("t", "main")
    assert again.writer_epoch == second
    assert again.read_file(REL_PATH) == _page(3)


class LeaseClock:
    """The writer lease's clock, moved by the test alone: a lease lapses when the test
    says, not when a loaded machine is slow between two calls."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_writer_lease_refuses_a_second_compute(make_engine: EngineFactory,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    clock = LeaseClock()
    monkeypatch.setattr(writer_lease_module, "time", clock)
    engine = make_engine(writer_lease_s=0.3)
    _setup(engine)
    main = engine.timeline("t", "main")
    first = main.attach_writer("host:/computes/a")
    with pytest.raises(FailedPreconditionError, match=r"already has a writer \(host:/computes/a"):
        main.attach_writer("host:/computes/b")
    again = main.attach_writer("host:/computes/a")  # the same slot restarting after a crash
    assert again == first + 1
    forced = main.attach_writer("host:/computes/b", force=True)
    with pytest.raises(FailedPreconditionError, match="stale"):
        main.renew_writer("host:/computes/a", again)
    clock.now += 0.35  # b never renewed: its lease lapses and c may attach
    assert main.writer_lease.current() is None
    third = main.attach_writer("host:/computes/c")
    main.renew_writer("host:/computes/c", third)
    lease = main.writer_lease.current()
    assert lease is not None and lease.holder == "host:/computes/c" and third == forced + 1
    main.writer_lease.release(third)
    main.attach_writer("host:/computes/d")


def test_writer_chosen_relation(engine: Engine) -> None:
    _setup(engine)
    main = engine.timeline("t", "main")
    chosen = Relation.synthetic(0xABCDEF).to_bytes()
    main.ingest(Batch((Create("x", 0o600, chosen), Write("x", 0, _page(5)))))
    assert main.stat("x").relation == chosen
    assert main.get_page(Relation.from_bytes(chosen), 0) == _page(5)
    with pytest.raises(InvalidArgumentError, match="is in use"):
        main.ingest(Batch((Create("y", 0o600, chosen),)))
    with pytest.raises(InvalidArgumentError, match="13 bytes"):
        main.ingest(Batch((Create("z", 0o600, b"short"),)))
    main.ingest(Batch((Unlink("x"), Create("y", 0o600, chosen))))
    assert main.read_file("y") == b""
    main.ingest(Batch((Truncate("y", PAGE_SIZE),)))
    assert main.read_file("y") == bytes(PAGE_SIZE)  # the old file's page is tombstoned


def test_restore_and_reset_rebind_the_name_and_reclaim_what_nothing_needs(
        make_engine: EngineFactory) -> None:
    engine = make_engine()
    _setup(engine)
    tenant = engine.tenant("t")
    main = tenant.branch("main")
    main.ingest(Batch((Write(REL_PATH, 0, _page(1)),)))
    dev = tenant.create_branch("dev")
    dev.ingest(Batch((Write(REL_PATH, 0, _page(2)),)))
    tenant.create_checkpoint("dev", "good")
    dev.ingest(Batch((Write(REL_PATH, 0, _page(3)),)))  # the destructive change

    restored, preserved = tenant.restore_branch("dev", BranchPoint(checkpoint="good"))
    assert preserved is None and tenant.branch("dev") is restored
    assert restored.read_file(REL_PATH) == _page(2)
    assert restored.ancestor is dev  # kept, unnamed: the restored branch reads through it
    assert tenant.branch_info("dev").parent == "main"  # the parent survives a restore

    kept, preserved = tenant.restore_branch("dev", BranchPoint(lsn=restored.branch_lsn),
                                            preserve_as="dev-old")
    assert preserved == "dev-old" and tenant.branch("dev-old") is restored
    assert kept.read_file(REL_PATH) == _page(2)

    reset, _ = tenant.restore_branch("dev", None)  # the parent's newest state
    main.ingest(Batch((Write(REL_PATH, 0, _page(4)),)))
    assert reset.read_file(REL_PATH) == _page(1)
    assert reset.ancestor is main
    assert kept.deleted  # nothing referred to it any more

    restored.writer_lease.grant("h:/c", restored.attach_writer("h:/c"))
    with pytest.raises(FailedPreconditionError, match="running compute"):
        tenant.restore_branch("dev-old", None)
    with pytest.raises(AlreadyExistsError):
        tenant.restore_branch("dev", None, preserve_as="main")
    with pytest.raises(FailedPreconditionError, match="no parent"):
        tenant.restore_branch("main", None)

    engine.close(flush=False)
    again = make_engine().tenant("t")  # the unnamed ancestor and the checkpoint survive
    assert again.branch("dev-old").read_file(REL_PATH) == _page(2)
    assert again.checkpoint("good").timeline_id == dev.timeline_id
    assert again.branch("dev").read_file(REL_PATH) == _page(1)
    with pytest.raises(FailedPreconditionError, match="'main' cannot be deleted"):
        again.delete_branch("main", cascade=True, force=True)
    again.update_branch("dev", {"protected": True})
    with pytest.raises(FailedPreconditionError, match="never expires"):
        again.update_branch("dev", {"expires_at_us": 1})
    assert again.branch_info("dev").protected and again.branch_info("main").protected
    gone = again.delete_branch("dev-old")  # "good" was taken on dev: it stays with dev
    assert (gone.branches, gone.checkpoints) == (["dev-old"], [])
    gone = again.delete_branch("dev", force=True)  # and its checkpoints, and its past
    assert (gone.branches, gone.checkpoints) == (["dev"], ["good"])
    assert sorted(again.branch_names()) == ["main"] and len(again.timelines) == 1


def test_tenant_quotas_bound_branches_and_ttls(make_engine: EngineFactory) -> None:
    engine = make_engine()
    _setup(engine)
    tenant = engine.tenant("t")
    tenant.set_quotas(Quotas(max_branches=3, max_ttl_s=3600))
    forever = tenant.create_branch("a")  # no TTL asked: the longest allowed
    assert tenant.branch_info("a").expires_at_us is not None
    assert forever.timeline_id == tenant.branch("a").timeline_id
    with pytest.raises(QuotaExceededError, match="at most 3600 s"):
        tenant.create_branch("b", expires_at_us=int(time.time() * 1e6) + 7200 * 10**6)
    with pytest.raises(QuotaExceededError, match="protected branches never expire"):
        tenant.create_branch("b", settings=BranchSettings(protected=True))
    tenant.create_branch("b", expires_at_us=int(time.time() * 1e6) + 600 * 10**6)
    with pytest.raises(QuotaExceededError, match="has 3 branches, its quota is 3"):
        tenant.create_branch("c")
    engine.close(flush=False)
    assert make_engine().tenant("t").manifest.quotas == Quotas(3, None, 3600)


def test_branch_images_include_pages_the_ancestor_has_not_flushed(
        make_engine: EngineFactory) -> None:
    """Image layers on a branch hold every key of their range: inherited pages still in the
    ancestor's memtable must be in them, or reads through the image find nothing."""
    engine = make_engine(image_threshold=2)
    _setup(engine)
    tenant = engine.tenant("t")
    main = tenant.branch("main")
    main.ingest(Batch((Write(REL_PATH, 0, _page(7)), Write(REL_PATH, 8192, _page(8)))))
    assert main.layers == []  # main's pages live only in its memtable
    dev = tenant.create_branch("dev")
    for tag in range(3):  # deltas stack up on the branch: compaction writes an image
        dev.ingest(Batch((Create(f"other-{tag}"), Write(f"other-{tag}", 0, _page(tag)))))
        dev.freeze()
        dev.flush()
    result = engine.compact("t", force=True)
    assert result.images_written >= 1 and any(layer.is_image for layer in dev.layers)
    assert dev.read_file(REL_PATH) == _page(7) + _page(8)


def test_deleting_a_restored_branch_takes_its_past_and_its_checkpoints(
        make_engine: EngineFactory) -> None:
    engine = make_engine()
    _setup(engine)
    tenant = engine.tenant("t")
    fork = tenant.create_branch("fork")
    fork.ingest(Batch((Write(REL_PATH, 0, _page(1)),)))
    tenant.create_checkpoint("fork", "ok")
    fork.ingest(Batch((Write(REL_PATH, 0, _page(2)),)))
    engine.flush("t")
    restored, _ = tenant.restore_branch("fork", BranchPoint(checkpoint="ok"))
    assert restored.ancestor is fork and not fork.deleted
    tenant.delete_branch("fork")
    assert fork.deleted and tenant.manifest.checkpoints == {}
    assert not engine.storage.list(f"tenants/t/timelines/{fork.timeline_id}/")
    assert sorted(tenant.timelines) == [tenant.branch("main").timeline_id]


@pytest.mark.parametrize("name", ["postgres", "pg_monitor", "pg_x"])
def test_tenant_names_that_postgresql_keeps_are_refused(engine: Engine, name: str) -> None:
    """A tenant's role in its clusters is named like the tenant."""
    with pytest.raises(InvalidArgumentError, match="reserved"):
        engine.create_tenant(name)
    engine.create_tenant("postgres2")  # only the exact names PostgreSQL keeps


def test_a_tenant_keeps_its_incarnation_and_a_recreated_one_gets_another(
        make_engine: EngineFactory) -> None:
    engine = make_engine()
    first = engine.create_tenant("t").manifest.incarnation
    assert len(first) == 32 and engine.incarnation("absent") is None
    engine.close(flush=False)
    again = make_engine()
    assert again.incarnation("t") == first
    again.delete_tenant("t")
    again.create_tenant("t")
    assert again.incarnation("t") not in (first, "", None)


def test_a_deleted_tenant_leaves_nothing_in_the_local_store(
        make_engine: EngineFactory, tmp_path: Path) -> None:
    engine = make_engine()
    for name in ("gone", "kept"):
        _setup(engine, name)
        engine.timeline(name, "main").ingest(Batch((Write(REL_PATH, 0, _page(1)),)))
        engine.flush(name)
    tenants = tmp_path / "remote" / "tenants"
    assert (tenants / "gone" / ".strata-tmp-journal-0").exists()  # creates were journaled
    engine.delete_tenant("gone")
    assert not (tenants / "gone").exists()  # no journal, no empty directories
    assert (tenants / "kept" / ".strata-tmp-journal-0").exists()
    kept = engine.timeline("kept", "main")
    kept.ingest(Batch((Write(REL_PATH, PAGE_SIZE, _page(2)),)))
    engine.flush("kept")
    assert kept.read_file(REL_PATH) == _page(1) + _page(2)


@pytest.mark.parametrize("flushed", [False, True], ids=["in memtable", "in a layer"])
def test_a_partial_write_lands_on_the_newest_version_of_its_page(
        engine: Engine, flushed: bool) -> None:
    _setup(engine)
    main = engine.timeline("t", "main")
    main.ingest(Batch((Create("wal"), Write("wal", 0, _page(1) * 2))))
    main.ingest(Batch((Write("wal", PAGE_SIZE, _page(2)), Truncate("wal", PAGE_SIZE),
                       Truncate("wal", 2 * PAGE_SIZE))))  # block 1 tombstoned, then zeros
    if flushed:
        main.freeze()  # the versions leave the open memtable: read through the layers
        main.flush()
    main.ingest(Batch((Write("wal", 100, b"commit one"),)))
    main.ingest(Batch((Write("wal", 110, b", two"), Write("wal", PAGE_SIZE + 5, b"three"))))
    page0 = bytearray(_page(1))
    page0[100:115] = b"commit one, two"
    page1 = bytearray(PAGE_SIZE)
    page1[5:10] = b"three"
    assert main.read_file("wal") == bytes(page0) + bytes(page1)
