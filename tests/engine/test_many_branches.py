"""Branch changes publish deltas and reclaim only what they dropped: after any sequence of
creates, deletes, restores and checkpoints, a page server attaching the tenant loads the
manifest memory holds, and the timelines kept are exactly those something reads through."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from common.errors import FailedPreconditionError
from common.ops import Batch, Create, Mkdir
from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.fencing import Fence
from pageserver.manifest import TenantManifest, tenant_manifest_prefix, version_of
from pageserver.manifest_store import SNAPSHOT_EVERY, ManifestStore
from pageserver.remote import LocalDirectoryStorage
from pageserver.tenant import MAIN_BRANCH, BranchPoint, Tenant
from pageserver.timeline import Timeline

NAMES = st.sampled_from([f"b{n}" for n in range(6)])


def read_through(tenant: Tenant) -> set[str]:
    """Timeline ids some branch or checkpoint reads through, by a full walk."""
    seen: set[str] = set()
    manifest = tenant.manifest
    for timeline_id in [*(r.timeline_id for r in manifest.branches.values()),
                        *(cp.timeline_id for cp in manifest.checkpoints.values())]:
        timeline: Timeline | None = tenant.timelines[timeline_id]
        while timeline is not None:
            seen.add(timeline.timeline_id)
            timeline = timeline.ancestor
    return seen


class BranchMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)
        self.engines: list[Engine] = []
        self.engine = self.open("a")
        self.tenant = self.engine.create_tenant("t")
        self.tenant.branch(MAIN_BRANCH).ingest(Batch((Mkdir("base"), Create("base/f"))))
        self.checkpoints = 0

    def open(self, state: str) -> Engine:
        engine = Engine(EngineConfig(state_dir=self.root / state, background_period_s=0,
                                     pitr_window_s=0),
                        LocalDirectoryStorage(self.root / "remote"))
        self.engines.append(engine)
        return engine

    def branches(self) -> list[str]:
        return sorted(self.tenant.manifest.branches)

    @rule(name=NAMES, parent=st.integers(0, 5))
    def create(self, name: str, parent: int) -> None:
        if name in self.tenant.manifest.branches:
            return
        self.tenant.create_branch(name, self.branches()[parent % len(self.branches())])

    @rule(name=NAMES, cascade=st.booleans())
    def delete(self, name: str, cascade: bool) -> None:
        if name not in self.tenant.manifest.branches:
            return
        try:
            self.tenant.delete_branch(name, cascade=cascade)
        except FailedPreconditionError:
            assert not cascade  # it had children

    @rule(name=NAMES, preserve=st.booleans())
    def restore(self, name: str, preserve: bool) -> None:
        if name not in self.tenant.manifest.branches:
            return
        timeline = self.tenant.branch(name)
        preserve_as = f"{name}-kept" if preserve else None
        if preserve_as in self.tenant.manifest.branches:
            return
        self.tenant.restore_branch(name, BranchPoint(lsn=timeline.branch_lsn), preserve_as)

    @rule(branch=st.integers(0, 5))
    def checkpoint(self, branch: int) -> None:
        self.checkpoints += 1
        self.tenant.create_checkpoint(self.branches()[branch % len(self.branches())],
                                      f"cp{self.checkpoints}")

    @precondition(lambda self: bool(self.tenant.manifest.checkpoints))
    @rule(which=st.integers(0, 100))
    def delete_checkpoint(self, which: int) -> None:
        names = sorted(self.tenant.manifest.checkpoints)
        self.tenant.delete_checkpoint(names[which % len(names)])

    @rule()
    def move(self) -> None:
        """Another page server takes the tenant over, loading the chain of deltas."""
        engine = self.open(f"s{len(self.engines)}")
        before = self.tenant.manifest
        self.tenant = engine.attach_tenant("t")
        assert self.tenant.manifest == before

    @invariant()
    def an_attach_would_load_what_memory_holds(self) -> None:
        chain = ManifestStore(LocalDirectoryStorage(self.root / "remote"),
                              tenant_manifest_prefix("t"), Fence("t", 0))
        loaded = TenantManifest.from_json(chain.read())
        assert loaded == self.tenant.manifest

    @invariant()
    def exactly_what_is_read_through_is_kept(self) -> None:
        assert set(self.tenant.timelines) == read_through(self.tenant)

    def teardown(self) -> None:
        for engine in self.engines:
            engine.close(flush=False)
        self.tmp.cleanup()


BranchMachine.TestCase.settings = settings(max_examples=12, stateful_step_count=30,
                                           deadline=None)
test_branch_changes_round_trip = BranchMachine.TestCase


def test_many_changes_keep_the_chain_short(tmp_path: Path) -> None:
    """A snapshot every SNAPSHOT_EVERY versions; the chain never holds more than two
    snapshots' worth."""
    storage = LocalDirectoryStorage(tmp_path / "remote")
    engine = Engine(EngineConfig(state_dir=tmp_path / "a", background_period_s=0,
                                 pitr_window_s=0), storage)
    try:
        tenant = engine.create_tenant("t")
        for n in range(3 * SNAPSHOT_EVERY):
            tenant.create_checkpoint(MAIN_BRANCH, f"cp{n}")
            kept = [version_of(key) for key in storage.list(tenant_manifest_prefix("t"))]
            assert len(kept) <= 2 * SNAPSHOT_EVERY
            assert kept == list(range(kept[0], kept[-1] + 1))
    finally:
        engine.close(flush=False)


def test_a_reply_about_one_branch_names_its_children(tmp_path: Path) -> None:
    count = 40
    engine = Engine(EngineConfig(state_dir=tmp_path / "a", background_period_s=0,
                                 pitr_window_s=0), LocalDirectoryStorage(tmp_path / "remote"))
    try:
        tenant = engine.create_tenant("t")
        for n in range(count):
            tenant.create_branch(f"c{n:02d}", MAIN_BRANCH if n % 2 else "c00" if n else "main")
        odd = tuple(f"c{n:02d}" for n in range(1, count, 2))
        assert tenant.branch_info(MAIN_BRANCH).children == ("c00", *odd)
        even = tuple(f"c{n:02d}" for n in range(2, count, 2))
        assert tenant.branch_info("c00").children == even  # scanned for one name
        indexed = {info.name: info.children  # indexed for many
                   for info in tenant.branch_infos(sorted(tenant.manifest.branches))}
        assert indexed["c00"] == even
        assert indexed[MAIN_BRANCH] == ("c00", *odd)
    finally:
        engine.close(flush=False)
