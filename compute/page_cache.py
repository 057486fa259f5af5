"""The compute's local page cache: bounded, on local disk, reusable across restarts.

The branch view (``compute.view.BranchView``) keeps the pages of the branch it
serves here. Pages are ``PAGE_SIZE`` (8 KB) and keyed by ``PageKey = (relation
bytes, block)``, where the relation bytes are the 13 bytes of
``common.keys.Relation.to_bytes()``.

Storage: one file of fixed-size slots (``capacity`` slots of 8 KB, mapped with
``numpy.memmap``) and an in-memory index (a dict key -> slot, plus per-slot
state, CLOCK reference bits and write versions). ``get``/``put`` are a dict
lookup and one 8 KB copy into or out of the mapping, under one lock.

States of a cached page:

- CLEAN: identical to the page server's durable copy. The only evictable state.
- DIRTY: written by the compute, not known durable on the page server. Never evicted.

Versions make acknowledgements safe against later writes. Every ``put_dirty``
returns a new version from one global, strictly increasing counter (so a page
that is discarded and written again never reuses a version). The caller keeps
that version with the write in its pending queue and, once the page server has
made the write durable, passes it to ``end_flush(versions)``: a version made
durable marks its page CLEAN unless the page was written again since, in which
case it stays DIRTY until its newer version is acknowledged. A write that is
not acknowledged (a failed flush, to be resent) needs no call: its page stays
DIRTY.

Eviction is CLOCK (second chance) over the slots, among CLEAN pages only: a hit
sets the slot's reference bit; the hand sweeps windows of slots with numpy,
clears the bits it passes and evicts CLEAN slots whose bit was already clear.
It evicts a small batch at a time (up to 32 pages for large caches, one for
small ones) so that the sweep cost is shared. If every slot is DIRTY,
``put_dirty`` raises ``CacheFullError`` (the caller then flushes and retries)
and ``put_clean`` does not cache the page.

Scan resistance: pages a sequential scan fetched are cached with ``scan=True``
and evicted first, oldest first, before CLOCK touches any other page; the read
they were fetched for does not count as a use, a second read makes them ordinary
pages. A scan larger than the cache thus cycles through the scan pages and leaves
the hot set alone.

Fetches that race with writes: a page fetched from the page server may be older
than the cache's knowledge by the time it arrives (the block was written,
flushed and evicted, or truncated, while the fetch was in flight). To make this
safe, take ``ticket = cache.fetch_ticket()`` before choosing the LSN to read at
and pass it to ``put_clean(key, page, ticket=ticket)``; the page is then
refused if the key was written or discarded after the ticket. ``put_clean``
never replaces a page that is already cached in any state: a DIRTY copy is
newer than the server's, and a CLEAN copy already equals the durable copy (the
compute is the branch's only writer).

Truncation and unlink: ``discard`` and ``discard_relation_from`` remove pages
in every state, DIRTY included. The caller's pending write queue owns
correctness there: it holds the writes and the truncate/unlink in order, and
ships them to the page server in that order, so dropping the cached copies
loses nothing. A later ``end_flush`` for a discarded page is ignored.

Disk: the slots file is sparse (made by extending its size), so it takes disk
only for slots ever written: it grows with what the cache holds, lowest slots
first. Slots freed by ``discard`` and ``discard_relation_from`` get their blocks
back at once (a punched hole); slots freed by eviction are reused at once, so they
keep theirs.

Persistence: ``close(stamp, keep_mb)`` with a ``CacheStamp`` (tenant, timeline,
LSN) and no DIRTY pages keeps at most ``keep_mb`` of CLEAN pages (those in the
lowest slots, which hold what was loaded first, such as what a start reads;
scan pages last; all of them with ``keep_mb=None``), punches a hole over every
other slot, flushes the mapping, then writes the index (keys, slots, a CRC32 of
each kept page) and the stamp to ``index.bin`` atomically (write a temporary
file, fsync, rename, fsync the directory); the index file has its own CRC32. A
close that keeps nothing (no stamp, DIRTY pages, or ``keep_mb=0``) deletes the
slots file: a stopped compute's cache costs disk for what it kept and nothing
more.

``PageCache.open`` consumes the index: it reads it and deletes it (and fsyncs
the directory) before serving anything, so a crash at any later point
leaves no index and the next open starts empty. The slots are reused only if
the index is intact, its stamp equals ``expected`` (same timeline and LSN:
nothing changed since) and the capacity matches; otherwise the stale files are
deleted. Reused pages are verified lazily: the first ``get`` of each checks its
CRC32, and a corrupt page is dropped and counted as a miss. A lock file
(``flock``) keeps two processes (or two opens) from sharing a directory.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import logging
import os
import struct
import threading
import zlib
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.durable import fsync_dir, write_durably
from common.keys import PAGE_SIZE, RELATION_BYTES, Relation
from common.sparse import punch_runs

__all__ = [
    "CacheFullError",
    "CacheLockedError",
    "CacheStamp",
    "CacheStats",
    "PageCache",
    "PageKey",
    "PageState",
    "drop_unsaved",
]

log = logging.getLogger(__name__)

PageKey = tuple[bytes, int]
"""(relation bytes, block number): 13 bytes of ``Relation.to_bytes()`` and a u32."""

MIB = 1024 * 1024

DATA_FILE = "pages.dat"
INDEX_FILE = "index.bin"
LOCK_FILE = "lock"

INDEX_MAGIC = b"STRPCIX1"
INDEX_FORMAT_VERSION = 1
# magic, format version, page size, capacity, entry count, lsn, tenant len, timeline len
_INDEX_HEADER = struct.Struct("<8sIIIIQHH")
_CRC = struct.Struct("<I")

# CLOCK sweeps at most this many slots per numpy step.
_SWEEP_WINDOW = 1024
# How many invalidations (writes of pages since evicted, discards, truncations)
# are remembered exactly for fetch tickets; older tickets are refused.
_INVALIDATION_MEMORY = 65536

_FREE = 0
_CLEAN = 1
_DIRTY = 2

# Scan marks of a slot: an ordinary page, a scan page not read yet, one read once.
_ORDINARY = 0
_SCAN_UNREAD = 1
_SCAN_READ = 2


class PageState(enum.IntEnum):
    """The state of a cached page."""

    CLEAN = _CLEAN
    DIRTY = _DIRTY


class CacheFullError(Exception):
    """Every slot holds a DIRTY page: flush, then retry the write."""


class CacheLockedError(Exception):
    """Another open page cache holds this directory."""


@dataclass(frozen=True)
class CacheStamp:
    """What a saved cache is valid for: one timeline at one durable LSN."""

    tenant: str
    timeline_id: str
    lsn: int


@dataclass(frozen=True)
class CacheStats:
    """Counters and occupancy of a page cache."""

    hits: int
    misses: int
    evictions: int
    corrupt: int  # reused pages whose CRC32 did not match (also counted as misses)
    clean: int
    dirty: int
    capacity: int  # slots
    bytes_used: int  # cached pages x PAGE_SIZE

    @property
    def pages(self) -> int:
        return self.clean + self.dirty


@dataclass
class _SavedIndex:
    stamp: CacheStamp
    capacity: int
    keys: list[PageKey]
    slots: list[int]
    crcs: list[int]


class PageCache:
    """A bounded, thread-safe cache of 8 KB pages in a memory-mapped file.

    Open with ``PageCache.open(directory, capacity_mb, expected)`` (or the
    constructor, which takes the same arguments). The cache has
    ``capacity_mb * 1 MiB // 8192`` slots; fractions of a MB are allowed (tests
    use a few slots). See the module docstring for the states, how writes
    become clean and persistence.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        capacity_mb: float,
        expected: CacheStamp | None = None,
    ) -> None:
        capacity = int(capacity_mb * MIB) // PAGE_SIZE
        if capacity < 1:
            raise ValueError(f"capacity_mb must give at least one slot, got {capacity_mb}")
        self._dir = Path(directory)
        self._capacity = capacity
        self._lock = threading.Lock()
        self._closed = False

        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _acquire_dir_lock(self._dir / LOCK_FILE)
        try:
            saved = _consume_index(self._dir)
            data_path = self._dir / DATA_FILE
            size = capacity * PAGE_SIZE
            reuse = (
                saved is not None
                and expected is not None
                and saved.stamp == expected
                and saved.capacity == capacity
                and data_path.is_file()
                and data_path.stat().st_size == size
            )
            if not reuse:
                saved = None
                with contextlib.suppress(FileNotFoundError):
                    data_path.unlink()
                fsync_dir(self._dir)
            self._data: np.memmap[Any, np.dtype[np.uint8]] = np.memmap(
                data_path, dtype=np.uint8, mode="r+" if reuse else "w+", shape=(capacity, PAGE_SIZE)
            )
            self._data_fd = os.open(data_path, os.O_RDWR | os.O_CLOEXEC)  # to punch holes
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.reused = saved is not None
        """True if this open reused the pages saved by the last clean close."""
        self._mv = self._data.data.cast("B")

        # Per-slot metadata. State and reference bits are bytearrays (fast scalar
        # access from Python) with numpy views on the same memory for the sweep.
        self._state_buf = bytearray(capacity)
        self._state: npt.NDArray[np.uint8] = np.frombuffer(self._state_buf, dtype=np.uint8)
        self._ref_buf = bytearray(capacity)
        self._ref: npt.NDArray[np.uint8] = np.frombuffer(self._ref_buf, dtype=np.uint8)
        self._scan = bytearray(capacity)  # _ORDINARY, _SCAN_UNREAD or _SCAN_READ
        self._scan_order: deque[tuple[int, PageKey]] = deque()  # scan pages, oldest first
        self._keys: list[PageKey | None] = [None] * capacity
        self._version: list[int] = [0] * capacity  # version of the last put_dirty, 0 if none
        self._index: dict[PageKey, int] = {}
        self._by_rel: dict[bytes, set[int]] = {}
        self._free: list[int] = []
        self._hand = 0
        self._batch = max(1, min(32, capacity // 256))

        # Lazy verification of reused pages: expected CRC32 per slot.
        self._unverified = bytearray(capacity)
        self._crc: list[int] = [0] * capacity

        self._seq = 0  # global version / invalidation counter
        # Oldest first (OrderedDict: popping the oldest entry of a dict is not O(1)).
        self._gone: OrderedDict[PageKey, int] = OrderedDict()  # key -> seq of last write/discard
        self._cuts: OrderedDict[bytes, tuple[int, int]] = OrderedDict()  # rel -> (seq, first)
        self._ticket_floor = 0  # every forgotten invalidation has a seq <= this

        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._corrupt = 0
        self._n_clean = 0
        self._n_dirty = 0

        used: set[int] = set()
        if saved is not None:
            for key, slot, crc in zip(saved.keys, saved.slots, saved.crcs, strict=True):
                self._index[key] = slot
                self._keys[slot] = key
                self._state_buf[slot] = _CLEAN
                self._by_rel.setdefault(key[0], set()).add(key[1])
                self._unverified[slot] = 1
                self._crc[slot] = crc
                used.add(slot)
            self._n_clean = len(saved.keys)
        # Pop from the end: hand out low slots first.
        self._free = [slot for slot in range(capacity - 1, -1, -1) if slot not in used]

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        capacity_mb: float,
        expected: CacheStamp | None = None,
    ) -> PageCache:
        """Open the cache in ``directory``, reusing saved pages only if stamped ``expected``."""
        return cls(directory, capacity_mb, expected)

    def __enter__(self) -> PageCache:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.close(None)

    # ------------------------------------------------------------------ reads

    @property
    def capacity(self) -> int:
        """The number of 8 KB slots."""
        return self._capacity

    @property
    def directory(self) -> Path:
        return self._dir

    def get(self, key: PageKey) -> bytes | None:
        """The cached page, or None (a miss). A hit refreshes the page's recency."""
        with self._lock:
            self._check_open()
            slot = self._index.get(key)
            if slot is None:
                self._misses += 1
                return None
            if self._unverified[slot] and not self._verified(slot, key):
                self._misses += 1
                return None
            off = slot * PAGE_SIZE
            page = bytes(self._mv[off : off + PAGE_SIZE])
            self._use(slot)
            self._hits += 1
            return page

    def read_run(self, relation: bytes, first: int, count: int, out: memoryview,
                 skip: int = 0) -> list[int]:
        """Copy the cached pages of blocks ``first``..``first + count - 1`` of ``relation``
        into ``out`` under one lock, counting hits; the positions (0..count-1) of the
        pages not cached.

        Page ``i`` goes to ``out[i * PAGE_SIZE - skip:]``, clipped to ``out``: a read that
        starts ``skip`` bytes into its first page and ends inside its last one gets exactly
        its bytes, with no page object and no copy but the one into ``out``.
        """
        missing: list[int] = []
        size = len(out)
        with self._lock:
            self._check_open()
            index, mv, unverified = self._index, self._mv, self._unverified
            scan, ref = self._scan, self._ref_buf
            at = -skip
            for position, block in enumerate(range(first, first + count)):
                key = (relation, block)
                slot = index.get(key)
                if slot is not None and unverified[slot] and not self._verified(slot, key):
                    slot = None
                if slot is None:
                    missing.append(position)
                else:
                    lo, hi = (at, at + PAGE_SIZE) if at >= 0 and at + PAGE_SIZE <= size \
                        else (max(at, 0), min(at + PAGE_SIZE, size))
                    off = slot * PAGE_SIZE + lo - at
                    out[lo:hi] = mv[off : off + hi - lo]
                    if scan[slot] == _SCAN_UNREAD:  # as _use: a scan page's first read
                        scan[slot] = _SCAN_READ
                    else:
                        scan[slot] = _ORDINARY
                        ref[slot] = 1
                at += PAGE_SIZE
            self._misses += len(missing)
            self._hits += count - len(missing)
        return missing

    def _verified(self, slot: int, key: PageKey) -> bool:
        """Check a reused page's CRC32 on its first read; a corrupt one is dropped."""
        self._unverified[slot] = 0
        off = slot * PAGE_SIZE
        if zlib.crc32(self._mv[off : off + PAGE_SIZE]) == self._crc[slot]:
            return True
        log.warning("page cache: reused page %r failed its CRC32; dropped", key)
        self._corrupt += 1
        self._remove(slot)
        return False

    def absent(self, keys: Iterable[PageKey]) -> list[PageKey]:
        """The keys of ``keys`` not cached (not counted as hits or misses), under one lock."""
        with self._lock:
            index = self._index
            return [key for key in keys if key not in index]

    def _use(self, slot: int) -> None:
        """A read of the page: a scan page's first read is not a use, its second one is."""
        mark = self._scan[slot]
        if mark == _SCAN_UNREAD:
            self._scan[slot] = _SCAN_READ
            return
        self._scan[slot] = _ORDINARY
        self._ref_buf[slot] = 1

    def peek(self, key: PageKey) -> bytes | None:
        """The cached page or None, without counting, refreshing or verifying it."""
        with self._lock:
            self._check_open()
            slot = self._index.get(key)
            if slot is None:
                return None
            off = slot * PAGE_SIZE
            return bytes(self._mv[off : off + PAGE_SIZE])

    def contains(self, key: PageKey) -> bool:
        """Whether ``key`` is cached (does not count as a hit or a miss)."""
        with self._lock:
            return key in self._index

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._index

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    def state(self, key: PageKey) -> PageState | None:
        """The state of a cached page, or None if it is not cached."""
        with self._lock:
            slot = self._index.get(key)
            return None if slot is None else PageState(self._state_buf[slot])

    def version(self, key: PageKey) -> int | None:
        """The write version of a cached page (0 if never written here), or None."""
        with self._lock:
            slot = self._index.get(key)
            return None if slot is None else self._version[slot]

    def written(self, keys: Iterable[PageKey]) -> set[PageKey]:
        """The keys of ``keys`` cached with a write of the compute's (version > 0), under
        one lock: a fetch of such a page may have brought back an older copy."""
        with self._lock:
            index, version = self._index, self._version
            return {key for key in keys if (slot := index.get(key)) is not None
                    and version[slot]}

    def dirty_keys(self) -> list[PageKey]:
        """The keys of the DIRTY pages, in slot order."""
        with self._lock:
            return self._keys_in_state(_DIRTY)

    def stats(self) -> CacheStats:
        with self._lock:
            pages = self._n_clean + self._n_dirty
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                corrupt=self._corrupt,
                clean=self._n_clean,
                dirty=self._n_dirty,
                capacity=self._capacity,
                bytes_used=pages * PAGE_SIZE,
            )

    # ----------------------------------------------------------------- writes

    def fetch_ticket(self) -> int:
        """A token to take before fetching a page from the page server.

        Pass it to ``put_clean``: the fetched page is refused if its key was
        written or discarded after the ticket was taken.
        """
        with self._lock:
            return self._seq

    def put_clean(
        self, key: PageKey, page: bytes | bytearray | memoryview, ticket: int | None = None,
        scan: bool = False,
    ) -> bool:
        """Cache a page fetched from the page server (identical to its durable copy).

        ``scan``: fetched by a sequential scan, hence evicted before other pages.

        Returns True if the page was stored. Returns False, storing nothing, if
        ``key`` is already cached in any state (a DIRTY copy is newer; a CLEAN
        one already equals the durable copy), if ``ticket`` is given and the
        key was written or discarded since it was taken, or if every slot
        holds a DIRTY page.
        """
        _check_key_page(key, page)
        with self._lock:
            self._check_open()
            return self._put_clean(key, page, ticket, scan)

    def put_clean_many(
        self, keys: Sequence[PageKey], pages: Sequence[bytes | bytearray | memoryview],
        ticket: int | None = None, scan: bool = False,
    ) -> int:
        """``put_clean`` of each key and page under one lock (a fetch's pages, copied
        straight from the buffer they arrived in); returns how many were stored."""
        if len(keys) != len(pages):
            raise ValueError(f"{len(keys)} keys for {len(pages)} pages")
        for key, page in zip(keys, pages, strict=True):
            _check_key_page(key, page)
        with self._lock:
            self._check_open()
            # Nothing was written or discarded since the ticket: no page can be stale.
            fresh = ticket is None or ticket >= self._seq
            index, free, mv, order = self._index, self._free, self._mv, self._scan_order
            stored = 0
            for key, page in zip(keys, pages, strict=True):
                if key in index or (not fresh and self._is_stale(key, ticket or 0)):
                    continue
                if not free:
                    self._reclaim()
                    if not free:
                        break  # every slot holds a DIRTY page
                slot = free.pop()
                off = slot * PAGE_SIZE
                mv[off : off + PAGE_SIZE] = page
                self._insert(key, slot, _CLEAN)
                self._version[slot] = 0
                if scan:
                    self._scan[slot] = _SCAN_UNREAD
                    order.append((slot, key))
                stored += 1
            self._n_clean += stored
            if len(self._scan_order) > 2 * self._capacity:
                self._prune_scan_order()
            return stored

    def _put_clean(self, key: PageKey, page: bytes | bytearray | memoryview,
                   ticket: int | None, scan: bool) -> bool:
        if key in self._index:
            return False
        if ticket is not None and self._is_stale(key, ticket):
            return False
        slot = self._allocate()
        if slot is None:
            return False
        off = slot * PAGE_SIZE
        self._mv[off : off + PAGE_SIZE] = page
        self._insert(key, slot, _CLEAN)
        self._n_clean += 1
        self._version[slot] = 0
        if scan:
            self._scan[slot] = _SCAN_UNREAD
            self._scan_order.append((slot, key))
            if len(self._scan_order) > 2 * self._capacity:
                self._prune_scan_order()
        return True

    def put_dirty(self, key: PageKey, page: bytes | bytearray | memoryview) -> int:
        """Store a page written by the compute (DIRTY); returns its new write version.

        Raises ``CacheFullError`` if the key is not cached and every slot holds
        a DIRTY page.
        """
        _check_key_page(key, page)
        with self._lock:
            self._check_open()
            slot = self._index.get(key)
            if slot is None:
                slot = self._allocate()
                if slot is None:
                    raise CacheFullError(f"all {self._capacity} cache slots hold unflushed pages")
                self._insert(key, slot, _DIRTY)
                self._n_dirty += 1
            else:
                if self._state_buf[slot] == _CLEAN:
                    self._n_clean -= 1
                    self._n_dirty += 1
                    self._state_buf[slot] = _DIRTY
                self._unverified[slot] = 0
            off = slot * PAGE_SIZE
            self._mv[off : off + PAGE_SIZE] = page
            self._ref_buf[slot] = 1
            self._scan[slot] = _ORDINARY  # written here: part of the working set
            self._seq += 1
            self._version[slot] = self._seq
            return self._seq

    # ------------------------------------------------------------------ flush

    def end_flush(self, versions: dict[PageKey, int]) -> int:
        """The page server made these versions durable: mark such pages CLEAN.

        A page becomes CLEAN only if it still holds the acknowledged version; a
        page written again since stays DIRTY, a discarded one is ignored.
        Returns the number of pages marked CLEAN.
        """
        done = 0
        with self._lock:
            self._check_open()
            for key, version in versions.items():
                slot = self._index.get(key)
                if (
                    slot is None
                    or self._version[slot] != version
                    or self._state_buf[slot] != _DIRTY
                ):
                    continue
                self._state_buf[slot] = _CLEAN
                self._n_dirty -= 1
                self._n_clean += 1
                done += 1
        return done

    # ---------------------------------------------------------------- discard

    def discard(self, keys: Iterable[PageKey]) -> int:
        """Remove pages in any state (unlink/truncate); returns how many were cached.

        DIRTY pages are dropped too: the caller's pending write queue holds
        those writes and the truncate/unlink in order, so it, not the cache,
        owns correctness there. In-flight fetches of these keys are
        refused by ``put_clean`` (see ``fetch_ticket``).
        """
        freed: list[int] = []
        with self._lock:
            self._check_open()
            self._seq += 1
            for key in keys:
                self._forget(key, self._seq)
                slot = self._index.get(key)
                if slot is not None:
                    self._remove(slot)
                    freed.append(slot)
            self._give_back(freed)
        return len(freed)

    def discard_relation_from(self, relation: bytes | Relation, first_block: int = 0) -> int:
        """Remove every cached page of ``relation`` with block >= ``first_block``.

        For truncation (``first_block`` = the new length in blocks) and unlink
        (``first_block=0``); pages in any state are removed, as for ``discard``.
        Returns how many were cached.
        """
        rel = relation if isinstance(relation, bytes) else relation.to_bytes()
        freed: list[int] = []
        with self._lock:
            self._check_open()
            self._seq += 1
            old = self._cuts.pop(rel, None)
            self._cuts[rel] = (self._seq, first_block if old is None else min(old[1], first_block))
            if len(self._cuts) > _INVALIDATION_MEMORY:
                _, (seq, _) = self._cuts.popitem(last=False)
                self._ticket_floor = max(self._ticket_floor, seq)
            blocks = self._by_rel.get(rel)
            if blocks:
                for block in [b for b in blocks if b >= first_block]:
                    slot = self._index[(rel, block)]
                    self._remove(slot)
                    freed.append(slot)
            self._give_back(freed)
        return len(freed)

    # ------------------------------------------------------------ persistence

    def close(self, stamp: CacheStamp | None = None, keep_mb: float | None = None) -> bool:
        """Close the cache; with a stamp and no unflushed pages, save up to ``keep_mb``
        of it (None: every CLEAN page) for reuse and give the rest of the disk back.

        Returns True if the index was saved (the next ``open`` with
        ``expected == stamp`` will reuse the kept pages). With DIRTY pages, or
        nothing to keep, nothing is saved and the slots file is deleted (the next
        open starts empty). Idempotent.
        """
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            saved = False
            try:
                if stamp is not None and self._n_dirty:
                    log.warning("page cache: not saved: %d dirty pages at close", self._n_dirty)
                elif stamp is not None:
                    kept = self._kept_slots(keep_mb)
                    if kept.size:
                        self._give_back_all_but(kept)
                        self._data.flush()
                        self._save_index(stamp, kept)
                        saved = True
                return saved
            finally:
                self._mv.release()
                del self._data  # unmaps the slots file (no other references exist)
                os.close(self._data_fd)
                if not saved:
                    # No index names these pages: nothing will ever read them again.
                    (self._dir / DATA_FILE).unlink(missing_ok=True)
                os.close(self._lock_fd)

    def _kept_slots(self, keep_mb: float | None) -> npt.NDArray[np.intp]:
        """The CLEAN slots a close keeps, in slot order: all of them, or the lowest
        ``keep_mb`` of them, ordinary pages before scan pages. Slots are handed out lowest
        first, so the lowest hold what the compute loaded first: what its start read
        (kept by the last close, reused at the same slots), which the next start reads
        again."""
        clean = np.flatnonzero(self._state == _CLEAN)
        if keep_mb is None:
            return clean
        limit = max(0, int(keep_mb * MIB) // PAGE_SIZE)
        if clean.size <= limit:
            return clean
        scan = np.frombuffer(self._scan, dtype=np.uint8)[clean] != _ORDINARY
        order = np.lexsort((clean, scan))  # the last key sorts first
        return np.sort(clean[order[:limit]])

    def _give_back(self, slots: list[int]) -> None:
        """Punch holes over freed slots: their blocks go back to the filesystem."""
        if slots:
            punch_runs(self._data_fd, sorted(slots), PAGE_SIZE)

    def _give_back_all_but(self, kept: npt.NDArray[np.intp]) -> None:
        """Punch holes over every slot but ``kept``: the file takes disk for them only."""
        others = np.ones(self._capacity, dtype=bool)
        others[kept] = False
        punch_runs(self._data_fd, np.flatnonzero(others).tolist(), PAGE_SIZE)

    def _save_index(self, stamp: CacheStamp, kept: npt.NDArray[np.intp]) -> None:
        slots = kept.astype(np.uint32)
        keys = [self._keys[int(s)] for s in slots]
        rels = b"".join(k[0] for k in keys if k is not None)
        blocks = np.fromiter(
            (k[1] for k in keys if k is not None), dtype=np.uint32, count=len(keys)
        )
        crcs = np.fromiter(
            (zlib.crc32(self._mv[int(s) * PAGE_SIZE : (int(s) + 1) * PAGE_SIZE]) for s in slots),
            dtype=np.uint32,
            count=len(slots),
        )
        tenant = stamp.tenant.encode()
        timeline = stamp.timeline_id.encode()
        body = b"".join(
            [
                _INDEX_HEADER.pack(
                    INDEX_MAGIC,
                    INDEX_FORMAT_VERSION,
                    PAGE_SIZE,
                    self._capacity,
                    len(keys),
                    stamp.lsn,
                    len(tenant),
                    len(timeline),
                ),
                tenant,
                timeline,
                slots.astype("<u4").tobytes(),
                blocks.astype("<u4").tobytes(),
                crcs.astype("<u4").tobytes(),
                rels,
            ]
        )
        body += _CRC.pack(zlib.crc32(body))
        write_durably(self._dir / INDEX_FILE, body)

    # -------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("page cache is closed")

    def _keys_in_state(self, state: int) -> list[PageKey]:
        keys = self._keys
        out: list[PageKey] = []
        for slot in np.flatnonzero(self._state == state).tolist():
            key = keys[slot]
            assert key is not None
            out.append(key)
        return out

    def _is_stale(self, key: PageKey, ticket: int) -> bool:
        if ticket < self._ticket_floor:
            return True
        seq = self._gone.get(key)
        if seq is not None and seq > ticket:
            return True
        cut = self._cuts.get(key[0])
        return cut is not None and cut[0] > ticket and key[1] >= cut[1]

    def _forget(self, key: PageKey, seq: int) -> None:
        """Remember that ``key`` changed at ``seq`` (for fetch tickets)."""
        gone = self._gone
        gone.pop(key, None)
        gone[key] = seq
        if len(gone) > _INVALIDATION_MEMORY:
            _, forgotten = gone.popitem(last=False)
            self._ticket_floor = max(self._ticket_floor, forgotten)

    def _insert(self, key: PageKey, slot: int, state: int) -> None:
        self._index[key] = slot
        self._keys[slot] = key
        self._state_buf[slot] = state
        self._ref_buf[slot] = 0
        self._unverified[slot] = 0
        blocks = self._by_rel.get(key[0])
        if blocks is None:
            self._by_rel[key[0]] = {key[1]}
        else:
            blocks.add(key[1])

    def _remove(self, slot: int) -> None:
        key = self._keys[slot]
        assert key is not None
        state = self._state_buf[slot]
        if state == _CLEAN:
            self._n_clean -= 1
        else:
            self._n_dirty -= 1
        del self._index[key]
        blocks = self._by_rel[key[0]]
        blocks.discard(key[1])
        if not blocks:
            del self._by_rel[key[0]]
        self._keys[slot] = None
        self._state_buf[slot] = _FREE
        self._ref_buf[slot] = 0
        self._scan[slot] = _ORDINARY
        self._unverified[slot] = 0
        self._free.append(slot)

    def _allocate(self) -> int | None:
        """A free slot, evicting CLEAN pages if needed; None if all are DIRTY."""
        if not self._free:
            self._reclaim()
            if not self._free:
                return None
        return self._free.pop()

    def _evict(self, slot: int) -> None:
        key = self._keys[slot]
        assert key is not None
        version = self._version[slot]
        if version:
            # The page was written here; a fetch ticket older than that write
            # must not bring back the previous content.
            self._forget(key, version)
        self._remove(slot)
        self._evictions += 1

    def _is_scan_page(self, slot: int, key: PageKey) -> bool:
        return self._keys[slot] == key and self._scan[slot] != _ORDINARY

    def _prune_scan_order(self) -> None:
        """Drop entries of slots that no longer hold their scan page."""
        self._scan_order = deque(entry for entry in self._scan_order
                                 if self._is_scan_page(*entry))

    def _reclaim(self) -> None:
        """Evict scan pages, oldest first; else CLOCK: evict up to ``self._batch`` CLEAN
        pages, sweeping windows with numpy."""
        if self._n_clean == 0:
            return
        order = self._scan_order
        while order and not self._free:
            slot, key = order.popleft()
            if self._is_scan_page(slot, key) and self._state_buf[slot] == _CLEAN:
                self._evict(slot)
        if self._free:
            return
        cap = self._capacity
        want = min(self._batch, self._n_clean)
        found = 0
        hand = self._hand
        # Two revolutions always suffice: the first clears every reference bit.
        budget = 2 * cap + _SWEEP_WINDOW
        while found < want and budget > 0:
            end = min(hand + _SWEEP_WINDOW, cap)
            clean = self._state[hand:end] == _CLEAN
            ref = self._ref[hand:end]
            candidates = np.flatnonzero(clean & (ref == 0))
            need = want - found
            if candidates.size >= need:
                stop = int(candidates[need - 1]) + 1
                ref[:stop][clean[:stop]] = 0
                victims = (candidates[:need] + hand).tolist()
                next_hand = hand + stop
            else:
                ref[clean] = 0
                victims = (candidates + hand).tolist()
                next_hand = end
            for slot in victims:
                self._evict(slot)
            found += len(victims)
            budget -= next_hand - hand
            hand = 0 if next_hand >= cap else next_hand
        self._hand = hand


def _check_key_page(key: PageKey, page: bytes | bytearray | memoryview) -> None:
    if len(page) != PAGE_SIZE:
        raise ValueError(f"a page is {PAGE_SIZE} bytes, got {len(page)}")
    if len(key[0]) != RELATION_BYTES or not 0 <= key[1] <= 0xFFFFFFFF:
        raise ValueError(f"bad page key {key!r}")


def _acquire_dir_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CacheLockedError(f"page cache directory {path.parent} is in use") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def drop_unsaved(directory: Path) -> bool:
    """Delete the slots file of a cache that no process has open and that was not saved
    (its process was killed): no open would reuse it, yet it holds disk until one.
    True if a file was deleted."""
    try:  # never created here: the cache's owner makes the lock file
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # open in a live process
        if (directory / INDEX_FILE).exists():
            return False
        try:
            (directory / DATA_FILE).unlink()
        except FileNotFoundError:
            return False
        return True
    finally:
        os.close(fd)


def _consume_index(directory: Path) -> _SavedIndex | None:
    """Read and delete the saved index; None if absent or invalid.

    The index is deleted (and the deletion made durable) before the cache
    serves anything, so a crash from here on can never lead to reuse.
    """
    path = directory / INDEX_FILE
    tmp = directory / (INDEX_FILE + ".tmp")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = None
    removed = False
    for stale in (path, tmp):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed = True
    if removed:
        fsync_dir(directory)
    if raw is None:
        return None
    try:
        return _parse_index(raw)
    except ValueError as exc:
        log.warning("page cache: saved index ignored: %s", exc)
        return None


def _parse_index(raw: bytes) -> _SavedIndex:
    if len(raw) < _INDEX_HEADER.size + _CRC.size:
        raise ValueError("index file too short")
    (crc,) = _CRC.unpack_from(raw, len(raw) - _CRC.size)
    body = memoryview(raw)[: len(raw) - _CRC.size]
    if zlib.crc32(body) != crc:
        raise ValueError("index file checksum mismatch")
    magic, fmt, page_size, capacity, count, lsn, tlen, llen = _INDEX_HEADER.unpack_from(body)
    if magic != INDEX_MAGIC or fmt != INDEX_FORMAT_VERSION or page_size != PAGE_SIZE:
        raise ValueError("index file of another format")
    pos = _INDEX_HEADER.size
    tenant = bytes(body[pos : pos + tlen]).decode()
    pos += tlen
    timeline = bytes(body[pos : pos + llen]).decode()
    pos += llen
    if len(body) != pos + count * (12 + RELATION_BYTES) or count > capacity:
        raise ValueError("index file size does not match its entry count")
    arrays = np.frombuffer(body, dtype="<u4", count=3 * count, offset=pos).reshape(3, count)
    slots = arrays[0].tolist()
    blocks = arrays[1].tolist()
    crcs = arrays[2].tolist()
    pos += 12 * count
    if count and (max(slots) >= capacity or len(set(slots)) != count):
        raise ValueError("index file slots out of range or repeated")
    rels = bytes(body[pos:])
    keys = [(rels[i * RELATION_BYTES : (i + 1) * RELATION_BYTES], blocks[i]) for i in range(count)]
    if len(set(keys)) != count:
        raise ValueError("index file keys repeated")
    return _SavedIndex(CacheStamp(tenant, timeline, lsn), capacity, keys, slots, crcs)
