"""A tenant's ingest log in the object store: a batch is acknowledged once the store holds it.

Every ingest batch is appended here and acknowledged only when a chunk holding it is
created in the object store (``tenants/<t>/log/<seq>``, ``pageserver/log_chunk.py``);
the page server's disk holds nothing that an acknowledgement depends on. Memtables keep
recent batches in memory until a flush writes them as layers; after a crash or on a new
page server, ``replay()`` hands back what the layers do not hold yet.

Group commit: batches appended while a chunk is being created wait for the next one, so
one create covers every batch that arrived meanwhile, of every branch of the tenant. One
chunk is in flight at a time; the caller that finds none in flight uploads for everyone
(no thread hand-off on the way to the acknowledgement).

Fencing: chunks are numbered without gaps and created with create-if-absent. A page
server attaching the tenant lists the chunks and creates an empty *fence* chunk at the
next number (``claim``): the previous owner's next chunk collides with it, the previous
owner sees another generation in it, and its fence (``pageserver/fencing.py``) trips.
Fences and the newest chunk are never deleted, so a stale owner can never create its
next chunk in a gap left by deletion.

Failures: a create that fails is retried, with backoff, by the next waiter (or the
engine's tick); a caller waits up to ``ack_timeout_s`` and then gets UNAVAILABLE (its
batch stays queued and is made durable by a later create). A create that failed with an
error may have landed: the retry then finds the name taken by our own generation and
counts the records it holds as durable. Appends are refused (UNAVAILABLE) while more
than ``max_pending_bytes`` wait, so memory stays bounded while the store is down.

Release: each chunk tracks, per timeline, the highest LSN it holds that no flushed layer
covers yet; a chunk is deleted when nothing of it is pending (never the newest).

Local durability (a tenant's choice, ``common/durability.py``): a batch is acknowledged
once fdatasync'ed in the tenant's local log file (``pageserver/local_log.py``; group
commit: the waiter that finds no fsync in flight writes and fsyncs every batch queued),
and an uploader thread turns what is fsynced into the same chunks, in order. The store is
kept at most ``max_lag_s`` behind: a batch is acknowledged only while (a) the oldest
fsynced batch not yet in the store was fsynced at most ``max_lag_s`` ago, and (b) a store
call that proved this generation current (a chunk created, or the next chunk's name found
free) started at most ``max_lag_s`` ago; the uploader probes the next name when it has
nothing to upload. So a page server that another one superseded at time T acknowledges
nothing after T + ``max_lag_s``, and what it acknowledged in between is what the tenant's
RPO allows to lose. Otherwise callers wait and get NotDurableError, as in store mode. The
uploader uploads only batches already in the local file, so the store's log is always a
prefix of the local one; at attach, ``pageserver/local_recovery.py`` uploads the rest
unless another generation wrote the log since.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from common.durability import Durability
from common.errors import (
    CorruptionError,
    FailedPreconditionError,
    NotFoundError,
    StrataError,
)
from pageserver.config import LogSettings
from pageserver.fencing import Fence, SupersededError
from pageserver.local_log import LocalLog
from pageserver.local_recovery import recover_local_log
from pageserver.log_chunk import Chunk, LogRecord, decode_chunk, encode_chunk, encode_record
from pageserver.manifest import log_chunk_key, log_prefix, log_seq_of
from pageserver.remote import RemoteStorage, RemoteStorageError
from pageserver.remote.retry import CALL_POLICY, create_once, read_verified, retrying

log = logging.getLogger(__name__)

_BACKOFF_MIN_S = 0.05
_REPLAY_WINDOW = 16  # chunks read ahead in parallel at attach
_BACKOFF_MAX_S = 5.0


class NotDurableError(StrataError):
    """The object store has not confirmed a batch in time, or too much waits for it:
    retry (UNAVAILABLE)."""


@dataclass(frozen=True)
class LogStats:
    """A snapshot for metrics: live chunks, bytes waiting, creates done and failed."""

    chunks: int
    pending_bytes: int
    uploads: int
    upload_failures: int
    local_lag_s: float = 0.0  # local durability: age of the oldest batch not yet stored


@dataclass
class _Live:
    """A chunk in the store whose records are not all in flushed layers."""

    seq: int
    pending: dict[str, int] = field(default_factory=dict)  # timeline -> max unreleased lsn


_Entry = tuple[int, str, int, bytes]  # (seqno, timeline, lsn, framed)


class TenantLog:
    """The log of one tenant at one generation; thread-safe. ``local_dir``: where its local
    log lives, for local durability (None: never local)."""

    def __init__(self, storage: RemoteStorage, tenant_id: str, fence: Fence,
                 settings: LogSettings | None = None, local_dir: Path | None = None) -> None:
        self._storage = storage
        self._tenant_id = tenant_id
        self._fence = fence
        self._settings = settings or LogSettings()
        self._cond = threading.Condition()
        self._pending: list[_Entry] = []
        self._pending_bytes = 0
        self._seqno = 0  # of the last appended record
        self._durable = 0  # every record up to this seqno is in the store
        self._next_seq = 0  # the next chunk's number; 0 until claimed
        self._uploading = False
        self._retry_at = 0.0
        self._backoff = _BACKOFF_MIN_S
        self._uploads = 0
        self._failures = 0
        self._last_failure = ""
        self._closed = False
        self._live: dict[int, _Live] = {}  # chunk seq -> what it still holds, in seq order
        self._newest = 0  # the newest chunk in the store (kept: see the module docstring)
        self._acked = 0  # every record up to this seqno was acknowledged to its caller
        # Local durability:
        self._durability = Durability()
        self._local_dir = local_dir
        self._local: LocalLog | None = None
        self._local_broken = ""  # why the local log failed; acknowledgements wait for the store
        self._unwritten: list[_Entry] = []  # appended, not yet in the local log
        self._syncing = False  # a waiter is writing and fsyncing the local log
        self._fsynced = 0  # every record up to this seqno is stored or fsynced locally
        self._synced_at: deque[tuple[int, float]] = deque()  # (last seqno, when) per fsync
        self._confirmed_at = 0.0  # start of the newest store call proving we are current
        self._uploader: threading.Thread | None = None

    # --- attach ------------------------------------------------------------------

    def claim(self) -> int:
        """Create the fence chunk after every existing chunk: from here on the previous
        owner can create none. Returns the number of the fence.

        A local log left by an earlier generation on this disk is first uploaded, or
        dropped if another generation wrote the log since (``local_recovery``)."""
        if self._local_dir is not None:
            recover_local_log(self._storage, self._tenant_id, self._local_dir,
                              self._settings.chunk_bytes)
        seq = max((log_seq_of(key) for key in self._list()), default=0) + 1
        generation = self._fence.generation
        started = time.monotonic()
        while not create_once(self._storage, log_chunk_key(self._tenant_id, seq),
                              encode_chunk(generation, seq, []), CALL_POLICY):
            holder = self._read(seq)
            if holder.generation > generation:
                raise self._fence.trip(f"log chunk {seq} was created by generation "
                                       f"{holder.generation}")
            seq += 1  # the previous owner wrote on: fence after it
        with self._cond:
            self._next_seq = seq + 1
            self._newest = seq
            self._confirmed_at = started
        return seq

    def replay(self) -> Iterator[LogRecord]:
        """The records of every chunk before the fence, in log order; meant for attach,
        after ``claim``. Their chunks become live until ``release`` covers them. Chunks are
        read ``_REPLAY_WINDOW`` at a time in parallel (an S3 GET is a round trip each),
        and only that many are held in memory."""
        seqs = [seq for seq in map(log_seq_of, self._list()) if seq < self._next_seq - 1]
        with ThreadPoolExecutor(_REPLAY_WINDOW, "strata-replay") as pool:
            reads: deque[Future[Chunk]] = deque()
            for seq in seqs:
                reads.append(pool.submit(self._read, seq))
                if len(reads) >= _REPLAY_WINDOW:
                    yield from self._replayed(reads.popleft().result())
            while reads:
                yield from self._replayed(reads.popleft().result())

    def _replayed(self, chunk: Chunk) -> list[LogRecord]:
        """The records of a chunk read at attach, its chunk made live."""
        if chunk.records:
            live = _Live(chunk.seq)
            for record in chunk.records:
                live.pending[record.timeline_id] = max(
                    record.lsn, live.pending.get(record.timeline_id, 0))
            with self._cond:
                self._live[chunk.seq] = live
        return chunk.records

    # --- ingest --------------------------------------------------------------------

    def append(self, record: LogRecord) -> int:
        """Queue ``record`` (not durable yet) and return its sequence number; refused with
        NotDurableError while too much waits for the store."""
        framed = encode_record(record)
        with self._cond:
            self._check_usable()
            if self._pending_bytes and (self._pending_bytes + len(framed)
                                        > self._settings.max_pending_bytes):
                raise NotDurableError(
                    f"tenant {self._tenant_id!r}: {self._pending_bytes // 2**20} MiB of "
                    "batches wait for the object store to confirm them; retry later")
            self._seqno += 1
            entry = (self._seqno, record.timeline_id, record.lsn, framed)
            self._pending.append(entry)
            self._pending_bytes += len(framed)
            if self._local_active():
                self._unwritten.append(entry)
            return self._seqno

    def wait_acknowledged(self, seqno: int, timeout_s: float | None = None) -> None:
        """Return once the record ``seqno`` may be acknowledged: in store mode once it is in
        the store (``wait_durable``); in local mode once it is fsynced in the local log and
        the store is within the tenant's max lag. NotDurableError after the timeout (the
        record stays queued); SupersededError once another page server took the tenant."""
        deadline = time.monotonic() + (self._settings.ack_timeout_s if timeout_s is None
                                       else timeout_s)
        while True:
            with self._cond:
                taken = self._next_local_step(seqno, deadline)
            if taken is None:
                return
            if not taken:  # not (or no longer) local: acknowledged once stored
                self.wait_durable(seqno, max(deadline - time.monotonic(), 0.0))
                return
            self._write_local(taken)

    def _next_local_step(self, seqno: int, deadline: float) -> list[_Entry] | None:
        """Under the lock: None if ``seqno`` is acknowledged, [] if it must be stored
        first, else the records this caller is to write and fsync (it leads)."""
        while True:
            if self._durable >= seqno:
                self._acked = max(self._acked, seqno)
                return None
            self._check_usable()
            if not self._local_active():
                return []
            now = time.monotonic()
            if self._fsynced >= seqno:
                if self._within_lag(now):
                    self._acked = max(self._acked, self._fsynced)
                    return None
                if now >= deadline:
                    raise NotDurableError(
                        f"tenant {self._tenant_id!r}: the object store is more than "
                        f"{self._durability.max_lag_s:g} s behind this page server's local "
                        f"log{self._last_failure}; the batch stays queued, retry")
            elif not self._syncing:
                if not self._unwritten:
                    return []  # appended before the tenant turned local: to the store
                self._syncing = True
                taken, self._unwritten = self._unwritten, []
                return taken
            self._cond.wait(max(deadline - now, 0.001))

    def _write_local(self, taken: list[_Entry]) -> None:
        """Append ``taken`` to the local log and fsync it (as the group's leader). A disk
        that fails it leaves acknowledgements to the store for this generation: after a
        failed fsync the kernel may have dropped the pages, so nothing more is trusted to it."""
        local = self._local
        try:
            assert local is not None
            local.append([entry[3] for entry in taken], taken[-1][0])
        except OSError as exc:
            log.error("tenant %s: the local log failed (%s); acknowledging after the "
                      "object store from now on", self._tenant_id, exc)
            with self._cond:
                self._local_broken = str(exc)
                self._syncing = False
                self._cond.notify_all()
            return
        with self._cond:
            self._fsynced = max(self._fsynced, taken[-1][0])
            self._synced_at.append((taken[-1][0], time.monotonic()))
            self._syncing = False
            self._cond.notify_all()

    def _within_lag(self, now: float) -> bool:
        """Whether the store is within the max lag (under the lock): see the module docstring."""
        lag = self._durability.max_lag_s
        if now - self._confirmed_at > lag:
            return False
        oldest = self._oldest_unstored_at()
        return oldest is None or now - oldest <= lag

    def _oldest_unstored_at(self) -> float | None:
        """When the oldest fsynced record not yet in the store was fsynced (under the lock)."""
        while self._synced_at and self._synced_at[0][0] <= self._durable:
            self._synced_at.popleft()
        return self._synced_at[0][1] if self._synced_at else None

    def _local_active(self) -> bool:
        return self._durability.local and not self._local_broken and self._local is not None

    def wait_durable(self, seqno: int, timeout_s: float | None = None) -> None:
        """Return once every record up to ``seqno`` is in the store; uploads for everyone
        while no one else does. NotDurableError after the timeout (the record stays
        queued); SupersededError once another page server took the tenant."""
        deadline = time.monotonic() + (self._settings.ack_timeout_s if timeout_s is None
                                       else timeout_s)
        while True:
            with self._cond:
                while True:
                    if self._durable >= seqno:
                        return
                    self._check_usable()
                    now = time.monotonic()
                    if not self._uploading and now >= self._retry_at and self._uploadable():
                        self._uploading = True
                        break
                    if now >= deadline:
                        raise NotDurableError(
                            f"tenant {self._tenant_id!r}: the object store has not confirmed "
                            f"the batch yet{self._last_failure}; it stays queued, retry")
                    backing_off = not self._uploading and self._retry_at > now
                    wake = min(deadline, self._retry_at) if backing_off else deadline
                    self._cond.wait(max(wake - now, 0.001))
            self._run_upload(self._upload)

    def _uploadable(self) -> bool:
        """Whether a record waits that may be uploaded now (under the lock): in local mode
        only what the local log holds, so the store's log stays a prefix of it."""
        return bool(self._pending) and (not self._local_active()
                                        or self._pending[0][0] <= self._fsynced)

    def _run_upload(self, task: Callable[[], None]) -> None:
        """Run ``task`` as the only uploader (``_uploading`` set by the caller), then let
        the others in and give back the local log's space that is stored."""
        try:
            task()
        finally:
            with self._cond:
                self._uploading = False
                self._cond.notify_all()
        self._reclaim_local()

    def sync(self) -> None:
        """Try once to make everything appended durable (the engine's tick retries here
        what callers that gave up left queued)."""
        with self._cond:
            last = self._seqno
        if last > self._durable:
            with contextlib.suppress(NotDurableError):
                self.wait_durable(last, timeout_s=0.0)

    # --- release ------------------------------------------------------------------

    def release(self, timeline_id: str, lsn: int) -> None:
        """Records of the timeline up to ``lsn`` are in flushed layers: delete the chunks
        left with nothing pending."""
        with self._cond:
            for live in self._live.values():
                if live.pending.get(timeline_id, lsn + 1) <= lsn:
                    del live.pending[timeline_id]
        self._delete_released()

    def forget_timeline(self, timeline_id: str) -> None:
        """The timeline was deleted: none of its records is needed any more."""
        with self._cond:
            for live in self._live.values():
                live.pending.pop(timeline_id, None)
        self._delete_released()

    @property
    def durable_seqno(self) -> int:
        """Every record up to this sequence number is in the store."""
        return self._durable

    @property
    def acknowledged_seqno(self) -> int:
        """Every record up to this sequence number is acknowledged: in the store, or (local
        durability) fsynced on this disk with the store within the max lag."""
        return max(self._durable, self._acked)

    def stats(self) -> LogStats:
        with self._cond:
            oldest = self._oldest_unstored_at()
            lag = time.monotonic() - oldest if oldest is not None else 0.0
            return LogStats(len(self._live), self._pending_bytes, self._uploads,
                            self._failures, lag)

    # --- durability ---------------------------------------------------------------

    def set_durability(self, durability: Durability) -> None:
        """Acknowledge after the store (``store``) or after a local fsync (``local``) from
        now on. Turning local, every batch not yet stored is written to the local log first
        (it must hold all the store lacks); turning back, batches are acknowledged once
        stored, and the local log is deleted once all it holds is stored."""
        with self._cond:
            was_local = self._local_active()
            self._durability = durability
            if durability.local and self._local_dir is not None and not was_local \
                    and not self._local_broken:
                if self._local is None:
                    self._local = LocalLog(self._local_dir, self._fence.generation,
                                           self._settings.local_segment_bytes)
                self._unwritten = list(self._pending)
                self._fsynced = max(self._fsynced, self._durable)
                if self._uploader is None:
                    self._uploader = threading.Thread(
                        target=self._upload_loop, name=f"strata-upload-{self._tenant_id}",
                        daemon=True)
                    self._uploader.start()
            elif not durability.local:
                self._unwritten = []
            self._cond.notify_all()
        self._reclaim_local()

    @property
    def durability(self) -> Durability:
        return self._durability

    def _upload_loop(self) -> None:
        """The uploader of local mode: creates chunks from what the local log holds, in
        order, and probes the next chunk's name when idle, so the store stays current."""
        while True:
            with self._cond:
                task = self._next_upload_task()
                if task is None:
                    self._uploader = None
                    return
                self._uploading = True
            try:
                self._run_upload(task)
            except SupersededError:
                pass  # the fence is tripped: the next round ends the loop
            except Exception:
                log.exception("tenant %s: the log uploader failed; retrying", self._tenant_id)
                with self._cond:
                    self._backing_off(" (the uploader failed)")
            local = self._local
            if local is not None and self._local_active():
                try:
                    local.prepare_spare()
                except OSError as exc:
                    log.warning("tenant %s: could not prepare a local log segment (%s)",
                                self._tenant_id, exc)

    def _next_upload_task(self) -> Callable[[], None] | None:
        """Under the lock: wait until there is an upload or a probe to do (None: stop)."""
        while True:
            if self._closed or self._fence.tripped or not self._local_active():
                return None
            now = time.monotonic()
            probe_at = self._confirmed_at + self._durability.max_lag_s / 2
            if not self._uploading and now >= self._retry_at:
                if self._uploadable():
                    return self._upload
                if not self._pending and now >= probe_at:
                    return self._probe
            wake = max(self._retry_at, probe_at if not self._pending else now + 1.0)
            self._cond.wait(min(max(wake - now, 0.001), 1.0))

    def _probe(self) -> None:
        """Look for the next chunk: absent proves no one fenced this generation before the
        look started; another generation's trips the fence."""
        seq, started = self._next_seq, time.monotonic()
        key = log_chunk_key(self._tenant_id, seq)
        try:
            self._storage.get(key)
        except NotFoundError:
            with self._cond:
                self._confirmed_at = max(self._confirmed_at, started)
                self._retry_at, self._backoff = 0.0, _BACKOFF_MIN_S
            return
        except RemoteStorageError as exc:
            with self._cond:
                self._backing_off(f" (last error: {exc})")
            return
        holder = self._read(seq)
        if holder.generation != self._fence.generation:
            raise self._fence.trip(f"log chunk {seq} was created by generation "
                                   f"{holder.generation}")

    def _backing_off(self, failure: str) -> None:
        """Note a failed store call (under the lock): retry after a growing pause."""
        self._failures += 1
        self._last_failure = failure
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX_S)

    def _reclaim_local(self) -> None:
        """Give back local log segments whose records are all stored; delete the local log
        once it is no longer written and holds nothing the store lacks."""
        with self._cond:
            local = self._local
            if local is None:
                return
            done = not self._local_active() and not self._syncing and \
                self._durable >= local.last_seqno
            if done:
                self._local = None
            durable = self._durable
        try:
            if done:
                local.remove()
            else:
                local.reclaim(durable)
        except OSError as exc:
            log.warning("tenant %s: could not delete stored local log segments (%s)",
                        self._tenant_id, exc)

    def close(self) -> None:
        """Try once more to make what is queued durable, then refuse everything. A local
        log that still holds batches the store lacks is kept for the next start-up, unless
        another page server took the tenant: then they are lost (within the max lag)."""
        if not self._fence.tripped:
            with contextlib.suppress(SupersededError):
                self.sync()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            uploader = self._uploader
        if uploader is not None and uploader is not threading.current_thread():
            uploader.join()  # its upload in flight may store what sync could not
        with self._cond:
            while self._syncing:  # a waiter still writing to the local log
                self._cond.wait(1.0)
            local, self._local = self._local, None
            unstored = [entry for entry in self._pending if entry[0] <= self._fsynced]
        if local is None:
            return
        if self._fence.tripped and unstored:
            log.error("tenant %s: DROPPING %d batches (%d bytes) acknowledged after a local "
                      "fsync and not in the object store: another page server attached the "
                      "tenant; they were within its max lag of %g s (its RPO)",
                      self._tenant_id, len(unstored), sum(len(e[3]) for e in unstored),
                      self._durability.max_lag_s)
        if self._fence.tripped or not unstored:
            local.remove()
        else:
            log.warning("tenant %s: %d batches stay in the local log for the next start-up",
                        self._tenant_id, len(unstored))
            local.close()

    # --- internals ----------------------------------------------------------------

    def _upload(self) -> None:
        """Create the next chunk from the queued records (the caller is the only one
        uploading); on failure, back off and leave them queued."""
        with self._cond:
            taken: list[_Entry] = []
            size = 0
            limit = self._fsynced if self._local_active() else self._seqno
            for entry in self._pending:
                if entry[0] > limit or (taken and size + len(entry[3])
                                        > self._settings.chunk_bytes):
                    break
                taken.append(entry)
                size += len(entry[3])
            seq = self._next_seq
        if not taken:
            return
        generation = self._fence.generation
        key = log_chunk_key(self._tenant_id, seq)
        started = time.monotonic()
        try:
            if self._storage.put_if_absent(key, encode_chunk(generation, seq,
                                                             [e[3] for e in taken])):
                landed = len(taken)
            else:
                landed = self._landed_before(seq)
        except (RemoteStorageError, NotFoundError) as exc:
            with self._cond:
                self._backing_off(f" (last error: {exc})")
            log.warning("tenant %s: creating log chunk %d failed (%s); retrying",
                        self._tenant_id, seq, exc)
            return
        with self._cond:
            landed_entries = self._pending[:landed]  # the queue's head never changes here
            live = _Live(seq)
            for _, timeline, lsn, _ in landed_entries:
                live.pending[timeline] = max(lsn, live.pending.get(timeline, 0))
            del self._pending[:landed]
            self._pending_bytes -= sum(len(entry[3]) for entry in landed_entries)
            self._durable = landed_entries[-1][0]
            self._next_seq = seq + 1
            self._newest = seq
            self._live[seq] = live
            self._uploads += 1
            self._confirmed_at = max(self._confirmed_at, started)
            self._retry_at = 0.0
            self._backoff = _BACKOFF_MIN_S
            self._last_failure = ""

    def _landed_before(self, seq: int) -> int:
        """Chunk ``seq`` exists: if an earlier try of ours created it, how many of the
        queued records it holds; otherwise the tenant was taken over (SupersededError)."""
        holder = self._read(seq)
        if holder.generation != self._fence.generation or not holder.records:
            raise self._fence.trip(f"log chunk {seq} was created by generation "
                                   f"{holder.generation}")
        with self._cond:
            queued = len(self._pending)
        if len(holder.records) > queued:
            raise CorruptionError(f"log chunk {seq} of tenant {self._tenant_id!r} holds "
                                  f"{len(holder.records)} records, {queued} were queued")
        return len(holder.records)

    def _list(self) -> list[str]:
        prefix = log_prefix(self._tenant_id)
        return retrying(CALL_POLICY, f"list of {prefix!r}", lambda: self._storage.list(prefix))

    def _read(self, seq: int) -> Chunk:
        key = log_chunk_key(self._tenant_id, seq)
        return read_verified(self._storage, key, lambda data: decode_chunk(data, key, seq))

    def _delete_released(self) -> None:
        """Delete the chunks nothing is pending in, except the newest; as the current
        owner only (a superseded page server deletes nothing)."""
        with self._cond:
            if self._fence.tripped:
                return
            doomed = [seq for seq, live in self._live.items()
                      if not live.pending and seq != self._newest]
            for seq in doomed:
                del self._live[seq]
        if not doomed:
            return
        try:
            self._storage.delete_many([log_chunk_key(self._tenant_id, seq) for seq in doomed])
        except RemoteStorageError as exc:
            log.warning("tenant %s: could not delete released log chunks (%s); a later "
                        "attach replays and releases them", self._tenant_id, exc)

    def _check_usable(self) -> None:
        self._fence.check()
        if self._closed:
            raise FailedPreconditionError(f"the log of tenant {self._tenant_id!r} is closed")
