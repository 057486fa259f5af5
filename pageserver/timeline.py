"""A timeline (branch): ingest, reads at an LSN, memtable flushes and its layer set.

Three LSNs describe a timeline's progress:

* ``last_lsn``: the newest batch applied (its log record may not be fsynced yet);
* ``durable_lsn``: the newest batch acknowledged: the object store holds it (in the
  tenant's log), or for a tenant of local durability this disk does; reads see up to here;
* ``disk_consistent_lsn``: every batch up to here is in uploaded layer files.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from common.errors import (
    BelowGcCutoffError,
    CorruptionError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
)
from common.keys import KEYSPACE_END, KEYSPACE_START, PAGE_SIZE, Relation
from common.ops import Batch, FileKind, FileMeta, encode_batch, stamp_record
from pageserver.applied_batch import AppliedBatch, resent_lsn
from pageserver.fencing import Fence
from pageserver.ingest import BatchApplier, Effects, normalize_path
from pageserver.layer import Layer
from pageserver.layer_cache import LayerCache
from pageserver.layer_file import LayerKind, LayerSummary, write_layer
from pageserver.log_chunk import LogRecord
from pageserver.manifest import (
    LayerDescriptor,
    TimelineManifest,
    layer_key,
)
from pageserver.manifest_store import ManifestStore
from pageserver.memtable import Memtable
from pageserver.published import Published
from pageserver.reads import read_metas, read_pages, stored_blocks
from pageserver.remote import RemoteStorage
from pageserver.tenant_log import TenantLog
from pageserver.writer_lease import WriterLeases

log = logging.getLogger(__name__)

RELATION_DIRS = ("base/", "global/", "pg_tblspc/")  # where a cluster keeps its relations
PageEntry = tuple[Relation, int, int, bytes | None]
MetaEntry = tuple[str, int, bytes | None]


def now_us() -> int:
    return time.time_ns() // 1000


class InFlightReads:
    """Lets layer removal wait for every read that may still use the removed layers."""

    def __init__(self, wait_s: float = 60.0) -> None:
        self.wait_s = wait_s
        self._cond = threading.Condition()
        self._epoch = 0
        self._active: Counter[int] = Counter()

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            epoch = self._epoch
            self._active[epoch] += 1
        try:
            yield
        finally:
            with self._cond:
                self._active[epoch] -= 1
                if not self._active[epoch]:
                    del self._active[epoch]
                    self._cond.notify_all()

    def barrier(self) -> bool:
        """Wait (up to ``wait_s``) until reads that started before this call are done;
        whether they are."""
        with self._cond:
            self._epoch += 1
            target = self._epoch
            return self._cond.wait_for(lambda: all(e >= target for e in self._active),
                                       self.wait_s)


@dataclass
class TimelineState:
    """What a timeline's manifest publishes that changes: its layers (in read order), how
    far they reach, its GC cutoff, its writer epoch and the last numbered batch they hold."""

    layers: list[Layer]
    disk_consistent_lsn: int
    gc_cutoff: int
    writer_epoch: int
    last_batch: AppliedBatch

    def copy(self) -> TimelineState:
        return replace(self, layers=list(self.layers))


class Timeline:
    """One line of history: its own layers above ``branch_lsn``, an ancestor below."""

    def __init__(
        self,
        tenant_id: str,
        manifest: TimelineManifest,
        ancestor: Timeline | None,
        *,
        storage: RemoteStorage,
        log: TenantLog,
        fence: Fence,
        manifests: ManifestStore,
        cache_dir: Path,
        layer_cache: LayerCache,
        reads: InFlightReads,
        retain_lsns: Callable[[Timeline], set[int]],
        writer_lease_s: float = 10.0,
    ) -> None:
        self.tenant_id = tenant_id
        self.timeline_id = manifest.timeline_id
        self.created_at_us = manifest.created_at_us
        self._ancestor = ancestor
        self._branch_lsn = manifest.branch_lsn
        self._storage = storage
        self._log = log
        self._fence = fence
        self._manifests = manifests
        self._cache_dir = cache_dir
        self._layer_cache = layer_cache
        self._reads = reads
        self._unpublished: list[Layer] = []  # out of the manifest, waiting for reads
        self._unpublished_lock = threading.Lock()
        self._retain_lsns = retain_lsns
        self._lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self.compaction_lock = threading.Lock()  # one compaction pass at a time
        self.deleted = False
        self._state = Published(
            TimelineState(
                sorted((self._layer_handle(desc) for desc in manifest.layers), key=_read_order),
                manifest.disk_consistent_lsn, manifest.gc_cutoff, manifest.writer_epoch,
                manifest.last_batch,
            ),
            lock=self._lock, copy=TimelineState.copy, persist=self._upload,
        )
        self.writer_lease = WriterLeases(writer_lease_s)
        self.last_lsn = manifest.disk_consistent_lsn
        self._durable_lsn = manifest.disk_consistent_lsn
        self._last_seqno = 0  # in the tenant log, of the newest batch ingested (0: none)
        self.open_memtable = Memtable(self.last_lsn + 1)
        self.frozen: list[Memtable] = []
        self.image_check: frozenset[str] = frozenset()  # layer set last found needing no image
        self._last_batch: tuple[int, int, int] | None = None
        self.applied_batch = manifest.last_batch  # the last numbered batch, at last_lsn
        self.durable_batch = manifest.last_batch  # the last numbered batch known durable
        self._files: dict[str, FileMeta] | None = None  # tree at last_lsn, built on first use
        self.relations_in_use: set[tuple[bytes, int]] = set()

    # --- identity and lineage ----------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def ancestor(self) -> Timeline | None:
        return self._ancestor

    @property
    def branch_lsn(self) -> int:
        return self._branch_lsn

    # The published state, never changed in place: a reader may keep what it got.

    @property
    def layers(self) -> list[Layer]:
        return self._state.current.layers

    @property
    def disk_consistent_lsn(self) -> int:
        return self._state.current.disk_consistent_lsn

    @property
    def gc_cutoff(self) -> int:
        return self._state.current.gc_cutoff

    @property
    def writer_epoch(self) -> int:
        return self._state.current.writer_epoch

    @property
    def durable_lsn(self) -> int:
        """The newest LSN acknowledged with every LSN before it (see the module docstring)."""
        with self._lock:
            if self._last_seqno and self._log.acknowledged_seqno >= self._last_seqno:
                return self.last_lsn  # confirmed since, maybe after its caller gave up
            return self._durable_lsn

    @property
    def files(self) -> dict[str, FileMeta]:
        """The file tree at ``last_lsn``, which ingest validates batches against.

        Built from the store on first use rather than at load: after a restart a
        branch's tree depends on its ancestor's log replay up to the branch point,
        and the log replays in order, so the ancestor is there by the first use.
        """
        with self._lock:
            if self._files is None:
                with self._reads.reading():
                    encoded = read_metas(self, self.last_lsn)
                self._files = {path: FileMeta.decode(raw) for path, raw in encoded.items()}
                self.relations_in_use = {
                    (meta.relation, meta.block_offset)
                    for meta in self._files.values() if meta.kind == FileKind.FILE
                }
            return self._files

    # --- ingest ---------------------------------------------------------------

    def ingest(self, batch: Batch, writer_epoch: int | None = None,
               record: bytearray | None = None) -> int:
        """Apply a batch atomically; returns its LSN once it is durable.

        ``record``: the batch as the writer encoded it (``common.ops``, its writer epoch
        ``writer_epoch``); the log stores it as it is, stamped with the time if it has none.

        With ``writer_epoch``, the batch is refused unless that is the timeline's
        current writer epoch: a writer fenced off by a newer attach cannot write.
        A numbered batch sent again is answered with the LSN it got, once durable,
        and not applied twice (``pageserver.applied_batch``).
        """
        with self._lock:
            if self.deleted:
                raise NotFoundError(f"timeline {self.timeline_id} was deleted")
            if writer_epoch is not None:
                self._check_writer_epoch(writer_epoch)
                if batch.writer_epoch != writer_epoch:
                    batch = replace(batch, writer_epoch=writer_epoch)
            resent = resent_lsn(self.applied_batch, batch.writer_epoch, batch.batch_id)
            if resent is not None:
                lsn, seqno = resent, self._last_seqno  # durable once its first sending is
            else:
                lsn = self.last_lsn + 1
                if not batch.timestamp_us:
                    batch = replace(batch, timestamp_us=now_us())
                    if record is not None:
                        stamp_record(record, batch.timestamp_us)
                effects = self._effects(batch, lsn)
                payload = encode_batch(batch) if record is None else bytes(record)
                seqno = self._log.append(LogRecord(self.timeline_id, lsn, payload))
                self._commit(lsn, batch, effects)
                self._last_seqno = seqno
        self._log.wait_acknowledged(seqno)
        with self._lock:
            self._durable_lsn = max(self._durable_lsn, lsn)
            if self.applied_batch.lsn <= self.durable_lsn:
                self.durable_batch = self.applied_batch
        return lsn

    def replay(self, lsn: int, batch: Batch) -> None:
        """Re-apply a batch from the ingest log after a restart."""
        with self._lock:
            if lsn <= self.last_lsn:
                return
            if lsn != self.last_lsn + 1:
                raise CorruptionError(
                    f"ingest log of timeline {self.timeline_id} skips from LSN "
                    f"{self.last_lsn} to {lsn}"
                )
            self._commit(lsn, batch, self._effects(batch, lsn))
            self._durable_lsn = lsn
            self.durable_batch = self.applied_batch

    def _effects(self, batch: Batch, lsn: int) -> Effects:
        def read_latest(relation: Relation, block: int) -> bytes:
            # The open memtable holds the newest versions: a page rewritten since it
            # opened (a WAL page, at every commit) is found there without the read
            # path's search of every source (rfcs/0031).
            found = self.open_memtable.get_page(relation, block, self.last_lsn)
            if found is not None:
                return found[1] if found[1] is not None else bytes(PAGE_SIZE)
            return read_pages(self, relation, np.array([block]), self.last_lsn)[0]

        def stored(relation: Relation, lo: int, hi: int) -> np.ndarray:
            return stored_blocks(self, relation, lo, hi, self.last_lsn)

        applier = BatchApplier(
            self.files, self.relations_in_use, read_latest, stored, lsn, batch.timestamp_us
        )
        return applier.apply(batch)

    def _commit(self, lsn: int, batch: Batch, effects: Effects) -> None:
        memtable, files = self.open_memtable, self.files
        for (relation, block), value in effects.pages.items():
            memtable.put_page(relation, block, lsn, value)
        for path, meta in effects.metas.items():
            old = files.pop(path, None)
            if old is not None and old.kind == FileKind.FILE:
                self.relations_in_use.discard((old.relation, old.block_offset))
            memtable.put_meta(path, lsn, meta.encode() if meta is not None else None)
        for path, meta in effects.metas.items():
            if meta is not None:
                files[path] = meta
                if meta.kind == FileKind.FILE:
                    self.relations_in_use.add((meta.relation, meta.block_offset))
        memtable.add_batch(lsn, batch.wal_lsn, batch.timestamp_us)
        self._last_batch = (lsn, batch.wal_lsn, batch.timestamp_us)
        if batch.batch_id:
            self.applied_batch = AppliedBatch(batch.writer_epoch, batch.batch_id, lsn)
        self.last_lsn = lsn

    # --- reads ------------------------------------------------------------------

    def read_sources(self) -> list[Memtable | Layer]:
        with self._lock:
            return [self.open_memtable, *reversed(self.frozen), *self.layers]

    def resolve_read_lsn(self, lsn: int | None) -> int:
        """The LSN a read at ``lsn`` (None: latest) uses, after checking it is readable."""
        durable = self.durable_lsn
        if lsn is None:
            return durable
        if lsn < 0 or lsn > durable:
            raise OutOfRangeError(
                f"LSN {lsn} is beyond the last durable LSN {durable} of timeline "
                f"{self.timeline_id}"
            )
        self.check_above_gc_cutoff(lsn)
        return lsn

    def check_above_gc_cutoff(self, lsn: int) -> None:
        owner: Timeline = self
        while lsn < owner.branch_lsn and owner.ancestor is not None:
            owner = owner.ancestor
        if lsn < owner.gc_cutoff and lsn not in owner.retain_lsns():
            raise BelowGcCutoffError(
                f"LSN {lsn} is below the GC cutoff {owner.gc_cutoff} of timeline "
                f"{owner.timeline_id}; that history was garbage-collected"
            )

    def oldest_readable_lsn(self) -> int:
        """The oldest LSN of this line of history (ancestors' included) that GC has kept
        readable; below it only the LSNs of ``retain_lsns`` are (the same rule as
        :meth:`check_above_gc_cutoff`)."""
        owner, upper = self, None  # ``owner`` holds this line's LSNs below ``upper``
        while owner.gc_cutoff <= owner.branch_lsn and owner.ancestor is not None:
            upper, owner = owner.branch_lsn, owner.ancestor
        floor = max(owner.gc_cutoff, owner.branch_lsn)
        return floor if upper is None else min(floor, upper)

    def retain_lsns(self) -> set[int]:
        """LSNs that child branches and checkpoints pin in this timeline."""
        return self._retain_lsns(self)

    def get_pages(self, relation: Relation, blocks: Sequence[int] | np.ndarray,
                  lsn: int | None = None) -> list[bytes]:
        array = np.asarray(blocks, dtype=np.int64)
        if array.size and (array.min() < 0 or array.max() > 0xFFFFFFFF):
            raise InvalidArgumentError("block numbers must be within 0..2**32-1")
        read_lsn = self.resolve_read_lsn(lsn)
        with self._reads.reading():
            return read_pages(self, relation, array, read_lsn)

    def get_page(self, relation: Relation, block: int, lsn: int | None = None) -> bytes:
        return self.get_pages(relation, [block], lsn)[0]

    def list_files(self, lsn: int | None = None) -> dict[str, FileMeta]:
        read_lsn = self.resolve_read_lsn(lsn)
        with self._lock:  # at the newest LSN, the tree ingest keeps (a mount's first call)
            if read_lsn == self.last_lsn and self._files is not None:
                return dict(sorted(self._files.items()))
        with self._reads.reading():
            encoded = read_metas(self, read_lsn)
        return {path: FileMeta.decode(raw) for path, raw in sorted(encoded.items())}

    def stat(self, path: str, lsn: int | None = None) -> FileMeta:
        path = normalize_path(path)
        read_lsn = self.resolve_read_lsn(lsn)
        with self._reads.reading():
            encoded = read_metas(self, read_lsn, [path])
        if path not in encoded:
            raise NotFoundError(f"no such file at LSN {read_lsn}: {path!r}")
        return FileMeta.decode(encoded[path])

    def read_file(self, path: str, offset: int = 0, length: int | None = None,
                  lsn: int | None = None) -> bytes:
        """Bytes of a file as of ``lsn``, like pread: short at the end of the file."""
        read_lsn = self.resolve_read_lsn(lsn)
        meta = self.stat(path, read_lsn)
        if meta.kind != FileKind.FILE:
            raise InvalidArgumentError(f"{path!r} is a directory")
        end = meta.size if length is None else min(meta.size, offset + length)
        if offset < 0 or offset >= end:
            return b""
        first, last = offset // PAGE_SIZE, (end - 1) // PAGE_SIZE
        blocks = np.arange(first, last + 1, dtype=np.int64) + meta.block_offset
        with self._reads.reading():
            pages = read_pages(self, Relation.from_bytes(meta.relation), blocks, read_lsn)
        data = b"".join(pages)
        start = offset - first * PAGE_SIZE
        return data[start : start + end - offset]

    def batch_history(self) -> np.ndarray:
        """(lsn, wal_lsn, timestamp_us) of every durable batch, ancestors' included."""
        parts: list[np.ndarray] = []
        if self._ancestor is not None:
            inherited = self._ancestor.batch_history()
            parts.append(inherited[inherited[:, 0] <= self._branch_lsn])
        with self._lock:
            layers = [layer for layer in self.layers if not layer.is_image]
            memtables = [*self.frozen, self.open_memtable]
            durable = self.durable_lsn
        with self._reads.reading():
            for layer in layers:
                with layer.reading() as reader:
                    parts.append(reader.batches())
        for memtable in memtables:
            if memtable.batches:
                parts.append(np.array(memtable.batches, dtype=np.uint64).reshape(-1, 3))
        history = np.concatenate(parts) if parts else np.empty((0, 3), dtype=np.uint64)
        history = history[history[:, 0] <= durable]
        return history[np.argsort(history[:, 0], kind="stable")]

    def last_batch(self) -> tuple[int, int, int]:
        """(lsn, wal_lsn, timestamp_us) of the newest batch, inherited ones included."""
        with self._lock:
            if self._last_batch is None:
                history = self.batch_history()
                last = history[-1].tolist() if len(history) else [0, 0, 0]
                self._last_batch = (int(last[0]), int(last[1]), int(last[2]))
            return self._last_batch

    def inherit_tree(self, ancestor: Timeline) -> None:
        """Seed the file tree of a new branch cut at its ancestor's newest LSN with the
        ancestor's, when built: the same tree, without reading every file's metadata
        back through history (which grows with the database)."""
        with ancestor._lock:
            if ancestor._files is None or ancestor.last_lsn != self.last_lsn:
                return
            files, in_use = dict(ancestor._files), set(ancestor.relations_in_use)
        with self._lock:
            if self._files is None:
                self._files, self.relations_in_use = files, in_use

    def inherit_last_batch(self, batch: tuple[int, int, int]) -> None:
        """Seed ``last_batch`` of a new branch cut at its parent's newest batch."""
        with self._lock:
            if self._last_batch is None:
                self._last_batch = batch

    def owned_bytes(self) -> int:
        """Bytes of the layer files this timeline owns (not its ancestors')."""
        with self._lock:
            return sum(layer.desc.size for layer in self.layers)

    def memtable_bytes(self) -> int:
        """Bytes of the versions not yet written as layers (open and frozen memtables)."""
        with self._lock:
            return self.open_memtable.size_bytes + sum(m.size_bytes for m in self.frozen)

    def logical_size(self) -> int:
        """Bytes of the relation files at the newest LSN, as PostgreSQL counts a cluster's
        size (``pg_database_size`` of each database and the shared catalogs): files under
        ``base/``, ``global/`` and ``pg_tblspc/``, never ``pg_wal`` or other state."""
        with self._lock:
            return sum(meta.size for path, meta in self.files.items()
                       if path.startswith(RELATION_DIRS))

    # --- flushing memtables into L0 layers -------------------------------------

    def freeze(self) -> bool:
        """Turn the open memtable into a frozen one; False if it was empty."""
        with self._lock:
            if not len(self.open_memtable):
                return False
            self.open_memtable.log_seqno = self._last_seqno
            self.open_memtable.last_batch = self.applied_batch
            self.frozen.append(self.open_memtable)
            self.open_memtable = Memtable(self.last_lsn + 1)
            return True

    def flush(self) -> None:
        """Write every frozen memtable as an L0 delta, upload it and the manifest."""
        with self._flush_lock:
            while True:
                with self._lock:
                    if not self.frozen or self.deleted:
                        return
                    memtable = self.frozen[0]
                self._log.wait_durable(memtable.log_seqno)
                summary = LayerSummary(LayerKind.DELTA, KEYSPACE_START, KEYSPACE_END,
                                       memtable.lsn_start, memtable.lsn_end)
                layer = self.write_layer(summary, memtable.sorted_pages(),
                                         memtable.sorted_metas(), memtable.batches, level=0)
                with self._state.change() as draft:
                    draft.state.layers = _with_layers(draft.state.layers, [layer])
                    draft.state.disk_consistent_lsn = memtable.lsn_end - 1
                    draft.state.last_batch = memtable.last_batch
                    draft.on_swap(lambda: self.frozen.pop(0))
                self._log.release(self.timeline_id, self.disk_consistent_lsn)

    def write_layer(
        self, summary: LayerSummary, pages: Iterable[PageEntry], metas: Iterable[MetaEntry],
        batches: Sequence[tuple[int, int, int]] = (), *, level: int, partial: bool = False,
    ) -> Layer:
        """Write a new layer file locally and upload it; the caller adds it to the set.
        ``partial``: an image of this timeline's own pages only (LayerDescriptor)."""
        kind = "image" if summary.kind == LayerKind.IMAGE else f"delta{level}"
        name = (f"{kind}-{summary.lsn_start:016x}-{summary.lsn_end:016x}-"
                f"{uuid.uuid4().hex[:12]}-{self._fence.generation:08x}")
        local_path = self._cache_dir / name
        local_path.parent.mkdir(parents=True, exist_ok=True)
        size = write_layer(local_path, summary, pages, metas, batches)
        desc = LayerDescriptor(name, summary.kind, summary.key_start, summary.key_end,
                               summary.lsn_start, summary.lsn_end, size, level, partial)
        layer = self._layer_handle(desc)
        self._storage.put(layer.remote_key, local_path.read_bytes())
        if self._layer_cache.in_place:
            local_path.unlink()  # read from the object itself: one copy on this disk
        else:
            self._layer_cache.added(layer)
        return layer

    def replace_layers(self, added: list[Layer], removed: list[Layer]) -> None:
        """Swap layers: publish a manifest with ``added``, then delete ``removed`` once
        no read that started before the swap can still use them."""
        gone = {id(layer) for layer in removed}
        with self._state.change() as draft:
            kept = [layer for layer in draft.state.layers if id(layer) not in gone]
            draft.state.layers = _with_layers(kept, added)
        with self._unpublished_lock:
            self._unpublished.extend(removed)
        self.delete_unpublished()

    @property
    def has_unpublished_layers(self) -> bool:
        """Whether layers taken out of the manifest still wait for reads to finish."""
        return bool(self._unpublished)

    def delete_unpublished(self) -> None:
        """Delete the layers taken out of the manifest, unless a read that may use them
        is still in flight after the wait: then they are kept for a later pass (the
        engine's next tick), never deleted under a reader."""
        with self._unpublished_lock:
            doomed = list(self._unpublished)
        if not doomed:
            return
        if not self._reads.barrier():
            log.warning("%s/%s: %d replaced layers wait for reads still in flight after "
                        "%g s; deleted later", self.tenant_id, self.timeline_id, len(doomed),
                        self._reads.wait_s)
            return
        self._storage.delete_many([layer.remote_key for layer in doomed])
        for layer in doomed:
            layer.remove_local()
        with self._unpublished_lock:
            self._unpublished = [layer for layer in self._unpublished if layer not in doomed]

    def scrub(self) -> int:
        """Delete the layer objects and cached files of this timeline that its manifest
        does not name (orphans of a flush or compaction whose publish failed, or of an
        older generation's); returns how many objects went. Skipped, returning 0, while a
        flush or compaction may be between uploading a layer and publishing it, or while
        the newest manifest version may be one memory does not know."""
        if not self._flush_lock.acquire(blocking=False):
            return 0
        try:
            if not self.compaction_lock.acquire(blocking=False):
                return 0
            try:
                return self._scrub_locked()
            finally:
                self.compaction_lock.release()
        finally:
            self._flush_lock.release()

    def _scrub_locked(self) -> int:
        if not self._manifests.settled or self.deleted:
            return 0
        prefix = layer_key(self.tenant_id, self.timeline_id, "")
        with self._lock, self._unpublished_lock:
            named = {layer.desc.name for layer in [*self.layers, *self._unpublished]}
        orphans = [key for key in self._storage.list(prefix)
                   if key.removeprefix(prefix) not in named]
        self._fence.check()  # a superseded page server deletes nothing
        if orphans:
            log.info("%s/%s: deleting %d layer objects no manifest names", self.tenant_id,
                     self.timeline_id, len(orphans))
            self._storage.delete_many(orphans)
        if self._cache_dir.is_dir():
            for path in self._cache_dir.iterdir():  # not a download in flight (".tmp")
                if path.name not in named and path.suffix != ".tmp" and path.is_file():
                    path.unlink(missing_ok=True)
                    self._layer_cache.forget(path)
        return len(orphans)

    def raise_gc_cutoff(self, cutoff: int) -> None:
        """Publish (durably) a GC cutoff of at least ``cutoff``: from then on reads,
        branches and checkpoints below it are refused. GC does this before it chooses."""
        if cutoff <= self.gc_cutoff:
            return
        with self._state.change() as draft:
            draft.state.gc_cutoff = max(draft.state.gc_cutoff, cutoff)

    def _layer_handle(self, desc: LayerDescriptor) -> Layer:
        return Layer(desc, self._cache_dir / desc.name, self._storage,
                     layer_key(self.tenant_id, self.timeline_id, desc.name), self._layer_cache)

    # --- durable description -------------------------------------------------

    def _manifest_of(self, state: TimelineState) -> TimelineManifest:
        return TimelineManifest(
            self.timeline_id,
            self._ancestor.timeline_id if self._ancestor is not None else None,
            self._branch_lsn, state.disk_consistent_lsn, state.gc_cutoff, self.created_at_us,
            [layer.desc for layer in sorted(state.layers, key=lambda layer: layer.desc.name)],
            state.writer_epoch, state.last_batch,
        )

    def persist(self) -> None:
        """Upload the manifest of the current state (a new timeline's first)."""
        with self._state.change():
            pass

    def _upload(self, state: TimelineState) -> None:
        if self.deleted:
            return
        self._manifests.publish(self._manifest_of(state).to_json())

    def attach_writer(self, holder: str = "", force: bool = False) -> int:
        """Make a new writer the only one allowed to ingest; durable before it returns.

        Refused while another holder's lease is live, unless ``force`` (which fences it).
        """
        with self._state.change() as draft:
            self.writer_lease.check_free(holder, force)
            draft.state.writer_epoch += 1
            epoch = draft.state.writer_epoch
            draft.on_swap(lambda: self.writer_lease.grant(holder, epoch))
        return epoch

    def renew_writer(self, holder: str, epoch: int) -> None:
        """The writer's heartbeat; a fenced writer learns here that it lost the branch."""
        with self._lock:
            self._check_writer_epoch(epoch)
            self.writer_lease.renew(holder, epoch)

    def _check_writer_epoch(self, epoch: int) -> None:
        if epoch != self.writer_epoch:
            raise FailedPreconditionError(
                f"writer epoch {epoch} is stale: the branch's writer is now epoch "
                f"{self.writer_epoch} (another compute attached)")

    def close(self) -> None:
        with self._lock:
            layers = list(self.layers)
        for layer in layers:
            layer.close()

    def __repr__(self) -> str:
        return f"Timeline({self.tenant_id}/{self.timeline_id})"


def _with_layers(layers: list[Layer], added: list[Layer]) -> list[Layer]:
    return sorted([*layers, *added], key=_read_order)


def _read_order(layer: Layer) -> tuple[int, bool, bytes]:
    """Newest LSN end first; on a tie images first, so they settle keys before deltas."""
    return (-layer.lsn_end, not layer.is_image, layer.desc.key_start)
