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
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from common.errors import (
    CorruptionError,
    FailedPreconditionError,
    NotFoundError,
    StrataError,
)
from pageserver.config import LogSettings
from pageserver.fencing import Fence
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


@dataclass
class _Live:
    """A chunk in the store whose records are not all in flushed layers."""

    seq: int
    pending: dict[str, int] = field(default_factory=dict)  # timeline -> max unreleased lsn


class TenantLog:
    """The log of one tenant at one generation; thread-safe."""

    def __init__(self, storage: RemoteStorage, tenant_id: str, fence: Fence,
                 settings: LogSettings | None = None) -> None:
        self._storage = storage
        self._tenant_id = tenant_id
        self._fence = fence
        self._settings = settings or LogSettings()
        self._cond = threading.Condition()
        self._pending: list[tuple[int, str, int, bytes]] = []  # (seqno, timeline, lsn, framed)
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

    # --- attach ------------------------------------------------------------------

    def claim(self) -> int:
        """Create the fence chunk after every existing chunk: from here on the previous
        owner can create none. Returns the number of the fence."""
        seq = max((log_seq_of(key) for key in self._list()), default=0) + 1
        generation = self._fence.generation
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
            self._pending.append((self._seqno, record.timeline_id, record.lsn, framed))
            self._pending_bytes += len(framed)
            return self._seqno

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
                    self._fence.check()
                    if self._closed:
                        raise FailedPreconditionError(
                            f"the log of tenant {self._tenant_id!r} is closed")
                    now = time.monotonic()
                    if not self._uploading and now >= self._retry_at:
                        self._uploading = True
                        break
                    if now >= deadline:
                        raise NotDurableError(
                            f"tenant {self._tenant_id!r}: the object store has not confirmed "
                            f"the batch yet{self._last_failure}; it stays queued, retry")
                    wake = deadline if self._uploading else min(deadline, self._retry_at)
                    self._cond.wait(max(wake - now, 0.001))
            try:
                self._upload()
            finally:
                with self._cond:
                    self._uploading = False
                    self._cond.notify_all()

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

    def stats(self) -> LogStats:
        with self._cond:
            return LogStats(len(self._live), self._pending_bytes, self._uploads, self._failures)

    def close(self) -> None:
        """Try once more to make what is queued durable, then refuse everything."""
        if not self._fence.tripped:
            self.sync()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # --- internals ----------------------------------------------------------------

    def _upload(self) -> None:
        """Create the next chunk from the queued records (the caller is the only one
        uploading); on failure, back off and leave them queued."""
        with self._cond:
            taken: list[tuple[int, str, int, bytes]] = []
            size = 0
            for entry in self._pending:
                if taken and size + len(entry[3]) > self._settings.chunk_bytes:
                    break
                taken.append(entry)
                size += len(entry[3])
            seq = self._next_seq
        if not taken:
            return
        generation = self._fence.generation
        key = log_chunk_key(self._tenant_id, seq)
        try:
            if self._storage.put_if_absent(key, encode_chunk(generation, seq,
                                                             [e[3] for e in taken])):
                landed = len(taken)
            else:
                landed = self._landed_before(seq)
        except (RemoteStorageError, NotFoundError) as exc:
            with self._cond:
                self._failures += 1
                self._last_failure = f" (last error: {exc})"
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, _BACKOFF_MAX_S)
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
