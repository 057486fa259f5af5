"""Model-based test: random ingest / branch / read / flush / compact / GC / restart sequences
against the engine and the in-memory oracle, comparing every read.

The variant under storage faults (issue 12) lets store calls fail: a failed batch counts
as applied when the branch's durable LSN says so, a failed branch or checkpoint change
is settled by the engine's answer now and again after the next restart, and a failed
read is tried again. What must hold throughout: no acknowledged batch, branch or
checkpoint is lost, and every read matches the oracle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from common.errors import BelowGcCutoffError, StrataError
from common.keys import PAGE_SIZE, Relation, parse_relation_path
from common.ops import (
    Batch,
    Chmod,
    Create,
    FileKind,
    FileMeta,
    FileOp,
    Mkdir,
    Rename,
    Rmdir,
    Truncate,
    Unlink,
    Write,
)
from pageserver import gc
from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.remote import LocalDirectoryStorage, RemoteStorage, RemoteStorageError, S3Storage
from pageserver.remote.faults import FaultPlan, FaultyStorage
from pageserver.remote.retry import shortened_backoff
from pageserver.tenant import BranchPoint, Tenant
from pageserver.timeline import Timeline
from tests.engine.oracle import OracleError, Tree, apply_batch

TENANT = "model"
DIRS = ["a", "a/b", "base", "base/1", "c"]
FILES = ["f", "a/g", "a/b/h", "base/1/100", "base/1/100.1", "base/1/101", "base/1/101_vm", "c/x"]
PATHS = DIRS + FILES
READ_ATTEMPTS = 20  # a read failing this often in a row under faults fails the test
OPEN_ATTEMPTS = 20  # ... and so does an engine failing to start this often


def _data(seed: int, length: int) -> bytes:
    pattern = bytes((seed * 7 + i) % 251 for i in range(257))
    return (pattern * (length // len(pattern) + 1))[:length]


paths = st.sampled_from(PATHS)
modes = st.sampled_from([0o600, 0o640, 0o700, 0o755])
ops: st.SearchStrategy[FileOp] = st.one_of(
    st.builds(Create, st.sampled_from(FILES), modes),
    st.builds(
        lambda p, off, seed, n: Write(p, off, _data(seed, n)),
        st.sampled_from(FILES), st.integers(0, 3 * PAGE_SIZE), st.integers(0, 1000),
        st.sampled_from([1, 17, PAGE_SIZE - 1, PAGE_SIZE, PAGE_SIZE + 5, 2 * PAGE_SIZE]),
    ),
    st.builds(Truncate, st.sampled_from(FILES), st.integers(0, 4 * PAGE_SIZE)),
    st.builds(Unlink, paths),
    st.builds(Rename, paths, paths),
    st.builds(Mkdir, st.sampled_from(DIRS), modes),
    st.builds(Rmdir, paths),
    st.builds(Chmod, paths, modes),
)
batches = st.lists(ops, min_size=1, max_size=4).map(lambda ops: Batch(tuple(ops)))
offsets = st.sampled_from([0, 1, 100, PAGE_SIZE - 3, PAGE_SIZE, 2 * PAGE_SIZE + 7, 3 * PAGE_SIZE])
lengths = st.sampled_from([1, 17, PAGE_SIZE - 1, PAGE_SIZE, PAGE_SIZE + 5, 2 * PAGE_SIZE])
sizes = st.sampled_from([0, 5, PAGE_SIZE, PAGE_SIZE + 1, 2 * PAGE_SIZE, 4 * PAGE_SIZE - 9])


def _likely_valid_op(draw: st.DrawFn, tree: Tree, fresh_id: Callable[[], int]) -> FileOp:
    """An operation that is usually valid on ``tree``, so most batches get applied.

    Atomic batches of independently random operations are nearly always refused;
    drawing against the current tree keeps the engine busy with real changes.
    """
    files = sorted(p for p, e in tree.items() if e.kind == FileKind.FILE)
    dirs = ["", *sorted(p for p, e in tree.items() if e.kind == FileKind.DIR)]
    new_files = [p for p in FILES if p not in tree and p.rpartition("/")[0] in dirs]
    kinds = ["random"]
    if files:
        kinds += ["write"] * 5 + ["truncate"] * 2 + ["unlink", "rename", "chmod"]
    if new_files:
        kinds += ["create"] * 2
    kind = draw(st.sampled_from(kinds))
    if kind == "write":
        return Write(draw(st.sampled_from(files)), draw(offsets),
                     _data(draw(st.integers(0, 1000)), draw(lengths)))
    if kind == "truncate":
        return Truncate(draw(st.sampled_from(files)), draw(sizes))
    if kind == "create":
        # Half the time the writer picks the relation, as the compute shim does; ids are
        # fresh, so a chosen relation is never one a live file uses.
        chosen = Relation.synthetic(fresh_id()).to_bytes() if draw(st.booleans()) else b""
        return Create(draw(st.sampled_from(new_files)), draw(modes), chosen)
    if kind == "unlink":
        return Unlink(draw(st.sampled_from(files)))
    if kind == "rename":
        return Rename(draw(st.sampled_from(files)), draw(st.sampled_from(FILES)))
    if kind == "chmod":
        return Chmod(draw(st.sampled_from(files)), draw(modes))
    return draw(ops)


@st.composite
def likely_valid_batches(draw: st.DrawFn, tree: Tree, fresh_id: Callable[[], int]) -> Batch:
    chosen: list[FileOp] = []
    for _ in range(draw(st.integers(1, 4))):
        op = _likely_valid_op(draw, tree, fresh_id)
        chosen.append(op)
        with contextlib.suppress(OracleError):
            tree = apply_batch(tree, Batch((op,)))
    return Batch(tuple(chosen))


@dataclass
class BranchModel:
    """Oracle history of one branch: the tree at every LSN it can be read at."""

    parent: str | None
    branch_lsn: int
    states: dict[int, Tree] = field(default_factory=dict)

    @property
    def last_lsn(self) -> int:
        return max(self.states)


class EngineModel(RuleBasedStateMachine):
    """Drives the engine and the oracle with the same operations."""

    def __init__(self, storage: RemoteStorage | None = None,
                 faults: FaultPlan | None = None, faults_at_start: bool = False) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="strata-model-"))
        self.config = EngineConfig(
            state_dir=self.tmp / "state", background_period_s=0, pitr_window_s=0,
            l0_compaction_threshold=3, l1_target_entries=8, image_threshold=2,
            image_partition_pages=6,
        )
        inner = storage or LocalDirectoryStorage(self.tmp / "remote")
        self.faults = FaultyStorage(inner, faults, enabled=False) if faults else None
        self.storage: RemoteStorage = self.faults or inner
        self.faults_at_start = faults_at_start  # else engines start on a store without faults
        self.engine = Engine(self.config, self.storage)
        self.engine.create_tenant(TENANT)
        if self.faults is not None:  # the tenant exists; its life from here is under faults
            self.faults.enabled = True
        self.branches = {"main": BranchModel(None, 0, {0: {}})}
        self.counter = 0
        self.checkpoints: dict[str, tuple[str, int]] = {}
        # Under faults: changes that failed, so either outcome may show after a restart.
        self.unsettled_branches: dict[str, BranchModel | None] = {}  # None: a failed delete
        self.unsettled_checkpoints: dict[str, tuple[str, int] | None] = {}

    def teardown(self) -> None:
        self.engine.close(flush=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def tenant(self) -> Tenant:
        return self.engine.tenant(TENANT)

    @initialize(fault_seed=st.integers(0, 2**32 - 1))
    def seed_tree(self, fault_seed: int) -> None:
        if self.faults is not None:  # the faults follow the example, as its draws do
            self.faults.reseed(fault_seed)
        self._ingest("main", Batch(tuple(Mkdir(d) for d in DIRS)))

    # --- operations ------------------------------------------------------------

    def _ingest(self, name: str, batch: Batch) -> None:
        model = self.branches[name]
        timeline = self.tenant.branch(name)
        try:
            expected = apply_batch(model.states[model.last_lsn], batch)
        except OracleError:
            expected = None
        if expected is None:
            try:
                timeline.ingest(batch)
            except StrataError:
                return
            raise AssertionError(f"engine accepted an invalid batch {batch}")
        try:
            lsn = timeline.ingest(batch)
        except RemoteStorageError:
            if self.faults is None:
                raise
            lsn = timeline.durable_lsn  # as a client learns whether its batch was applied
            if lsn == model.last_lsn:
                return
        assert lsn == model.last_lsn + 1
        model.states[lsn] = expected

    def _failed(self, error: RemoteStorageError) -> None:
        """A store call failed: expected under faults only."""
        if self.faults is None:
            raise error

    @rule(data=st.data(), batch=batches)
    def ingest_random(self, data: st.DataObject, batch: Batch) -> None:
        self._ingest(data.draw(st.sampled_from(sorted(self.branches))), batch)

    @rule(data=st.data())
    def ingest(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.branches)))
        model = self.branches[name]
        self._ingest(name, data.draw(likely_valid_batches(model.states[model.last_lsn],
                                                          self._fresh_file_id)))

    def _fresh_file_id(self) -> int:
        self.counter += 1
        return (1 << 40) + self.counter

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.branches)))
        model = self.branches[name]
        lsn = data.draw(st.sampled_from(sorted(model.states)))
        self._check(name, lsn)

    @precondition(lambda self: len(self.branches) < 6)
    @rule(data=st.data())
    def branch(self, data: st.DataObject) -> None:
        parent = data.draw(st.sampled_from(sorted(self.branches)))
        model = self.branches[parent]
        lsn = data.draw(st.sampled_from(sorted(model.states)))
        self.counter += 1
        name = f"b{self.counter}"
        created = BranchModel(parent, lsn, {lsn: model.states[lsn]})
        try:
            self.tenant.create_branch(name, parent, BranchPoint(lsn=lsn))
        except BelowGcCutoffError:
            assert lsn < self.tenant.branch(parent).gc_cutoff
            return
        except RemoteStorageError as e:
            self._failed(e)
            self._unsettled_branch(name, created)
            return
        self.branches[name] = created

    def _unsettled_branch(self, name: str, created: BranchModel | None) -> None:
        """A branch change failed: follow what the engine says now; a restart may differ."""
        self.unsettled_branches[name] = created
        exists = name in self.tenant.branch_names()
        if created is not None and exists:
            self.branches[name] = created
        if created is None and not exists:
            self._forget_branch(name)

    def _forget_branch(self, name: str) -> None:
        self.checkpoints = {k: v for k, v in self.checkpoints.items() if v[0] != name}
        parent = self.branches.pop(name).parent
        assert parent is not None
        self._prune(parent)

    @rule(data=st.data())
    def checkpoint(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.branches)))
        lsn = data.draw(st.sampled_from(sorted(self.branches[name].states)))
        self.counter += 1
        try:
            self.tenant.create_checkpoint(name, f"cp{self.counter}", lsn)
        except RemoteStorageError as e:
            self._failed(e)
            self._unsettled_checkpoint(f"cp{self.counter}", (name, lsn))
            return
        self.checkpoints[f"cp{self.counter}"] = (name, lsn)

    def _unsettled_checkpoint(self, name: str, created: tuple[str, int] | None) -> None:
        self.unsettled_checkpoints[name] = created
        exists = name in self.tenant.manifest.checkpoints
        if created is not None and exists:
            self.checkpoints[name] = created
        if created is None and not exists:
            source, _ = self.checkpoints.pop(name)
            self._prune(source)

    @precondition(lambda self: len(self.branches) < 6 and self.checkpoints)
    @rule(data=st.data())
    def branch_from_checkpoint(self, data: st.DataObject) -> None:
        checkpoint = data.draw(st.sampled_from(sorted(self.checkpoints)))
        source, lsn = self.checkpoints[checkpoint]
        self.counter += 1
        name = f"b{self.counter}"
        created = BranchModel(source, lsn, {lsn: self.branches[source].states[lsn]})
        try:
            self.tenant.create_branch(name, at=BranchPoint(checkpoint=checkpoint))
        except RemoteStorageError as e:
            self._failed(e)
            self._unsettled_branch(name, created)
            return
        self.branches[name] = created

    @rule(data=st.data())
    def delete_checkpoint(self, data: st.DataObject) -> None:
        if not self.checkpoints:
            return
        checkpoint = data.draw(st.sampled_from(sorted(self.checkpoints)))
        try:
            self.tenant.delete_checkpoint(checkpoint)
        except RemoteStorageError as e:
            self._failed(e)
            self._unsettled_checkpoint(checkpoint, None)
            return
        source, _ = self.checkpoints.pop(checkpoint)
        self._prune(source)

    @rule(data=st.data())
    def delete_leaf(self, data: st.DataObject) -> None:
        leaves = [n for n in self.branches
                  if n != "main" and not any(m.parent == n for m in self.branches.values())]
        if not leaves:
            return
        name = data.draw(st.sampled_from(sorted(leaves)))
        try:
            self.tenant.delete_branch(name)
        except RemoteStorageError as e:
            self._failed(e)
            self._unsettled_branch(name, None)
            return
        self._forget_branch(name)

    @rule()
    def flush(self) -> None:
        try:
            self.engine.flush(TENANT)
        except RemoteStorageError as e:
            self._failed(e)

    @rule(data=st.data())
    def flush_one(self, data: st.DataObject) -> None:
        timeline = self.tenant.branch(data.draw(st.sampled_from(sorted(self.branches))))
        timeline.freeze()
        try:
            timeline.flush()
        except RemoteStorageError as e:
            self._failed(e)

    @rule(force=st.booleans())
    def compact(self, force: bool) -> None:
        try:
            self.engine.compact(TENANT, force=force)
        except RemoteStorageError as e:
            self._failed(e)

    @rule(data=st.data())
    def collect_garbage(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.branches)))
        model = self.branches[name]
        cutoff = data.draw(st.integers(model.branch_lsn, model.last_lsn))
        try:
            gc.collect(self.tenant.branch(name), cutoff)
        except RemoteStorageError as e:
            self._failed(e)
        self._prune(name)

    def _prune(self, name: str) -> None:
        """Forget oracle states the engine may no longer serve (below the GC cutoff)."""
        model = self.branches[name]
        timeline = self.tenant.branch(name)
        retained = timeline.retain_lsns()
        for lsn in [lsn for lsn in model.states if lsn < timeline.gc_cutoff]:
            if lsn not in retained:
                del model.states[lsn]

    @rule(flush=st.booleans())
    def restart(self, flush: bool) -> None:
        try:
            self.engine.close(flush=flush)
        except RemoteStorageError as e:
            self._failed(e)
            self.engine.close(flush=False)
        self.engine = self._open()
        self._settle()

    def _adopt(self, name: str, created: BranchModel) -> None:
        """A branch whose failed creation reached the store: its parent keeps its branch
        point readable again, as a retained LSN, and both must read as the oracle says."""
        self.branches[name] = created
        parent = self.branches.get(created.parent or "")
        if parent is not None:
            parent.states.setdefault(created.branch_lsn, created.states[created.branch_lsn])

    def _open(self) -> Engine:
        if self.faults is not None and not self.faults_at_start:
            self.faults.enabled = False
            try:
                return Engine(self.config, self.storage)
            finally:
                self.faults.enabled = True
        for _ in range(OPEN_ATTEMPTS - 1):
            try:
                return Engine(self.config, self.storage)
            except RemoteStorageError as e:
                self._failed(e)
        return Engine(self.config, self.storage)

    def _settle(self) -> None:
        """After a restart: failed changes show as they reached the store; GC that
        failed may have raised a cutoff; nothing else may differ from the model."""
        names = self.tenant.branch_names()
        for name, created in self.unsettled_branches.items():
            if created is not None and name in names and name not in self.branches:
                self._adopt(name, created)
            if created is None and name not in names and name in self.branches:
                self._forget_branch(name)
        self.unsettled_branches.clear()
        checkpoints = self.tenant.manifest.checkpoints
        for name, point in self.unsettled_checkpoints.items():
            if point is not None and name in checkpoints and name not in self.checkpoints:
                self.checkpoints[name] = point
            if point is None and name not in checkpoints and name in self.checkpoints:
                source, _ = self.checkpoints.pop(name)
                self._prune(source)
        self.unsettled_checkpoints.clear()
        assert sorted(names) == sorted(self.branches), "branches after a restart"
        assert sorted(checkpoints) == sorted(self.checkpoints), "checkpoints after a restart"
        for name in self.branches:
            self._prune(name)

    # --- checks ----------------------------------------------------------------

    def _check(self, name: str, lsn: int) -> None:
        for _ in range(READ_ATTEMPTS - 1):
            try:
                self._compare(name, lsn)
                return
            except RemoteStorageError as e:
                self._failed(e)
        self._compare(name, lsn)

    def _compare(self, name: str, lsn: int) -> None:
        timeline = self.tenant.branch(name)
        expected = self.branches[name].states[lsn]
        files = timeline.list_files(lsn)
        assert {p: (m.kind, m.mode, m.size) for p, m in files.items()} == {
            p: (e.kind, e.mode, len(e.data)) for p, e in expected.items()
        }, f"file tree of {name} at {lsn}"
        for path, entry in expected.items():
            if entry.kind == FileKind.FILE:
                assert timeline.read_file(path, lsn=lsn) == entry.data, f"{path} of {name}@{lsn}"
                meta = files[path]
                if parse_relation_path(path) and entry.data:
                    self._check_pages(timeline, meta, entry.data, lsn)

    def _check_pages(self, timeline: Timeline, meta: FileMeta, data: bytes, lsn: int) -> None:
        count = (len(data) + PAGE_SIZE - 1) // PAGE_SIZE
        pages = timeline.get_pages(Relation.from_bytes(meta.relation),
                                   [meta.block_offset + i for i in range(count)][::-1], lsn)
        padded = data.ljust(count * PAGE_SIZE, b"\0")
        for i, page in enumerate(reversed(pages)):
            assert page == padded[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]

    @invariant()
    def latest_matches(self) -> None:
        for name, model in self.branches.items():
            timeline = self.tenant.branch(name)
            assert timeline.durable_lsn == model.last_lsn
        name = sorted(self.branches)[self.counter % len(self.branches)]
        self._check(name, self.branches[name].last_lsn)

    @invariant()
    def gc_cutoff_enforced(self) -> None:
        for name, model in self.branches.items():
            timeline = self.tenant.branch(name)
            below = [lsn for lsn in range(model.branch_lsn, timeline.gc_cutoff)
                     if lsn not in model.states]
            if below:
                try:
                    timeline.list_files(below[0])
                except BelowGcCutoffError:
                    continue
                except RemoteStorageError as e:
                    self._failed(e)
                    continue
                raise AssertionError(f"read of {name} below GC cutoff at {below[0]} succeeded")


def _settings(examples: int) -> settings:
    return settings(
        max_examples=int(os.environ.get("STRATA_MODEL_EXAMPLES", examples)),
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


EngineModel.TestCase.settings = _settings(60)
TestEngineModel = EngineModel.TestCase


@pytest.mark.s3
def test_model_on_s3(make_s3_storage: Callable[[str, str], S3Storage]) -> None:
    """The same model against the S3 backend, each example in a fresh bucket."""

    def machine() -> EngineModel:
        bucket = f"strata-model-{uuid.uuid4().hex[:16]}"
        storage = make_s3_storage(bucket, "engine")
        storage.ensure_bucket()
        return EngineModel(storage)

    run_state_machine_as_test(machine, settings=_settings(8))  # type: ignore[arg-type]


# Which calls fail, and how, in the variants under storage faults.
STORAGE_FAULTS = FaultPlan(error=0.05, throttle=0.02, timeout=0.03, torn=0.05,
                           latency=0.02, latency_s=0.001, timeout_s=0.001)


def _run_under_faults(faults_at_start: bool) -> None:
    stores: list[FaultyStorage] = []

    def machine() -> EngineModel:
        model = EngineModel(faults=STORAGE_FAULTS, faults_at_start=faults_at_start)
        assert model.faults is not None
        stores.append(model.faults)
        return model

    with shortened_backoff(0.1):  # two thirds of the time went into waits between retries
        run_state_machine_as_test(machine, settings=_settings(30))  # type: ignore[arg-type]
    for kind in ("error", "torn", "timeout"):
        assert sum(store.injected_total(kind) for store in stores) > 0, f"no {kind} happened"


def test_model_under_storage_faults() -> None:
    """The model on a store that fails calls, applying some of those it fails; engines
    start on the store without faults."""
    _run_under_faults(faults_at_start=False)


def test_model_under_storage_faults_at_start_up() -> None:
    """As above, with faults also while engines start (attach, manifests, generations)."""
    _run_under_faults(faults_at_start=True)
