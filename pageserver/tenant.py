"""A tenant: one PostgreSQL cluster's timelines, branch names and checkpoints.

Branches are names bound to timelines. Creating a branch writes one small
manifest naming its ancestor and branch LSN: nothing is copied, so it takes
the same time whatever the size of the database.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from itertools import compress
from operator import attrgetter
from typing import Any

import numpy as np

from common.durability import Durability
from common.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    QuotaExceededError,
)
from common.names import is_valid_name
from common.ops import decode_batch
from pageserver import gc
from pageserver.at_time import lsn_at_time
from pageserver.changes import Changes, changes
from pageserver.config import EngineConfig
from pageserver.fencing import Fence
from pageserver.history import Window, branch_window, check_history_s, longest_window, tenant_window
from pageserver.layer_cache import LayerCache
from pageserver.manifest import (
    BRANCHES,
    BranchRecord,
    CheckpointRecord,
    Quotas,
    TenantManifest,
    TimelineManifest,
    legacy_tenant_manifest_prefix,
    legacy_timeline_manifest_prefix,
    tenant_manifest_prefix,
    timeline_manifest_prefix,
    timeline_prefix,
)
from pageserver.manifest_store import ManifestStore
from pageserver.published import Published
from pageserver.remote import RemoteStorage
from pageserver.tenant_log import TenantLog
from pageserver.timeline import InFlightReads, Timeline, now_us

MAIN_BRANCH = "main"


def validate_name(kind: str, name: str) -> str:
    if not is_valid_name(name):
        raise InvalidArgumentError(
            f"invalid {kind} name {name!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class BranchInfo:
    """A branch as listings show it: lineage and progress."""

    name: str
    timeline_id: str
    parent: str | None  # the branch it was forked from, or took its checkpoint from
    branch_lsn: int
    last_lsn: int
    children: tuple[str, ...]
    created_at_us: int
    expires_at_us: int | None
    suspend_timeout_s: int | None = None
    protected: bool = False
    history_s: int | None = None  # its own history window
    ephemeral: bool = False
    lease_s: int | None = None
    undo_off: bool = False


@dataclass(frozen=True)
class BranchDeletion:
    """What a branch delete removes: branch names (descendants first), the checkpoints on
    their timelines, and the bytes of the layers only those timelines held."""

    branches: list[str]
    checkpoints: list[str]
    freed_bytes: int


@dataclass(frozen=True)
class CheckpointCost:
    """What a checkpoint costs in storage and what deleting it alone would free.

    ``held_bytes``: layers kept only for reads below their timeline's GC cutoff that a read
    at the checkpoint reaches (shared with other checkpoints and branch points that read
    them too), plus the timelines deleting it frees. ``freed_bytes``: the timelines the
    delete itself reclaims (a restore's past nothing else reads); ``gc_bytes``: the layers
    the next GC at the current cutoff then removes, those only this checkpoint reads."""

    held_bytes: int
    freed_bytes: int
    gc_bytes: int

    @property
    def reclaim_bytes(self) -> int:
        return self.freed_bytes + self.gc_bytes


@dataclass(frozen=True)
class BranchSettings:
    """What a user sets on a branch besides its history."""

    expires_at_us: int | None = None
    suspend_timeout_s: int | None = None
    protected: bool = False
    history_s: int | None = None  # its history window; None: the default (history.py)
    ephemeral: bool = False  # needs a TTL, never protected
    lease_s: int | None = None  # with expires_at_us lease_s from now
    undo_off: bool = False


@dataclass(frozen=True)
class BranchPoint:
    """Where a new branch starts: exactly one of the fields is set (or none: latest)."""

    lsn: int | None = None
    wal_lsn: int | None = None
    time_us: int | None = None
    checkpoint: str | None = None


class Tenant:
    """Timelines of one tenant, attached at one generation.

    Made by the engine, then either ``create``d or ``attach``ed: both first ``claim``
    the tenant's log, so that no older generation can acknowledge anything after it.
    """

    def __init__(self, tenant_id: str, generation: int, storage: RemoteStorage,
                 config: EngineConfig, layer_cache: LayerCache) -> None:
        self.tenant_id = validate_name("tenant", tenant_id)
        self.generation = generation
        self._storage = storage
        self._config = config
        self._layer_cache = layer_cache
        self.fence = Fence(tenant_id, generation)
        self.log = TenantLog(storage, tenant_id, self.fence, config.log,
                             local_dir=config.local_log_dir / tenant_id)
        self._manifests = ManifestStore(storage, tenant_manifest_prefix(tenant_id), self.fence,
                                        legacy_tenant_manifest_prefix(tenant_id))
        self._lock = threading.RLock()
        self.reads = InFlightReads(config.read_drain_s)
        # Derived from the current manifest, kept up to date at each swap from what changed:
        self._branch_children: dict[str, set[str]] = {}  # branch -> branches forked from it
        self._names_of: Counter[str] = Counter()  # timeline id -> branches and checkpoints
        self._manifest = self._published(
            TenantManifest(tenant_id, incarnation=secrets.token_hex(16)))
        self.timelines: dict[str, Timeline] = {}
        self._children_of: dict[str, set[Timeline]] = {}  # timeline id -> its child timelines
        self._pins: list[tuple[Timeline, int]] = []  # points being branched or checkpointed

    @property
    def manifest(self) -> TenantManifest:
        """The newest persisted tenant manifest; changed only through ``_manifest.change()``."""
        return self._manifest.current

    def _published(self, manifest: TenantManifest) -> Published[TenantManifest]:
        with self._lock:
            self._branch_children.clear()
            self._names_of.clear()
            self._index(TenantManifest(self.tenant_id), manifest)
        return Published(manifest, lock=self._lock, copy=TenantManifest.copy,
                         persist=self._upload, swapped=self._index)

    def _index(self, old: TenantManifest, new: TenantManifest) -> None:
        """Update the lineage and naming indexes from ``old`` to ``new`` (under the lock):
        only the entries that changed, so a change costs the same among thousands."""
        for change in new.changes_since(old):
            if change.before is not None:
                self._names_of[change.before.timeline_id] -= 1
            if change.after is not None:
                self._names_of[change.after.timeline_id] += 1
            if change.kind != BRANCHES:
                continue
            before, after = change.before, change.after
            assert before is None or isinstance(before, BranchRecord)
            assert after is None or isinstance(after, BranchRecord)
            if before is not None and before.parent is not None:
                self._branch_children[before.parent].discard(change.name)
            if after is not None and after.parent is not None:
                self._branch_children.setdefault(after.parent, set()).add(change.name)

    def _named(self, state: TenantManifest, timeline_id: str) -> bool:
        """Whether a branch or checkpoint of ``state`` (a draft of the current manifest)
        names ``timeline_id``."""
        count = self._names_of[timeline_id]
        for change in state.changes_since(self.manifest):
            count -= change.before is not None and change.before.timeline_id == timeline_id
            count += change.after is not None and change.after.timeline_id == timeline_id
        return count > 0

    def _upload(self, manifest: TenantManifest) -> None:
        """Publish ``manifest``, which is about to replace the current one: as what changed
        since it (``Published`` persists one change at a time, so the current manifest is
        the one published last), or whole when the store asks for a snapshot."""
        self._manifests.publish_change(manifest.delta_from(self.manifest), manifest.to_json)

    # --- creating and attaching ----------------------------------------------------

    @staticmethod
    def exists(storage: RemoteStorage, tenant_id: str) -> bool:
        """Whether the object store holds a tenant of that name."""
        fence = Fence(tenant_id, 0)  # only reads
        return ManifestStore(storage, tenant_manifest_prefix(tenant_id), fence,
                             legacy_tenant_manifest_prefix(tenant_id)).exists()

    def create(self, durability: Durability | None = None) -> None:
        """Make the new tenant's log and its ``main`` branch, acknowledged as
        ``durability`` says (default: once in the object store)."""
        self.log.claim()
        self.create_root_branch()
        if durability is not None and durability != self.manifest.durability:
            self.set_durability(durability)

    def set_durability(self, durability: Durability) -> None:
        """When batches are acknowledged from now on; kept in the tenant manifest, so it
        holds wherever the tenant is attached next."""
        with self._manifest.change() as draft:
            draft.state.durability = durability
        self.log.set_durability(durability)

    def attach(self) -> None:
        """Take the tenant over from whoever served it before: fence its log, take over
        every manifest (so the previous owner can publish nothing more), load them, and
        replay the log above what the layers hold."""
        self.log.claim()
        self._load()
        self.log.set_durability(self.manifest.durability)
        self._replay_log()

    def _load(self) -> None:
        """Take over the tenant manifest and every timeline manifest it references."""
        self._manifest = self._published(TenantManifest.from_json(self._manifests.take_over()))
        if not self.manifest.incarnation:  # created before tenants had one
            with self._manifest.change() as draft:
                draft.state.incarnation = secrets.token_hex(16)
        needed = {rec.timeline_id for rec in self.manifest.branches.values()}
        needed |= {cp.timeline_id for cp in self.manifest.checkpoints.values()}
        manifests: dict[str, tuple[TimelineManifest, ManifestStore]] = {}
        pending = list(needed)
        while pending:
            timeline_id = pending.pop()
            if timeline_id in manifests:
                continue
            store = self._timeline_store(timeline_id)
            manifest = TimelineManifest.from_json(store.take_over())
            manifests[timeline_id] = (manifest, store)
            if manifest.ancestor_id is not None:
                pending.append(manifest.ancestor_id)
        order = _ancestors_first({tl: manifest for tl, (manifest, _) in manifests.items()})
        for timeline_id in order:
            manifest, store = manifests[timeline_id]
            ancestor = self.timelines[manifest.ancestor_id] if manifest.ancestor_id else None
            self._register(self._open_timeline(manifest, ancestor, store))

    def _replay_log(self) -> None:
        """Re-apply the logged batches that no layer holds yet; a timeline whose memtable
        fills up is flushed on the way, so a long backlog never sits in memory whole."""
        forgotten: set[str] = set()
        for record in self.log.replay():
            timeline = self.timelines.get(record.timeline_id)
            if timeline is None:
                forgotten.add(record.timeline_id)  # deleted before its chunk was released
            elif record.lsn > timeline.disk_consistent_lsn:
                timeline.replay(record.lsn, decode_batch(record.payload))
                if timeline.open_memtable.size_bytes >= self._config.memtable_bytes:
                    timeline.freeze()
                    timeline.flush()
        for timeline_id in forgotten:
            self.log.forget_timeline(timeline_id)
        for timeline in list(self.timelines.values()):
            self.log.release(timeline.timeline_id, timeline.disk_consistent_lsn)

    def _timeline_store(self, timeline_id: str) -> ManifestStore:
        return ManifestStore(self._storage, timeline_manifest_prefix(self.tenant_id, timeline_id),
                             self.fence,
                             legacy_timeline_manifest_prefix(self.tenant_id, timeline_id))

    def _open_timeline(self, manifest: TimelineManifest, ancestor: Timeline | None,
                       store: ManifestStore) -> Timeline:
        """The timeline ``manifest`` describes, not yet one of ``timelines``."""
        return Timeline(
            self.tenant_id, manifest, ancestor, storage=self._storage, log=self.log,
            fence=self.fence, manifests=store,
            cache_dir=self._config.layer_cache_dir / self.tenant_id / manifest.timeline_id,
            layer_cache=self._layer_cache,
            reads=self.reads, retain_lsns=self._retain_lsns,
            writer_lease_s=self._config.writer_lease_s,
        )

    def _register(self, timeline: Timeline) -> None:
        self.timelines[timeline.timeline_id] = timeline
        if timeline.ancestor is not None:
            self._children_of.setdefault(timeline.ancestor.timeline_id, set()).add(timeline)

    def _forget(self, timelines: list[Timeline]) -> None:
        """Take deleted timelines out of ``timelines``; their objects go afterwards."""
        for timeline in timelines:
            timeline.deleted = True
            self.timelines.pop(timeline.timeline_id, None)
            self._children_of.pop(timeline.timeline_id, None)
            if timeline.ancestor is not None:
                self._children_of.get(timeline.ancestor.timeline_id, set()).discard(timeline)

    # --- branches ----------------------------------------------------------------

    def branch(self, name: str) -> Timeline:
        self.fence.check()
        with self._lock:
            return self.timelines[self._branch_record(self.manifest, name).timeline_id]

    def _branch_record(self, manifest: TenantManifest, name: str) -> BranchRecord:
        record = manifest.branches.get(name)
        if record is None:
            raise NotFoundError(f"no branch {name!r} in tenant {self.tenant_id!r}")
        return record

    def branch_names(self) -> dict[str, str]:
        """Branch name -> timeline id."""
        with self._lock:
            return {name: rec.timeline_id for name, rec in self.manifest.branches.items()}

    def branch_info(self, name: str) -> BranchInfo:
        """Lineage of a branch: its parent, branch point and children."""
        return self.branch_infos([name])[0]

    def branch_infos(self, names: list[str]) -> list[BranchInfo]:
        """``branch_info`` of each of ``names``, the lineage worked out once for all.

        Children are the branches that name it as their parent, so a restore, which
        changes timelines but not parents, leaves the lineage as it was."""
        with self._lock:  # the manifest and the timelines it names, as of one moment
            manifest = self.manifest
            records = [self._branch_record(manifest, name) for name in names]
            timelines = [self.timelines[record.timeline_id] for record in records]
            children = [tuple(sorted(self._branch_children.get(name, ()))) for name in names]
        return [
            BranchInfo(name, timeline.timeline_id, record.parent, timeline.branch_lsn,
                       timeline.durable_lsn, kids,
                       record.created_at_us, record.expires_at_us, record.suspend_timeout_s,
                       record.protected or name == MAIN_BRANCH, history_s=record.history_s,
                       ephemeral=record.ephemeral, lease_s=record.lease_s,
                       undo_off=record.undo_off)
            for name, record, timeline, kids in zip(names, records, timelines, children,
                                                    strict=True)
        ]

    def children(self, timeline: Timeline) -> list[Timeline]:
        with self._lock:
            return [t for t in self._children_of.get(timeline.timeline_id, ())
                    if not t.deleted]

    def create_root_branch(self, name: str = MAIN_BRANCH) -> Timeline:
        """The first branch of a new tenant: an empty timeline with no ancestor."""
        return self._create_timeline(name, None, 0)

    def create_branch(
        self, name: str, parent: str = MAIN_BRANCH, at: BranchPoint | None = None,
        expires_at_us: int | None = None, settings: BranchSettings | None = None,
    ) -> Timeline:
        """A new branch of ``parent`` at a point in its history; copies nothing."""
        validate_name("branch", name)
        at = at or BranchPoint()
        settings = self._within_quotas(settings or BranchSettings(expires_at_us))
        if settings.history_s is not None:
            check_history_s(settings.history_s)
        if at.checkpoint is not None:
            source, lsn = self._checkpoint_point(at.checkpoint)
            origin = self.checkpoint(at.checkpoint).branch
        else:
            source, origin = self.branch(parent), parent
            lsn = self.resolve_point(source, at)
        with self._pinned(source, lsn):
            return self._create_timeline(name, source, lsn, settings, origin)

    @contextmanager
    def _pinned(self, source: Timeline, lsn: int) -> Iterator[None]:
        """Keep ``lsn`` of ``source`` from GC while a branch or checkpoint at it is made.

        Pinned first, then checked against the GC cutoff: GC publishes its cutoff before
        it reads the pins, so either it sees this pin and keeps what ``lsn`` reads, or its
        cutoff is already visible here and the point is refused (never a branch GC empties).
        """
        pin = (source, lsn)
        with self._lock:
            self._pins.append(pin)
        try:
            source.check_above_gc_cutoff(lsn)
            # A manifest will name the point: the store must hold the log up to it even
            # when it was acknowledged after a local fsync only.
            self.log.wait_durable(self.log.acknowledged_seqno)
            yield
        finally:
            with self._lock:
                self._pins.remove(pin)

    def resolve_point(self, timeline: Timeline, at: BranchPoint) -> int:
        """An LSN of ``timeline`` from an LSN, a WAL position or a time (docs/DESIGN.md rules)."""
        given = [v for v in (at.lsn, at.wal_lsn, at.time_us, at.checkpoint) if v is not None]
        if len(given) > 1:
            raise InvalidArgumentError("give at most one of LSN, WAL position, time or checkpoint")
        if at.lsn is not None:
            if at.lsn > timeline.durable_lsn or at.lsn < 0:
                raise OutOfRangeError(
                    f"branch point {at.lsn} is beyond the last LSN {timeline.durable_lsn} "
                    f"of the parent"
                )
            timeline.check_above_gc_cutoff(at.lsn)
            return at.lsn
        if at.wal_lsn is None and at.time_us is None:
            return timeline.durable_lsn
        history = timeline.batch_history()
        if at.time_us is not None:
            branch = next((n for n, timeline_id in self.branch_names().items()
                           if timeline_id == timeline.timeline_id), timeline.timeline_id)
            return lsn_at_time(timeline, history, at.time_us, branch)
        assert at.wal_lsn is not None
        hits = np.flatnonzero(history[:, 1] >= np.uint64(at.wal_lsn))
        if not hits.size:
            raise OutOfRangeError("no durable batch has reached WAL position "
                                  f"{at.wal_lsn >> 32:X}/{at.wal_lsn & 0xFFFFFFFF:X}")
        lsn = int(history[hits[0], 0])
        timeline.check_above_gc_cutoff(lsn)
        return lsn

    def _create_timeline(
        self, name: str, ancestor: Timeline | None, branch_lsn: int,
        settings: BranchSettings | None = None, parent: str | None = None,
    ) -> Timeline:
        settings = settings or BranchSettings()
        with self._manifest.change() as draft:
            if name in draft.state.branches:
                raise AlreadyExistsError(f"branch {name!r} already exists")
            if ancestor is not None:  # not the root branch a tenant is created with
                self._check_room(draft.state)
            timeline = self._new_timeline(ancestor, branch_lsn)
            draft.state.set_branch(name, BranchRecord(
                timeline.timeline_id, timeline.created_at_us, settings.expires_at_us, parent,
                settings.suspend_timeout_s, settings.protected, history_s=settings.history_s,
                ephemeral=settings.ephemeral, lease_s=settings.lease_s,
                undo_off=settings.undo_off,
            ))
            draft.on_swap(lambda: self._register(timeline))
        return timeline

    def restore_branch(self, name: str, at: BranchPoint | None,
                       preserve_as: str | None = None) -> tuple[Timeline, str | None]:
        """Put branch ``name`` back to a point of its history, or with ``at`` None to its
        parent's newest state (a reset). Same name, new timeline; copies nothing.

        The timeline the branch had is kept under ``preserve_as`` if given, and always
        when other branches were forked from it (under a generated name); otherwise it
        stays unnamed while the restored branch reads through it or a checkpoint pins it,
        and is deleted once nothing does. The branch's checkpoints stay. Returns the new
        timeline and the preserved name, if any. Refused while a compute writes the branch.

        The new timeline's writer epoch starts above the old one's: a compute that still
        holds an epoch of the branch (its lease expired, or the page server restarted
        and forgot it) is refused on the restored branch.
        """
        old = self.branch(name)
        lease = old.writer_lease.current()
        if lease is not None:
            raise FailedPreconditionError(
                f"branch {name!r} has a running compute ({lease.holder}); stop it first")
        if preserve_as is not None:
            validate_name("branch", preserve_as)
        record = self._branch_record(self.manifest, name)
        if at is None:
            if record.parent is None:
                raise FailedPreconditionError(f"branch {name!r} has no parent to reset to")
            source = self.branch(record.parent)
            lsn = source.durable_lsn
        elif at.checkpoint is not None:
            source, lsn = self._checkpoint_point(at.checkpoint)
        else:
            source, lsn = old, self.resolve_point(old, at)
        with self._pinned(source, lsn), self._manifest.change() as draft:
            branches = draft.state.branches
            if branches.get(name) != record:
                raise FailedPreconditionError(
                    f"branch {name!r} changed while it was being restored; try again")
            if preserve_as is None and self.children(old):
                preserve_as = self._free_name(branches, f"{name}-before-restore")
            if preserve_as is not None and preserve_as in branches:
                raise AlreadyExistsError(f"branch {preserve_as!r} already exists")
            if preserve_as is not None:
                self._check_room(draft.state)
                kept_until = record.expires_at_us or _longest_expiry(draft.state.quotas)
                self._within_ttl_quota(draft.state.quotas, kept_until)
            timeline = self._new_timeline(source, lsn, writer_epoch=old.writer_epoch + 1)
            draft.state.set_branch(name, replace(
                record, timeline_id=timeline.timeline_id, created_at_us=now_us()))
            if preserve_as is not None:
                draft.state.set_branch(preserve_as, BranchRecord(
                    old.timeline_id, record.created_at_us, kept_until, record.parent))
            draft.on_swap(lambda: self._register(timeline))
        self._drop_unreferenced(record.timeline_id)
        return timeline, preserve_as

    def update_branch(self, name: str, changes: dict[str, Any]) -> None:
        """Change ``expires_at_us``, ``suspend_timeout_s``, ``protected``, ``history_s``
        (None: back to the default) or ``undo_off`` of a branch; ``renew_lease`` (True)
        moves a leased branch's expiry ``lease_s`` ahead."""
        unknown = set(changes) - {"expires_at_us", "suspend_timeout_s", "protected",
                                  "history_s", "undo_off", "renew_lease"}
        if unknown:
            raise InvalidArgumentError(f"cannot set {', '.join(sorted(unknown))} on a branch")
        if changes.get("history_s") is not None:
            check_history_s(changes["history_s"])
        changes = dict(changes)
        renew = changes.pop("renew_lease", False)
        with self._manifest.change() as draft:
            current = self._branch_record(draft.state, name)
            if renew:
                if not current.lease_s:
                    raise FailedPreconditionError(
                        f"branch {name!r} has no lease to renew (give it a TTL instead)")
                changes["expires_at_us"] = now_us() + current.lease_s * 1_000_000
            elif "expires_at_us" in changes:
                changes["lease_s"] = None  # a TTL set by hand replaces the lease
            updated = replace(current, **changes)
            protected = updated.protected or name == MAIN_BRANCH
            if protected and updated.expires_at_us:
                raise FailedPreconditionError(
                    f"branch {name!r} is protected and never expires; unprotect it first")
            if name != MAIN_BRANCH and (updated.protected, updated.expires_at_us) != (
                    current.protected, current.expires_at_us):
                self._within_ttl_quota(draft.state.quotas, updated.expires_at_us,
                                       updated.protected)
            draft.state.set_branch(name, updated)

    def changes(self, name: str, since: BranchPoint | None) -> Changes:
        """What branch ``name`` wrote after ``since`` (None: its branch point), by
        relation, from its layers (``pageserver.changes``)."""
        timeline = self.branch(name)
        upto = timeline.durable_lsn
        if since is None:
            lsn = timeline.branch_lsn
        elif since.checkpoint is not None:
            source, lsn = self._checkpoint_point(since.checkpoint)
            if not _on_line(timeline, source, lsn, upto):
                raise InvalidArgumentError(f"checkpoint {since.checkpoint!r} is not a point "
                                           f"of branch {name!r}'s history")
        else:
            lsn = self.resolve_point(timeline, since)
        return changes(timeline, min(lsn, upto), upto)

    def stored_bytes(self) -> int:
        """Bytes the tenant's data occupies, what ``max_storage`` counts: the layer files of
        all its timelines and the versions in their memtables not yet written as layers."""
        with self._lock:
            timelines = list(self.timelines.values())
        return sum(t.owned_bytes() + t.memtable_bytes() for t in timelines)

    def set_history(self, history_s: int | None) -> None:
        """The window of the branches without their own (None: the page server's)."""
        if history_s is not None:
            check_history_s(history_s)
        with self._manifest.change() as draft:
            draft.state.history_s = history_s

    def default_window(self) -> Window:
        """The window of branches without their own window (forks: at most the fork
        default) and of timelines no branch names."""
        return tenant_window(self.manifest.history_s, self._config.pitr_window_s)

    def branch_window(self, name: str) -> Window:
        """The history window of branch ``name`` (pageserver/history.py)."""
        manifest = self.manifest
        return self._window_of(manifest, self._branch_record(manifest, name))

    def _window_of(self, manifest: TenantManifest, record: BranchRecord) -> Window:
        return branch_window(record.history_s, record.parent is not None, manifest.history_s,
                             self._config.pitr_window_s, self._config.fork_pitr_window_s)

    def timeline_windows(self) -> dict[str, Window]:
        """Timeline id -> the window GC keeps on it: the longest of the branches naming it,
        ``default_window`` for one no branch names (worked out once for all of them)."""
        manifest = self.manifest
        named: dict[str, list[Window]] = {}
        for record in manifest.branches.values():
            named.setdefault(record.timeline_id, []).append(self._window_of(manifest, record))
        unnamed = self.default_window()
        with self._lock:
            timelines = list(self.timelines)
        return {timeline_id: longest_window(named.get(timeline_id, ()), unnamed)
                for timeline_id in timelines}

    def reclaimable_bytes(self, name: str) -> int:
        """Bytes of layers a delete of branch ``name`` (with its checkpoints, no cascade)
        would free: those of the timelines nothing else reads through then."""
        with self._manifest.change() as draft:
            draft.discard()  # nothing changes: the change only serialises with deletes
            state = draft.state
            self._branch_record(state, name)  # NotFoundError
            checkpoints = [gone for gone, record in state.checkpoints.items()
                           if record.branch == name]
            dropped = {state.drop_branch(name).timeline_id}
            dropped |= {state.drop_checkpoint(gone).timeline_id for gone in checkpoints}
            return sum(t.owned_bytes() for t in self._unreferenced(state, dropped))

    def set_quotas(self, quotas: Quotas) -> None:
        with self._manifest.change() as draft:
            draft.state.quotas = quotas

    def _within_quotas(self, settings: BranchSettings) -> BranchSettings:
        """``settings`` for a new branch, checked against the tenant's quotas; a branch
        without a TTL gets the longest allowed one. The branch count is checked again
        where the branch is added, in the same manifest change."""
        if settings.protected and settings.expires_at_us:
            raise InvalidArgumentError("a protected branch never expires: give no TTL")
        if settings.ephemeral and (settings.protected or not settings.expires_at_us):
            raise InvalidArgumentError("an ephemeral branch needs a TTL and is never "
                                       "protected")
        with self._lock:
            self._check_room(self.manifest)
        quotas = self.manifest.quotas
        if settings.expires_at_us is None and not settings.protected:
            settings = replace(settings, expires_at_us=_longest_expiry(quotas))
        self._within_ttl_quota(quotas, settings.expires_at_us, settings.protected)
        return settings

    def _check_room(self, state: TenantManifest) -> None:
        """QuotaExceededError unless ``state`` has room for one more branch."""
        quotas, count = state.quotas, len(state.branches)
        if quotas.max_branches is not None and count >= quotas.max_branches:
            raise QuotaExceededError(
                f"tenant {self.tenant_id!r} has {count} branches, its quota is "
                f"{quotas.max_branches}: delete some first")

    def _within_ttl_quota(self, quotas: Quotas, expires_at_us: int | None,
                          protected: bool = False) -> None:
        """QuotaExceededError unless a branch expiring at ``expires_at_us`` (None: never)
        keeps within ``quotas.max_ttl_s``; protected branches never expire."""
        if quotas.max_ttl_s is None:
            return
        if protected:
            raise QuotaExceededError(
                f"tenant {self.tenant_id!r} allows a TTL of at most {quotas.max_ttl_s} s and "
                "protected branches never expire")
        latest = _longest_expiry(quotas)
        assert latest is not None
        if expires_at_us is None or expires_at_us > latest + 1_000_000:  # 1 s of slack
            raise QuotaExceededError(
                f"tenant {self.tenant_id!r} allows a TTL of at most {quotas.max_ttl_s} s")

    @staticmethod
    def _free_name(branches: Mapping[str, BranchRecord], base: str) -> str:
        number = 1
        while f"{base}-{number}" in branches:
            number += 1
        return f"{base}-{number}"

    def _new_timeline(self, ancestor: Timeline | None, branch_lsn: int,
                      writer_epoch: int = 0) -> Timeline:
        """A new, empty timeline cut from ``ancestor`` at ``branch_lsn`` with ``writer_epoch``,
        its manifest persisted; the caller registers it once a tenant manifest naming it
        is durable."""
        if ancestor is not None and ancestor.deleted:  # dropped since the caller looked
            raise NotFoundError(f"timeline {ancestor.timeline_id} was deleted; try again")
        manifest = TimelineManifest(
            uuid.uuid4().hex, ancestor.timeline_id if ancestor else None, branch_lsn,
            branch_lsn, branch_lsn, now_us(), writer_epoch=writer_epoch,
        )
        timeline = self._open_timeline(manifest, ancestor,
                                       self._timeline_store(manifest.timeline_id))
        if ancestor is not None and branch_lsn == ancestor.last_lsn:
            timeline.inherit_last_batch(ancestor.last_batch())  # no history scan later
            timeline.inherit_tree(ancestor)
        timeline.persist()
        return timeline

    def delete_branch(self, name: str, cascade: bool = False, force: bool = False,
                      dry_run: bool = False) -> BranchDeletion:
        """Delete a branch with its checkpoints (also those taken before its restores and
        resets) and reclaim what nothing refers to any more; returns what went (with
        ``dry_run``: what would go, deleting nothing).

        Refused while branches name it as their parent (forked from it or from one of its
        checkpoints), unless ``cascade``, which deletes them too; refused for protected
        branches unless ``force``; always refused for ``main`` (also below a cascade),
        which lives as long as its tenant. History that another branch or checkpoint
        still reads through stays, unnamed, until nothing does.
        """
        with self._manifest.change() as draft:
            state = draft.state
            self._branch_record(state, name)  # NotFoundError
            doomed = [name]
            with self._lock:  # the draft is still the current manifest the index follows
                for member in doomed:
                    doomed.extend(sorted(n for n in self._branch_children.get(member, ())
                                         if n not in doomed))
            below = sorted(doomed[1:])
            if MAIN_BRANCH in doomed:
                raise FailedPreconditionError(
                    f"branch {MAIN_BRANCH!r} cannot be deleted while tenant "
                    f"{self.tenant_id!r} exists; delete the tenant instead")
            guarded = [n for n in (name, *below) if self._protected(n)]
            if guarded and not force:
                raise FailedPreconditionError(
                    f"branch {', '.join(repr(n) for n in guarded)} is protected; "
                    "deleting it needs force")
            if below and not cascade:
                raise FailedPreconditionError(
                    f"branch {name!r} has child branches {', '.join(below)}; "
                    "delete them first or ask for a cascading delete")
            on_doomed = map(set(doomed).__contains__,
                            map(attrgetter("branch"), state.checkpoints.values()))
            checkpoints = sorted(compress(state.checkpoints, on_doomed))
            dropped = {state.drop_branch(gone).timeline_id for gone in doomed}
            dropped |= {state.drop_checkpoint(gone).timeline_id for gone in checkpoints}
            unreferenced = self._unreferenced(state, dropped)
            deletion = BranchDeletion([*below, name], checkpoints,
                                      sum(t.owned_bytes() for t in unreferenced))
            if dry_run:
                draft.discard()
                return deletion
            draft.on_swap(lambda: self._forget(unreferenced))
        for timeline in unreferenced:
            self._reclaim(timeline)
        return deletion

    def _protected(self, name: str) -> bool:
        record = self.manifest.branches.get(name)
        return name == MAIN_BRANCH or (record is not None and record.protected)

    def _unreferenced(self, state: TenantManifest, dropped: set[str]) -> list[Timeline]:
        """Of the timelines in ``dropped`` (those a change to ``state`` took names from)
        and their ancestors, those that no branch or checkpoint of ``state`` reads
        through, children first: what the change leaves for ``_forget`` and ``_reclaim``.

        Every change forgets what it leaves unread, so every other timeline is still read
        through and only these need a look: a timeline is unread once nothing names it
        and all its children are unread. Names are counted in an index kept at each swap,
        so a delete among thousands of branches looks at only what it dropped."""
        with self._lock:
            unread: set[Timeline] = set()
            looking = {self.timelines[t] for t in dropped if t in self.timelines}
            while looking:
                found = {t for t in looking if not self._named(state, t.timeline_id)
                         and self._children_of.get(t.timeline_id, set()) <= unread}
                if not found:
                    break
                unread |= found
                looking = (looking - found) | {t.ancestor for t in found
                                               if t.ancestor is not None}
        return sorted(unread, key=_depth, reverse=True)

    def _drop_unreferenced(self, dropped: str) -> None:
        """Forget and reclaim timeline ``dropped`` (a restore's past) and its ancestors if
        nothing reads through them any more."""
        with self._manifest.change() as draft:
            draft.discard()  # the manifest names none of them; the change serialises
            unreferenced = self._unreferenced(draft.state, {dropped})
            with self._lock:
                self._forget(unreferenced)
        for timeline in unreferenced:
            self._reclaim(timeline)

    def _reclaim(self, timeline: Timeline) -> None:
        """Delete the objects, log entries and cached files of a forgotten timeline."""
        self.reads.barrier()
        timeline.close()
        prefix = timeline_prefix(self.tenant_id, timeline.timeline_id)
        self._storage.delete_many(self._storage.list(prefix))
        self.log.forget_timeline(timeline.timeline_id)
        cached = self._config.layer_cache_dir / self.tenant_id / timeline.timeline_id
        shutil.rmtree(cached, ignore_errors=True)
        self._layer_cache.forget_under(cached)

    # --- checkpoints ---------------------------------------------------------------

    def create_checkpoint(self, branch: str, name: str, lsn: int | None = None,
                          statement: str | None = None,
                          expires_at_us: int | None = None) -> CheckpointRecord:
        """Pin ``branch`` at ``lsn`` (None: its newest durable LSN) as ``name``; an
        automatic one (undo) names the ``statement`` it was taken before and expires."""
        validate_name("checkpoint", name)
        with ExitStack() as pins, self._manifest.change() as draft:  # pinned until current
            timeline = self.branch(branch)  # in the change: no restore moves it meanwhile
            point = timeline.durable_lsn if lsn is None else self.resolve_point(
                timeline, BranchPoint(lsn=lsn)
            )
            pins.enter_context(self._pinned(timeline, point))
            if name in draft.state.checkpoints:
                raise AlreadyExistsError(f"checkpoint {name!r} already exists")
            record = CheckpointRecord(timeline.timeline_id, point, now_us(), branch, statement,
                                      expires_at_us)
            draft.state.set_checkpoint(name, record)
        return record

    def _checkpoint_point(self, name: str) -> tuple[Timeline, int]:
        """The timeline and LSN a checkpoint pins."""
        record = self.checkpoint(name)
        with self._lock:
            source = self.timelines.get(record.timeline_id)
        if source is None or source.deleted:
            raise NotFoundError(f"checkpoint {name!r} refers to a deleted timeline")
        return source, record.lsn

    def checkpoint(self, name: str) -> CheckpointRecord:
        with self._lock:
            record = self.manifest.checkpoints.get(name)
        if record is None:
            raise NotFoundError(f"no checkpoint {name!r} in tenant {self.tenant_id!r}")
        return record

    def delete_checkpoint(self, name: str) -> None:
        """Delete a checkpoint, and the past timeline it alone kept (after a reset)."""
        with self._manifest.change() as draft:
            self.checkpoint(name)  # NotFoundError; the draft is a copy of what it reads
            dropped = draft.state.drop_checkpoint(name).timeline_id
            unreferenced = self._unreferenced(draft.state, {dropped})
            draft.on_swap(lambda: self._forget(unreferenced))
        for timeline in unreferenced:
            self._reclaim(timeline)

    def checkpoint_costs(self, names: Sequence[str]) -> dict[str, CheckpointCost]:
        """The cost of each checkpoint in ``names`` (``CheckpointCost``; one deleted
        meanwhile is left out).

        Deleting a checkpoint takes away the retained point it is, and the branch points
        of the past timelines only it kept; the next GC then removes the layers that only
        points taken away read. Each timeline's layers are looked at once for all."""
        freed: dict[str, int] = {}
        own: dict[str, tuple[Timeline, int]] = {}  # the timeline holding its point, the LSN
        lost: dict[str, list[tuple[Timeline, int, str]]] = {}  # retained points it takes
        with self._manifest.change() as draft:
            draft.discard()  # nothing changes: the change only serialises with deletes
            state = draft.state
            for name in names:
                record = state.checkpoints.get(name)
                if record is None:
                    continue
                state.drop_checkpoint(name)  # each one alone: put back after the look
                unreferenced = self._unreferenced(state, {record.timeline_id})
                state.set_checkpoint(name, record)
                freed[name] = sum(t.owned_bytes() for t in unreferenced)
                with self._lock:
                    source = self.timelines.get(record.timeline_id)
                    labels = self.names_of_timelines()
                taken = [] if source is None else [
                    (_owner(source, record.lsn), record.lsn, f"checkpoint {name}")]
                taken += [(_owner(t.ancestor, t.branch_lsn), t.branch_lsn,
                           f"branch {', '.join(labels.get(t.timeline_id, [t.timeline_id]))}")
                          for t in unreferenced if t.ancestor is not None]
                lost[name] = [point for point in taken if point[0] not in unreferenced]
                if source is not None and _owner(source, record.lsn) not in unreferenced:
                    own[name] = (_owner(source, record.lsn), record.lsn)
        looked = {id(t): t for points in lost.values() for t, _, _ in points}
        seen = {}  # timeline -> what pins each of its LSNs, its layers and their readers
        for key, timeline in looked.items():
            points = self.retained_points(timeline)
            seen[key] = (points, gc.pinned_layers(timeline, list(points)))
        costs = {}
        for name, bytes_ in freed.items():
            held = gc_bytes = 0
            if name in own:
                timeline, lsn = own[name]
                held = sum(layer.size for layer in seen[id(timeline)][1] if lsn in layer.readers)
            for key in {id(t) for t, _, _ in lost[name]}:
                points, pinned = seen[key]
                taken_at: dict[int, set[str]] = {}
                for timeline, lsn, label in lost[name]:
                    if id(timeline) == key:
                        taken_at.setdefault(lsn, set()).add(label)
                unread = {lsn for lsn, gone in taken_at.items()
                          if set(points.get(lsn, ())) <= gone}
                gc_bytes += sum(layer.size for layer in pinned
                                if layer.readers and layer.readers <= unread)
            costs[name] = CheckpointCost(held + bytes_, bytes_, gc_bytes)
        return costs

    def _retain_lsns(self, timeline: Timeline) -> set[int]:
        """LSNs of ``timeline``'s own history that child timelines and checkpoints pin,
        also those pinned through a descendant below its branch point."""
        with self._lock:
            pins = [(child.ancestor, child.branch_lsn) for child in self.timelines.values()
                    if not child.deleted]
            pins += [(self.timelines.get(cp.timeline_id), cp.lsn)
                     for cp in self.manifest.checkpoints.values()]
            pins += self._pins
        return {lsn for holder, lsn in pins
                if holder is not None and _owner(holder, lsn) is timeline}

    def retained_points(self, timeline: Timeline) -> dict[int, list[str]]:
        """What pins each LSN of ``timeline``'s own history: ``checkpoint NAME``,
        ``branch NAME`` (a child; its timeline id if no branch names it) or a branch or
        checkpoint being made. The labels ``gc.explain`` reports."""
        with self._lock:
            names = self.names_of_timelines()
            pins = [(child.ancestor, child.branch_lsn,
                     f"branch {', '.join(names.get(child.timeline_id, [child.timeline_id]))}")
                    for child in self.timelines.values() if not child.deleted]
            pins += [(self.timelines.get(cp.timeline_id), cp.lsn, f"checkpoint {name}")
                     for name, cp in self.manifest.checkpoints.items()]
            pins += [(holder, lsn, "a branch or checkpoint being made")
                     for holder, lsn in self._pins]
        points: dict[int, list[str]] = {}
        for holder, lsn, label in pins:
            if holder is not None and _owner(holder, lsn) is timeline:
                points.setdefault(lsn, []).append(label)
        return points

    def names_of_timelines(self) -> dict[str, list[str]]:
        """Timeline id -> the branches naming it, sorted."""
        names: dict[str, list[str]] = {}
        for name, record in sorted(self.manifest.branches.items()):
            names.setdefault(record.timeline_id, []).append(name)
        return names

    def close(self) -> None:
        self.log.close()
        for timeline in list(self.timelines.values()):
            timeline.close()


def _longest_expiry(quotas: Quotas) -> int | None:
    """The latest expiry ``quotas`` allow a branch from now; None: no limit."""
    return None if quotas.max_ttl_s is None else now_us() + quotas.max_ttl_s * 1_000_000


def _on_line(timeline: Timeline, source: Timeline, lsn: int, upto: int) -> bool:
    """Whether ``source`` at ``lsn`` is a point of ``timeline``'s line up to ``upto``."""
    current: Timeline | None = timeline
    while current is not None:
        if current is source:
            return lsn <= upto
        upto, current = current.branch_lsn, current.ancestor
    return False


def _owner(timeline: Timeline, lsn: int) -> Timeline:
    """The timeline whose own history holds ``lsn`` as ``timeline`` reads it."""
    while lsn < timeline.branch_lsn and timeline.ancestor is not None:
        timeline = timeline.ancestor
    return timeline


def _depth(timeline: Timeline) -> int:
    """How many ancestors ``timeline`` has."""
    depth = 0
    ancestor = timeline.ancestor
    while ancestor is not None:
        depth, ancestor = depth + 1, ancestor.ancestor
    return depth


def _ancestors_first(manifests: dict[str, TimelineManifest]) -> list[str]:
    """Timeline ids ordered so every ancestor precedes its descendants."""
    order: list[str] = []
    placed: set[str] = set()

    def place(timeline_id: str) -> None:
        if timeline_id in placed:
            return
        ancestor = manifests[timeline_id].ancestor_id
        if ancestor is not None:
            place(ancestor)
        placed.add(timeline_id)
        order.append(timeline_id)

    for timeline_id in sorted(manifests):
        place(timeline_id)
    return order
