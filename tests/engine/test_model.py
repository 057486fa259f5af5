"""Model-based test: random ingest / branch / read / flush / compact / GC / restart sequences
against the engine and the in-memory oracle, comparing every read."""

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
from pageserver.remote import LocalDirectoryStorage, RemoteStorage, S3Storage
from pageserver.tenant import BranchPoint, Tenant
from pageserver.timeline import Timeline
from tests.engine.oracle import OracleError, Tree, apply_batch

TENANT = "model"
DIRS = ["a", "a/b", "base", "base/1", "c"]
FILES = ["f", "a/g", "a/b/h", "base/1/100", "base/1/100.1", "base/1/101", "base/1/101_vm", "c/x"]
PATHS = DIRS + FILES


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

    def __init__(self, storage: RemoteStorage | None = None) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="strata-model-"))
        self.config = EngineConfig(
            state_dir=self.tmp / "state", background_period_s=0, pitr_window_s=0,
            l0_compaction_threshold=3, l1_target_entries=8, image_threshold=2,
            image_partition_pages=6,
        )
        self.storage = storage or LocalDirectoryStorage(self.tmp / "remote")
        self.engine = Engine(self.config, self.storage)
        self.engine.create_tenant(TENANT)
        self.branches = {"main": BranchModel(None, 0, {0: {}})}
        self.counter = 0
        self.checkpoints: dict[str, tuple[str, int]] = {}

    def teardown(self) -> None:
        self.engine.close(flush=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def tenant(self) -> Tenant:
        return self.engine.tenant(TENANT)

    @initialize()
    def seed_tree(self) -> None:
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
        lsn = timeline.ingest(batch)
        assert lsn == model.last_lsn + 1
        model.states[lsn] = expected

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
        try:
            self.tenant.create_branch(name, parent, BranchPoint(lsn=lsn))
        except BelowGcCutoffError:
            assert lsn < self.tenant.branch(parent).gc_cutoff
            return
        self.branches[name] = BranchModel(parent, lsn, {lsn: model.states[lsn]})

    @rule(data=st.data())
    def checkpoint(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.branches)))
        lsn = data.draw(st.sampled_from(sorted(self.branches[name].states)))
        self.counter += 1
        self.tenant.create_checkpoint(name, f"cp{self.counter}", lsn)
        self.checkpoints[f"cp{self.counter}"] = (name, lsn)

    @precondition(lambda self: len(self.branches) < 6 and self.checkpoints)
    @rule(data=st.data())
    def branch_from_checkpoint(self, data: st.DataObject) -> None:
        checkpoint = data.draw(st.sampled_from(sorted(self.checkpoints)))
        source, lsn = self.checkpoints[checkpoint]
        self.counter += 1
        name = f"b{self.counter}"
        self.tenant.create_branch(name, at=BranchPoint(checkpoint=checkpoint))
        state = self.branches[source].states[lsn]
        self.branches[name] = BranchModel(source, lsn, {lsn: state})

    @rule(data=st.data())
    def delete_checkpoint(self, data: st.DataObject) -> None:
        if not self.checkpoints:
            return
        checkpoint = data.draw(st.sampled_from(sorted(self.checkpoints)))
        self.tenant.delete_checkpoint(checkpoint)
        source, _ = self.checkpoints.pop(checkpoint)
        self._prune(source)

    @rule(data=st.data())
    def delete_leaf(self, data: st.DataObject) -> None:
        leaves = [n for n in self.branches
                  if n != "main" and not any(m.parent == n for m in self.branches.values())]
        if not leaves:
            return
        name = data.draw(st.sampled_from(sorted(leaves)))
        self.tenant.delete_branch(name)
        self.checkpoints = {k: v for k, v in self.checkpoints.items() if v[0] != name}
        parent = self.branches.pop(name).parent
        assert parent is not None
        self._prune(parent)

    @rule()
    def flush(self) -> None:
        self.engine.flush(TENANT)

    @rule(data=st.data())
    def flush_one(self, data: st.DataObject) -> None:
        timeline = self.tenant.branch(data.draw(st.sampled_from(sorted(self.branches))))
        timeline.freeze()
        timeline.flush()

    @rule(force=st.booleans())
    def compact(self, force: bool) -> None:
        self.engine.compact(TENANT, force=force)

    @rule(data=st.data())
    def collect_garbage(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.branches)))
        model = self.branches[name]
        cutoff = data.draw(st.integers(model.branch_lsn, model.last_lsn))
        gc.collect(self.tenant.branch(name), cutoff)
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
        self.engine.close(flush=flush)
        self.engine = Engine(self.config, self.storage)

    # --- checks ----------------------------------------------------------------

    def _check(self, name: str, lsn: int) -> None:
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
