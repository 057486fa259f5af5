"""The storage engine: the tenants of one page server and bounded background work.

Start-up is the same after a clean stop, after a crash and on a new machine: every
tenant listed in ``attached.json`` is attached at a new generation (claimed in the
object store with create-if-absent), which fences its log and takes over its manifests
(``Tenant.attach``), and its log is replayed above each timeline's
``disk_consistent_lsn``. A listed tenant whose newest generation was claimed by another
page server since (or that we detached) moved away: it is dropped from the list, not
attached again, so a restart never steals it back. A tenant found superseded while
served is dropped the same way.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from common.durability import Durability
from common.durable import write_durably
from common.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    StrataError,
    TenantElsewhereError,
)
from common.names import is_reserved_tenant_name
from pageserver import gc
from pageserver.compaction import CompactionResult, compact, images_at_cutoff
from pageserver.config import EngineConfig
from pageserver.gc import GcResult
from pageserver.history import Window
from pageserver.layer_cache import LayerCache
from pageserver.local_log import remove_directory
from pageserver.local_recovery import discard_local_log
from pageserver.locations import Locations, load_or_create_id
from pageserver.manifest import tenant_prefix
from pageserver.remote import RemoteStorage
from pageserver.remote.retry import RetryPolicy, retrying
from pageserver.storage_history import StorageHistory, sample
from pageserver.tenant import Tenant, validate_name
from pageserver.timeline import Timeline

log = logging.getLogger(__name__)

ATTACH_POLICY = RetryPolicy(attempts=5, base_s=0.2, cap_s=5.0, deadline_s=60.0)
DETACH_HOLDER = "detach"  # the writer a forced detach takes every branch's slot for
WHEREABOUTS_TTL_S = 1.0  # how long an answer "tenant T moved to X" is reused before re-reading


@dataclass
class TimelineGcReport:
    """What GC did to one timeline and what keeps the rest."""

    timeline_id: str
    branches: list[str]  # naming it; none for a timeline kept for checkpoints or children
    result: gc.GcResult
    kept: gc.KeptBytes
    window: Window  # the history window its cutoff follows


@dataclass
class TenantGcResult:
    timelines: int = 0
    layers_removed: int = 0
    bytes_removed: int = 0
    reports: list[TimelineGcReport] = field(default_factory=list)


class Engine:
    """Owns every attached tenant of one page server."""

    def __init__(self, config: EngineConfig, storage: RemoteStorage, *,
                 address: str = "") -> None:
        self.config = config
        self.storage = storage
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.layer_cache = LayerCache(config.layer_cache_dir, storage, config.layer_cache_bytes)
        self.locations = Locations(storage, load_or_create_id(config.state_dir), address)
        self._departed: set[str] = set()  # detached, or moved away while we were down
        self._whereabouts: dict[str, tuple[float, TenantElsewhereError]] = {}
        self._detaching: set[str] = set()  # still listed in attached.json until flushed
        self._attached_path = config.state_dir / "attached.json"
        self._lock = threading.RLock()
        self._tenants: dict[str, Tenant] = {}
        self._pool = ThreadPoolExecutor(config.background_workers, "strata-bg")
        self._pending: dict[tuple[str, str, str], Future[None]] = {}
        self._stop = threading.Event()
        self.storage_history = StorageHistory(config.state_dir / "storage-history",
                                              config.storage_samples)
        for tenant_id in self._read_attached():
            if not self._moved_away(tenant_id):
                self._tenants[tenant_id] = self._attach(tenant_id)
        if self._departed:
            self._write_attached()
        self._ticker: threading.Thread | None = None
        if config.background_period_s > 0:
            self._ticker = threading.Thread(target=self._tick_loop, name="strata-tick",
                                            daemon=True)
            self._ticker.start()

    # --- tenants -------------------------------------------------------------------

    def create_tenant(self, tenant_id: str, durability: Durability | None = None) -> Tenant:
        """A new tenant with an empty ``main`` branch, acknowledged as ``durability`` says
        (default: once in the object store)."""
        validate_name("tenant", tenant_id)
        if is_reserved_tenant_name(tenant_id):
            raise InvalidArgumentError(
                f"tenant name {tenant_id!r} is reserved: a tenant's PostgreSQL role is named "
                "like it, and PostgreSQL keeps 'postgres' and names starting with 'pg_'")
        with self._lock:
            if tenant_id in self._tenants:
                raise AlreadyExistsError(f"tenant {tenant_id!r} already exists")
            if self.storage.list(tenant_prefix(tenant_id)):
                raise AlreadyExistsError(
                    f"tenant {tenant_id!r} already exists in {self.storage.describe()}; attach it"
                )
            tenant = Tenant(tenant_id, self.locations.claim(tenant_id), self.storage,
                            self.config, self.layer_cache)
            tenant.create(durability)
            self._tenants[tenant_id] = tenant
            self._write_attached()
        return tenant

    def attach_tenant(self, tenant_id: str, force: bool = False) -> Tenant:
        """Serve a tenant that exists in the object store (e.g. on a new machine).

        Refused while the page server holding it may still run (it registered, has not
        stopped cleanly and has not detached the tenant), unless ``force``: two page
        servers must not serve one tenant (rfcs/0001)."""
        validate_name("tenant", tenant_id)
        with self._lock:
            if tenant_id in self._tenants:
                return self._tenants[tenant_id]
            if tenant_id in self._detaching:
                raise FailedPreconditionError(f"tenant {tenant_id!r} is being detached")
            held = self.locations.newest(tenant_id)
            if held is not None and not force and self.locations.holder_may_be_running(held):
                raise FailedPreconditionError(
                    f"tenant {tenant_id!r}: {held.describe()}, which has not stopped or "
                    "detached it: detach it there first, or if that page server is gone "
                    "for good, attach with force")
            tenant = self._attach(tenant_id)
            self._tenants[tenant_id] = tenant
            self._departed.discard(tenant_id)
            self._whereabouts.pop(tenant_id, None)
            self._write_attached()
        return tenant

    def detach_tenant(self, tenant_id: str, force: bool = False) -> None:
        """Stop serving a tenant and keep every object, so another page server can attach it.

        The tenant leaves the served set first, so every later call on it (an ingest
        stream's next batch included) is answered UNAVAILABLE, "being detached"; its
        background work is stopped and waited for, every timeline is flushed to layers and
        manifests, and only then is it dropped from ``attached.json`` and its claim marked
        detached. Computes keep their writer epoch: they wait, then follow the tenant to
        the page server that attaches it next (rfcs/0014). With ``force`` every branch's
        writer slot is taken as well, which fences those computes instead. A batch that
        slipped in meanwhile is in the log, which the next attach replays."""
        with self._lock:
            tenant = self.tenant(tenant_id)
            del self._tenants[tenant_id]
            self._detaching.add(tenant_id)
            pending = [job for key, job in self._pending.items() if key[0] == tenant_id]
        timelines = [timeline for timeline in tenant.timelines.values() if not timeline.deleted]
        try:
            for job in pending:
                job.result()  # run() logs its failures and returns
            if force:
                for timeline in timelines:
                    timeline.attach_writer(DETACH_HOLDER, force=True)
            for timeline in timelines:
                timeline.freeze()
                timeline.flush()
        except BaseException:
            with self._lock:
                self._detaching.discard(tenant_id)
                self._tenants[tenant_id] = tenant
            raise
        with self._lock:
            self._detaching.discard(tenant_id)
            self._departed.add(tenant_id)
            self._write_attached()
        tenant.close()
        self.locations.mark_detached(tenant_id, tenant.generation)
        log.info("detached tenant %s (generation %d)", tenant_id, tenant.generation)

    def tenant(self, tenant_id: str) -> Tenant:
        """A tenant served here; NotFoundError if it never was, TenantElsewhereError
        (naming where it is now) if it left."""
        with self._lock:
            tenant = self._tenants.get(tenant_id)
            departed = tenant_id in self._departed or tenant_id in self._detaching
        if tenant is not None and not tenant.fence.tripped:
            return tenant
        if departed or tenant is not None:  # left, or superseded and not dropped yet
            raise self.elsewhere(tenant_id)
        raise NotFoundError(f"no tenant {tenant_id!r}")

    def elsewhere(self, tenant_id: str) -> TenantElsewhereError:
        """Where a tenant that left this page server is now, as the error to answer with:
        read from the newest claim in the store; an address found is reused for
        ``WHEREABOUTS_TTL_S`` (every call of a compute that has not followed yet asks)."""
        if tenant_id in self._detaching:
            return TenantElsewhereError(
                f"tenant {tenant_id!r} is being detached from this page server")
        now = time.monotonic()
        with self._lock:
            cached = self._whereabouts.get(tenant_id)
        if cached is not None and now - cached[0] < WHEREABOUTS_TTL_S:
            return cached[1]
        try:
            claim = self.locations.newest(tenant_id)
        except StrataError as exc:
            return TenantElsewhereError(
                f"tenant {tenant_id!r} left this page server; where it is now could not be "
                f"read from the object store: {exc}")
        if claim is None or claim.detached or not claim.address or \
                claim.pageserver_id == self.locations.pageserver_id:
            where = claim.describe() if claim is not None else "it has no claimed generation"
            error = TenantElsewhereError(
                f"tenant {tenant_id!r} is detached from this page server; {where}")
        else:
            error = TenantElsewhereError(
                f"tenant {tenant_id!r} moved to {claim.address}; {claim.describe()}",
                claim.address)
            with self._lock:  # "attached nowhere" is not kept: it ends with the next attach
                self._whereabouts[tenant_id] = (now, error)
        return error

    def _moved_away(self, tenant_id: str) -> bool:
        """At start-up: whether a listed tenant was claimed elsewhere or detached since."""
        claim = self.locations.moved_away(tenant_id)
        if claim is None:
            return False
        log.warning("tenant %s is not attached again: %s", tenant_id, claim.describe())
        discard_local_log(self.storage, tenant_id, self.config.local_log_dir / tenant_id,
                          "the tenant was attached elsewhere or detached since")
        self._departed.add(tenant_id)
        return True

    def incarnation(self, tenant_id: str) -> str | None:
        """The incarnation id of a tenant (see TenantManifest); None if it does not exist,
        TenantElsewhereError if it left this page server (tokens are checked against its
        incarnation where it is served now)."""
        try:
            return self.tenant(tenant_id).manifest.incarnation
        except NotFoundError:
            return None

    def tenants(self) -> list[str]:
        with self._lock:
            return sorted(self._tenants)

    def delete_tenant(self, tenant_id: str) -> None:
        """Remove a tenant and every object it owns."""
        tenant = self.tenant(tenant_id)
        with self._lock:
            del self._tenants[tenant_id]
            self._write_attached()
        tenant.reads.barrier()
        tenant.close()
        for timeline in list(tenant.timelines.values()):
            timeline.deleted = True
        self.storage.delete_prefix(tenant_prefix(tenant_id))  # its create journal too
        remove_directory(self.config.local_log_dir / tenant_id)
        self.storage_history.forget(tenant_id)
        cached = self.config.layer_cache_dir / tenant_id  # its downloaded layers too
        shutil.rmtree(cached, ignore_errors=True)
        self.layer_cache.forget_under(cached)

    def timeline(self, tenant_id: str, branch: str) -> Timeline:
        return self.tenant(tenant_id).branch(branch)

    def _attach(self, tenant_id: str) -> Tenant:
        """Attach a tenant from the store, again at a new generation after a store error
        (an attach is a few dozen store calls; one failing must not fail the start)."""
        def attempt() -> Tenant:
            if not Tenant.exists(self.storage, tenant_id):
                raise NotFoundError(
                    f"tenant {tenant_id!r} not found in {self.storage.describe()}")
            tenant = Tenant(tenant_id, self.locations.claim(tenant_id), self.storage,
                            self.config, self.layer_cache)
            tenant.attach()
            return tenant

        return retrying(ATTACH_POLICY, f"attach of tenant {tenant_id!r}", attempt)

    def _read_attached(self) -> list[str]:
        if not self._attached_path.exists():
            return []
        return list(json.loads(self._attached_path.read_text())["tenants"])

    def _write_attached(self) -> None:
        listed = sorted(self._tenants.keys() | self._detaching)  # until they are flushed
        write_durably(self._attached_path, json.dumps({"tenants": listed}).encode())

    # --- maintenance -------------------------------------------------------------

    def flush(self, tenant_id: str | None = None) -> None:
        """Freeze and flush every memtable (of one tenant, or all) now."""
        for timeline in self._timelines(tenant_id):
            timeline.freeze()
            timeline.flush()

    def compact(self, tenant_id: str, force: bool = False) -> CompactionResult:
        total = CompactionResult()
        for timeline in self._timelines(tenant_id):
            result = compact(timeline, self.config, force)
            total.l0_merged += result.l0_merged
            total.l1_written += result.l1_written
            total.images_written += result.images_written
        return total

    def gc(self, tenant_id: str, cutoff_lsn: int | None = None,
           at_us: int | None = None, *, explain: bool = False) -> TenantGcResult:
        """Collect every timeline of a tenant, each behind its own history window
        (``Tenant.timeline_windows``); ``cutoff_lsn`` overrides the windows. With
        ``explain``, a report per timeline says what keeps the layers that stay."""
        total = TenantGcResult()
        tenant = self.tenant(tenant_id)
        names = tenant.names_of_timelines() if explain else {}
        windows = tenant.timeline_windows()
        for timeline in self._timelines(tenant_id):
            window = windows.get(timeline.timeline_id, tenant.default_window())
            cutoff = cutoff_lsn if cutoff_lsn is not None else gc.pitr_cutoff(
                timeline, window.seconds, at_us
            )
            result = self._collect_at(timeline, cutoff)
            total.timelines += 1
            total.layers_removed += result.layers_removed
            total.bytes_removed += result.bytes_removed
            if explain:
                total.reports.append(TimelineGcReport(
                    timeline.timeline_id, names.get(timeline.timeline_id, []), result,
                    gc.explain(timeline, tenant.retained_points(timeline)), window))
        return total

    def _timelines(self, tenant_id: str | None) -> list[Timeline]:
        """The live timelines of one tenant, or of every tenant still ours (not superseded)."""
        if tenant_id:
            tenants = [self.tenant(tenant_id)]
        else:  # one snapshot: a tenant deleted or detached meanwhile is no error
            with self._lock:
                tenants = [t for t in self._tenants.values() if not t.fence.tripped]
        return [tl for tenant in tenants for tl in list(tenant.timelines.values())
                if not tl.deleted]

    def _submit(self, key: tuple[str, str, str], job: Callable[[], object]) -> None:
        """Run ``job`` in the background unless the same job is already queued."""
        with self._lock:
            pending = self._pending.get(key)
            if (pending is not None and not pending.done()) or key[0] not in self._tenants:
                return

            def run() -> None:
                try:
                    job()
                except Exception:
                    log.exception("background %s failed", key)

            self._pending[key] = self._pool.submit(run)

    def _tick_loop(self) -> None:
        last_gc = last_sample = 0.0
        while not self._stop.wait(self.config.background_period_s):
            self.tick(gc_due=self._gc_due(last_gc))
            if self._gc_due(last_gc):
                last_gc = time.monotonic()
            if time.monotonic() - last_sample >= self.config.storage_sample_period_s:
                last_sample = time.monotonic()
                with self._lock:
                    tenants = list(self._tenants)
                for tenant_id in tenants:
                    self._submit((tenant_id, "", "sample"),
                                 partial(self.sample_storage, tenant_id))

    def sample_storage(self, tenant_id: str) -> None:
        """Add the tenant's bytes now to its storage history (``storage_history``)."""
        try:
            tenant = self.tenant(tenant_id)
            taken = sample(tenant)
        except StrataError:  # deleted, detached or moved meanwhile
            return
        with self._lock:
            if self._tenants.get(tenant_id) is not tenant:
                return  # deleted while sampled: its history went with it
            self.storage_history.record(tenant_id, taken)

    def _gc_due(self, last_gc: float) -> bool:
        return time.monotonic() - last_gc >= self.config.gc_period_s

    def tick(self, gc_due: bool = False) -> None:
        """Schedule the background work that is due: log uploads callers gave up waiting
        for, flushes, compactions, GC; drop the tenants another page server took over."""
        with self._lock:
            tenants = list(self._tenants.values())
        for tenant in tenants:
            if tenant.fence.tripped:
                self._drop_superseded(tenant)
                continue
            stats = tenant.log.stats()
            if stats.pending_bytes:  # batches whose callers gave up waiting
                self._submit((tenant.tenant_id, "", "log"), tenant.log.sync)
            if stats.chunks > self.config.log.flush_after_chunks:
                for timeline in list(tenant.timelines.values()):
                    timeline.freeze()  # flushed below, releasing the log behind it
        windows = {t.tenant_id: t.timeline_windows() for t in tenants if gc_due}
        defaults = {t.tenant_id: t.default_window() for t in tenants if gc_due}
        for timeline in self._timelines(None):
            if gc_due and timeline.tenant_id not in windows:
                continue  # attached since the snapshot above: the next tick sees it
            ids = (timeline.tenant_id, timeline.timeline_id)
            memtable = timeline.open_memtable
            full = memtable.size_bytes >= self.config.memtable_bytes
            old = memtable.age_s() >= self.config.memtable_age_s
            if full or old:
                timeline.freeze()
            if timeline.frozen:
                self._submit((*ids, "flush"), timeline.flush)
            self._submit((*ids, "compact"), partial(compact, timeline, self.config))
            if timeline.has_unpublished_layers:
                self._submit((*ids, "delete"), timeline.delete_unpublished)
            if gc_due:
                window = windows[ids[0]].get(ids[1], defaults[ids[0]])
                self._submit((*ids, "gc"), partial(self._collect, timeline, window.seconds))
                self._submit((*ids, "scrub"), timeline.scrub)

    def _drop_superseded(self, tenant: Tenant) -> None:
        """Stop serving a tenant another page server attached: it is no longer ours to
        write, and a restart must not take it back."""
        with self._lock:
            if self._tenants.get(tenant.tenant_id) is not tenant:
                return
            del self._tenants[tenant.tenant_id]
            self._departed.add(tenant.tenant_id)
            self._write_attached()
        log.warning("tenant %s was attached by another page server; no longer serving it",
                    tenant.tenant_id)
        tenant.close()

    def _collect(self, timeline: Timeline, window_s: float) -> None:
        self._collect_at(timeline, gc.pitr_cutoff(timeline, window_s))

    def _collect_at(self, timeline: Timeline, cutoff: int) -> GcResult:
        """Raise the GC cutoff, write images at it where the deltas below can then go
        (compaction.images_at_cutoff), and delete what nothing reads any more."""
        cutoff = max(min(cutoff, timeline.disk_consistent_lsn), timeline.gc_cutoff)
        timeline.raise_gc_cutoff(cutoff)  # reads below it are refused from here
        images_at_cutoff(timeline, self.config, cutoff)
        return gc.collect(timeline, cutoff)

    def close(self, flush: bool = True) -> None:
        """Stop background work; with ``flush``, write and upload every memtable first."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._pool.shutdown(wait=True)
        if flush:
            self.flush()
        for tenant in list(self._tenants.values()):
            tenant.close()

