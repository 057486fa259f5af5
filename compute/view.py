"""A branch's PGDATA as the compute sees it: the file tree, the page cache and the ordered queue.

Every mutating operation is applied to the view under one lock and queued, in
that same order; ``flush`` ships the queue as ingest batches and returns only
once the page server made them durable. Every durable LSN is therefore a prefix
of the operation order: a state a real disk could have been in at a power cut
(see docs/DESIGN.md). A flush that fails part way keeps that property: the batches
the page server acknowledged are durable and are never sent again; the others
are kept, exactly as they were cut and numbered, for the next flush to send
first. Batches are numbered 1, 2, ... in the order they are cut, so the one that
was in flight when a flush failed goes out again under the same number, and the
page server tells from it whether that batch was applied already.

Adjacent writes to one file are queued as one write (an extent of up to 1 MB)
as soon as anything else is queued, so the order is the order they were applied
in. Once a batch's worth (16 MB) is queued, a background flush ships it while
PostgreSQL writes on (a bulk load then overlaps with the page server's ingest);
flushes run one at a time, so an fsync waits for it and ships the rest, and a
write past 256 MB queued flushes in the writer's thread: memory stays bounded.

Each queued operation carries the cache versions of the pages it wrote. When
its batch is acknowledged those versions are durable, and the pages that still
hold them become CLEAN (evictable); pages whose writes are not acknowledged yet
stay DIRTY, so the cache never forgets a write the page server does not have.

Reads are served from the page cache (dirty pages included) and, on a miss,
fetched in batches from the page server at its newest durable LSN. A relation
read sequentially is fetched ahead in the background, several 1 MB requests in
flight (``compute.prefetch``), into the cache as scan pages that are evicted
first; concurrent readers of a page share one fetch, and a write that races a
fetch wins over the page the fetch brings back.
Blocks of a file that the page server cannot know yet (a new file, or blocks
past a pending truncate) read as zeros until the operation that made them so
is durable.

No FUSE here: failures are ``OSError`` with an errno (ENOENT, EEXIST, ... for
the namespace; EIO when the page server is unreachable or refuses, with the
cause kept in ``failed``), which the FUSE adapter (``compute.shim``) answers.

A tenant at its storage quota is a full disk: a batch the quota refuses fails
its flush with ENOSPC (and stays queued, as any unacknowledged batch), and
while the page server last said the tenant is full, a write that would extend
a relation's file fails at once with ENOSPC, which PostgreSQL reports as
SQLSTATE 53100 (disk_full) and survives. Other files (the WAL) are not refused
here: PostgreSQL cannot survive failing to extend its WAL, so the page server
decides for them.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

from common.keys import PAGE_SIZE, ZERO_PAGE, Relation, path_slot
from common.ops import (
    Batch,
    Chmod,
    Create,
    FileKind,
    FileOp,
    Mkdir,
    Rename,
    Rmdir,
    Truncate,
    Unlink,
    Write,
)
from common.pages import blocks_for, cut_page, truncate_tail, write_slices
from compute.changed_span import changed_span
from compute.page_cache import CacheFullError, PageCache, PageKey
from compute.prefetch import MAX_AHEAD, InFlight, Prefetcher
from compute.wal import WalPositions, segment_start

log = logging.getLogger(__name__)
_T = TypeVar("_T")

MAX_BATCH_BYTES = 16 * 1024 * 1024  # split a flush into batches of about this much data
MAX_PENDING_BYTES = 256 * 1024 * 1024  # a write past this much queued data flushes the queue
# (in the writer's thread); from MAX_BATCH_BYTES on, a background flush ships it early
MAX_EXTENT_BYTES = 1024 * 1024  # adjacent writes to one file ship as one Write up to this
PREFETCH_THREADS = 8  # background read-ahead requests in flight, all relations together
PageData = bytes | bytearray | memoryview  # a fetched page: its bytes, or a view into a reply


class PageServerError(Exception):
    """A page read or a batch failed for good (unreachable, or refused): the view answers EIO."""


class StorageFullError(PageServerError):
    """The tenant's storage quota refused a batch: the view answers ENOSPC."""


class PageSource(Protocol):
    """Where pages missing from the cache come from (``compute.remote.PageReader``)."""

    def get_pages(self, relation: Relation, blocks: list[int]) -> Sequence[PageData]:
        """The newest durable images of ``blocks`` (views into one buffer, or bytes);
        raises PageServerError."""
        ...


class BatchSink(Protocol):
    """Where the queue goes (``compute.remote.BatchWriter``): one batch at a time, in order."""

    storage_full: bool
    """Whether the last acknowledgement said the tenant uses all of its storage quota."""

    def write(self, batch: Batch) -> int:
        """Make ``batch`` (numbered by the view) durable and return its LSN; raises
        PageServerError (StorageFullError when the tenant's storage quota refuses it)."""
        ...


@dataclass(eq=False)
class Node:
    """One file or directory of the view; open handles keep it even after unlink."""

    path: str | None  # None once unlinked
    kind: FileKind
    mode: int
    size: int = 0
    relation: bytes = b""
    block_offset: int = 0
    mtime_ns: int = field(default_factory=time.time_ns)
    zero_from: int | None = None  # blocks >= this the page server may still hold stale
    zero_seq: int = 0  # queue position of the operation that set zero_from

    def key(self, index: int) -> PageKey:
        return (self.relation, self.block_offset + index)


@dataclass(frozen=True)
class Attributes:
    """What ``stat`` shows of a node."""

    kind: FileKind
    mode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class _Queued:
    """An operation waiting to be shipped, with what it changed in the cache."""

    op: FileOp
    seq: int  # its position in the operation order, from 1
    versions: dict[PageKey, int]  # cache versions of the pages it wrote
    data_bytes: int


@dataclass
class _Extent:
    """Adjacent writes to one file not queued yet: they ship as one Write, queued when
    anything else is (or at a flush), so the operation order is kept."""

    path: str
    offset: int
    data: bytearray
    versions: dict[PageKey, int]

    def follows(self, path: str, offset: int, size: int) -> bool:
        return path == self.path and offset == self.offset + len(self.data) \
            and len(self.data) + size <= MAX_EXTENT_BYTES


@dataclass(frozen=True)
class _Outgoing:
    """A batch cut from the queue, and the queued operations it carries."""

    batch: Batch
    entries: list[_Queued]


class FetchStats:
    """GetPages requests of the view: how many, how many pages, the most in flight; and
    the reads the view answered (FUSE reads: how many, how many bytes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reads = 0  # counted under the view's lock
        self.read_bytes = 0
        self.requests = 0
        self.pages = 0
        self.background = 0  # requests sent by read-ahead, not by a waiting reader
        self.in_flight = 0
        self.max_in_flight = 0

    def began(self, pages: int, background: bool) -> None:
        with self._lock:
            self.requests += 1
            self.pages += pages
            self.background += background
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def ended(self) -> None:
        with self._lock:
            self.in_flight -= 1


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


class BranchView:
    """The file tree, the page cache and the queue of one branch; thread-safe."""

    def __init__(self, tree: dict[str, Node], cache: PageCache, reader: PageSource,
                 writer: BatchSink, *, batch_bytes: int = MAX_BATCH_BYTES,
                 pending_limit: int = MAX_PENDING_BYTES,
                 ship_after: int = MAX_BATCH_BYTES) -> None:
        self._tree = tree
        self._cache = cache
        self._reader = reader
        self._writer = writer
        self._batch_bytes = batch_bytes
        self._pending_limit = pending_limit
        self._ship_after = ship_after  # queued bytes that a background flush ships early
        self._lock = threading.RLock()  # the tree, the queue and the cache's contents
        self._flush_lock = threading.Lock()  # one flush at a time, in order
        self._pending: list[_Queued] = []
        self._extent: _Extent | None = None  # the newest writes, if adjacent (the lock)
        self._pending_bytes = 0  # data not durable yet, unacknowledged batches included
        self._unacknowledged: list[_Outgoing] = []  # a failed flush's rest (flush lock)
        self._batch_ids = itertools.count(1)  # numbers batches as they are cut (flush lock)
        self._seq = 0  # operations queued so far
        self._zeroing: set[Node] = set()  # nodes with zero_from set: an ack clears only these
        self._wal_lsn = 0
        self._wal_positions = WalPositions()  # under the lock
        self._prefetch = Prefetcher(max_ahead=min(MAX_AHEAD, cache.capacity // 4))
        self._in_flight = InFlight()
        self._prefetcher = ThreadPoolExecutor(PREFETCH_THREADS, "prefetch")
        self._shipper = ThreadPoolExecutor(1, "shipper")  # flushes a due batch early
        self._shipping = threading.Event()  # a background flush is queued or running
        self._closed = False  # read-ahead queued after close fetches nothing
        self.fetches = FetchStats()
        """GetPages requests, pages and requests in flight, for the mount's statistics."""
        self.storage_full = False
        """Whether the page server last said the tenant is at its storage quota."""
        self.failed: BaseException | None = None
        """Why the page server last failed us, if it did: the mount then exits non-zero."""

    # --- plumbing ---------------------------------------------------------------------

    def _node(self, path: str) -> Node:
        node = self._tree.get(path)
        if node is None:
            raise _error(errno.ENOENT, path)
        return node

    def _queue(self, op: FileOp, versions: dict[PageKey, int] | None = None,
               data_bytes: int = 0) -> None:
        self._queue_extent()
        self._seq += 1
        self._pending.append(_Queued(op, self._seq, versions or {}, data_bytes))
        self._pending_bytes += data_bytes

    def _queue_write(self, path: str, offset: int, data: bytes,
                     versions: dict[PageKey, int]) -> None:
        """Queue a write, joined to the newest one if it continues it in the same file."""
        extent = self._extent
        if extent is not None and extent.follows(path, offset, len(data)):
            extent.data += data
            extent.versions.update(versions)
        else:
            self._queue_extent()
            self._extent = _Extent(path, offset, bytearray(data), dict(versions))
        self._pending_bytes += len(data)

    def _queue_extent(self) -> None:
        """Queue the writes gathered in the extent as one Write (their bytes are counted
        in ``_pending_bytes`` already)."""
        extent, self._extent = self._extent, None
        if extent is not None:
            self._seq += 1
            self._pending.append(_Queued(Write(extent.path, extent.offset, bytes(extent.data)),
                                         self._seq, extent.versions, len(extent.data)))

    def _remote(self, what: str, call: Callable[[], _T]) -> _T:
        """Run a page-server call; unreachable or refused becomes EIO for PostgreSQL, a full
        storage quota ENOSPC."""
        try:
            return call()
        except StorageFullError as exc:
            log.warning("%s refused: %s", what, exc)
            self.storage_full = True
            raise OSError(errno.ENOSPC, f"{what} refused: {exc}") from exc
        except PageServerError as exc:
            log.error("%s failed: %s", what, exc)
            self.failed = exc
            raise OSError(errno.EIO, f"{what} failed: {exc}") from exc

    # --- metadata ------------------------------------------------------------------------

    def attributes(self, path: str, node: Node | None = None) -> Attributes:
        """The attributes of ``node`` (an open handle's) or else of ``path``."""
        with self._lock:
            node = node or self._node(path)
            return Attributes(node.kind, node.mode, node.size, node.mtime_ns)

    def listdir(self, path: str) -> set[str]:
        """The names in directory ``path``."""
        with self._lock:
            if self._node(path).kind != FileKind.DIR:
                raise _error(errno.ENOTDIR, path)
            prefix = path + "/" if path else ""
            return {p[len(prefix):] for p in self._tree
                    if p.startswith(prefix) and p and "/" not in p[len(prefix):]}

    def chmod(self, path: str, mode: int) -> None:
        with self._lock:
            node = self._node(path)
            node.mode = mode & 0o7777
            self._queue(Chmod(path, node.mode))

    def touch(self, path: str, mtime_ns: int) -> None:
        """Set the modification time (kept by the view only: it is not versioned)."""
        with self._lock:
            self._node(path).mtime_ns = mtime_ns

    # --- namespace --------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int) -> None:
        with self._lock:
            self._require_new(path)
            self._tree[path] = Node(path, FileKind.DIR, mode & 0o7777)
            self._queue(Mkdir(path, mode & 0o7777))

    def rmdir(self, path: str, before_removal: Callable[[], None]) -> None:
        """Remove an empty directory; ``before_removal`` runs first, under the lock.

        The adapter passes the removal of the directory's local scratch twin,
        which raises if that is not empty (it holds ephemeral files).
        """
        with self._lock:
            node = self._node(path)
            if node.kind != FileKind.DIR:
                raise _error(errno.ENOTDIR, path)
            if any(p.startswith(path + "/") for p in self._tree):
                raise _error(errno.ENOTEMPTY, path)
            before_removal()
            del self._tree[path]
            node.path = None
            self._queue(Rmdir(path))

    def _require_new(self, path: str) -> None:
        if path in self._tree:
            raise _error(errno.EEXIST, path)
        parent = self._tree.get(path.rpartition("/")[0])
        if parent is None or parent.kind != FileKind.DIR:
            raise _error(errno.ENOENT, path)

    def create(self, path: str, mode: int) -> Node:
        """A new empty file; it reads as zeros until its creation is durable."""
        with self._lock:
            self._require_new(path)
            relation, offset = self._choose_relation(path)
            node = Node(path, FileKind.FILE, mode & 0o7777, relation=relation,
                        block_offset=offset, zero_from=0)
            self._tree[path] = node
            self._queue(Create(path, node.mode, relation))
            node.zero_seq = self._seq
            self._zeroing.add(node)
            return node

    def _choose_relation(self, path: str) -> tuple[bytes, int]:
        """The path's RelTag unless a live file uses it, else a random synthetic relation."""
        natural = path_slot(path)
        if natural is not None and not any(
                (n.relation, n.block_offset) == natural for n in self._tree.values()
                if n.kind == FileKind.FILE):
            return natural
        return Relation.synthetic(int.from_bytes(os.urandom(8), "big") | 1).to_bytes(), 0

    def open(self, path: str) -> Node:
        """The file at ``path``, for an open handle."""
        with self._lock:
            node = self._node(path)
            if node.kind == FileKind.DIR:
                raise _error(errno.EISDIR, path)
            return node

    def unlink(self, path: str) -> None:
        with self._lock:
            node = self._node(path)
            if node.kind == FileKind.DIR:
                raise _error(errno.EISDIR, path)
            self._drop(node)
            self._queue(Unlink(path))

    def _drop(self, node: Node) -> None:
        """Forget a file that is being removed: its pages and its place in the tree."""
        if node.path is not None:
            del self._tree[node.path]
        node.path = None
        self._cache.discard_relation_from(node.relation, node.block_offset)

    def rename(self, src: str, dst: str) -> None:
        with self._lock:
            node = self._node(src)
            target = self._tree.get(dst)
            if target is not None and target is not node:
                if target.kind == FileKind.DIR and node.kind != FileKind.DIR:
                    raise _error(errno.EISDIR, dst)
                if target.kind == FileKind.DIR and any(
                        p.startswith(dst + "/") for p in self._tree):
                    raise _error(errno.ENOTEMPTY, dst)
                if target.kind == FileKind.FILE:
                    if node.kind == FileKind.DIR:
                        raise _error(errno.ENOTDIR, dst)
                    self._drop(target)
                else:
                    del self._tree[dst]
            moved = [p for p in self._tree if p == src or p.startswith(src + "/")]
            for path in moved:
                entry = self._tree.pop(path)
                entry.path = dst + path[len(src):]
                self._tree[entry.path] = entry
            self._queue(Rename(src, dst))

    # --- file data ---------------------------------------------------------------------------

    def read(self, node: Node, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes of ``node`` from ``offset``."""
        out = bytearray(size)
        return bytes(out[:self.read_into(node, memoryview(out), offset)])

    def read_into(self, node: Node, out: memoryview, offset: int) -> int:
        """Read up to ``len(out)`` bytes of ``node`` from ``offset`` into ``out`` (the
        kernel's own buffer, for FUSE: cached pages are copied once, straight there);
        returns how many bytes were read."""
        with self._lock:
            end = min(offset + len(out), node.size)
            if offset >= end:
                return 0
            first, last = offset // PAGE_SIZE, (end - 1) // PAGE_SIZE
            skip = offset - first * PAGE_SIZE
            target = out[:end - offset]
            # Every read drives read-ahead, also one the read-ahead served already. In
            # blocks of the relation, so a scan runs on across its 1 GB segment files.
            fetchable = blocks_for(node.size) if node.zero_from is None else node.zero_from
            base = node.block_offset
            plan = self._prefetch.plan(node.relation, base + first, base + last,
                                       base + fetchable)
            if plan.ahead:
                ticket = self._cache.fetch_ticket()
                for chunk in plan.ahead:
                    self._read_ahead(node.relation, chunk, ticket)
            missing: list[int] = []
            for position in self._cache.read_run(node.relation, base + first,
                                                 last + 1 - first, target, skip):
                index = first + position
                if index < fetchable:
                    missing.append(index)
                else:  # the page server cannot have it yet: zeros
                    _place(target, position, skip, ZERO_PAGE)
            relation = node.relation
            self.fetches.reads += 1
            self.fetches.read_bytes += end - offset
        if missing:
            self._fill(node, relation, base, target, first, skip, missing, plan.sequential)
        return end - offset

    def _fill(self, node: Node, relation: bytes, base: int, target: memoryview, first: int,
              skip: int, indexes: list[int], scan: bool) -> None:
        """Fetch the missing pages ``indexes`` of a read into ``target`` (whose page
        ``first`` starts ``skip`` bytes before it): the pages this thread fetched straight
        from the answer, those another thread brought from the cache, with no page object
        in between."""
        own = self._fetch_once(node, relation, base, indexes, scan)
        for index, page in own.items():
            _place(target, index - first, skip, page)
        missing: list[int] = []
        with self._lock:
            for start, count in _runs([index for index in indexes if index not in own]):
                for position in self._cache.read_run(relation, base + start, count, target,
                                                     skip - (start - first) * PAGE_SIZE):
                    index = start + position
                    if node.zero_from is not None and index >= node.zero_from:
                        _place(target, index - first, skip, ZERO_PAGE)  # the file shrank
                    else:
                        missing.append(index)
        if missing:  # another thread's fetch failed, or its pages were evicted already
            self._fill(node, relation, base, target, first, skip, missing, scan)

    def _known_page(self, node: Node, index: int) -> bytes | None:
        """The page from the cache, zeros if the page server cannot have it, else None."""
        page = self._cache.get(node.key(index))
        if page is not None:
            return page
        if node.zero_from is not None and index >= node.zero_from:
            return ZERO_PAGE
        return None

    def _fetch(self, node: Node, relation: bytes, block_offset: int, indexes: list[int],
               scan: bool = False) -> dict[int, PageData]:
        """The pages ``indexes`` of ``node``, fetched in one round trip (cached as scan
        pages if ``scan``); pages another thread is fetching already (read-ahead
        included) are waited for, not fetched twice, and then read from the cache."""
        result = self._fetch_once(node, relation, block_offset, indexes, scan)
        with self._lock:
            for index in indexes:
                if index not in result and (page := self._known_page(node, index)) is not None:
                    result[index] = page
        missing = [index for index in indexes if index not in result]
        if missing:  # another thread's fetch failed, or its pages were evicted already
            result.update(self._fetch(node, relation, block_offset, missing, scan))
        return result

    def _fetch_once(self, node: Node, relation: bytes, block_offset: int, indexes: list[int],
                    scan: bool) -> dict[int, PageData]:
        """Fetch the pages of ``indexes`` that no other thread is fetching, in one round
        trip, and wait for the others; the pages this thread fetched, as they came, except
        those the compute wrote (or the file shrank past) meanwhile: a write that raced
        the fetch is newer than what came back. The other pages are in the cache now,
        unless their fetch failed or they were evicted already."""
        waits: list[threading.Event] = []
        wanted: list[int] = []
        with self._lock:
            ticket = self._cache.fetch_ticket()
            for index in indexes:
                key = (relation, block_offset + index)
                event = self._in_flight.waiting_for(key)
                if event is not None:
                    waits.append(event)
                elif not self._cache.contains(key):  # else a fetch just brought it
                    wanted.append(index)
            keys = [(relation, block_offset + index) for index in wanted]
            self._in_flight.claim(keys)
        fetched: dict[int, PageData] = {}
        try:
            if wanted:
                blocks = [block_offset + index for index in wanted]
                pages = self._remote("GetPages", partial(
                    self._get_pages, relation, blocks, background=False))
                fetched = dict(zip(wanted, pages, strict=True))
                # Under the cache's lock only: the ticket refuses each page written since.
                self._cache.put_clean_many(keys, pages, ticket, scan=scan)
        finally:
            with self._lock:
                self._in_flight.release(keys)
        for event in waits:
            event.wait()  # the fetching thread always releases, also when it fails
        with self._lock:
            written = self._cache.written(keys)
            shrunk = node.zero_from
            return {index: page for index, page in fetched.items()
                    if (relation, block_offset + index) not in written
                    and (shrunk is None or index < shrunk)}

    def _get_pages(self, relation: bytes, blocks: list[int],
                   background: bool) -> Sequence[PageData]:
        self.fetches.began(len(blocks), background)
        try:
            return self._reader.get_pages(Relation.from_bytes(relation), blocks)
        finally:
            self.fetches.ended()

    def _read_ahead(self, relation: bytes, blocks: range, ticket: int) -> None:
        """Queue a background fetch of the pages of ``blocks`` that are neither cached nor
        being fetched (under the lock: they are claimed before it is released)."""
        keys = [key for key in self._cache.absent((relation, block) for block in blocks)
                if self._in_flight.waiting_for(key) is None]
        if keys:
            self._in_flight.claim(keys)
            self._prefetcher.submit(self._fetch_ahead, relation, keys, ticket)

    def _fetch_ahead(self, relation: bytes, keys: list[PageKey], ticket: int) -> None:
        """Fetch read-ahead into the cache as scan pages; a failure only logs: a reader
        that waited for these pages finds them missing and fetches them itself."""
        try:
            if self._closed:
                return
            pages = self._get_pages(relation, [key[1] for key in keys], background=True)
            self._cache.put_clean_many(keys, pages, ticket, scan=True)
        except PageServerError as exc:
            log.warning("read-ahead of %d pages failed: %s", len(keys), exc)
        finally:
            with self._lock:
                self._in_flight.release(keys)

    def close(self) -> None:
        """Stop read-ahead and background flushes (waits for requests in flight); before
        the cache closes."""
        self._closed = True
        self._prefetcher.shutdown(wait=True)
        self._shipper.shutdown(wait=True)

    def write(self, node: Node, data: bytes, offset: int) -> None:
        """Write ``data`` at ``offset``; a full cache is flushed and the write retried."""
        while True:
            try:
                overflowing = self._write_locked(node, data, offset)
                break
            except CacheFullError:
                self.flush()  # makes the written pages clean, hence evictable
        if overflowing:
            self.flush()
        elif self._pending_bytes >= self._ship_after and not self._shipping.is_set():
            self._shipping.set()  # a batch is due: ship it while PostgreSQL writes on
            self._shipper.submit(self._ship)

    def _ship(self) -> None:
        """Flush in the background; a failure keeps the batches for the next flush, which
        reports it (the failure is logged and kept in ``failed`` here)."""
        try:
            self.flush()
        except OSError as exc:
            log.warning("background flush failed; the next flush retries: %s", exc)
        finally:
            self._shipping.clear()

    def _write_locked(self, node: Node, data: bytes, offset: int) -> bool:
        """Apply a write to the view and queue it; True if the queue should be shipped."""
        with self._lock:
            if node.path is None:
                return False  # the file was unlinked: nothing of it survives
            self._refuse_growth_when_full(node, offset + len(data))
            end = offset + len(data)
            shipped = self._changed_part(node, offset, data)
            versions: dict[PageKey, int] = {}
            for piece in write_slices(offset, data):
                if piece.whole:
                    page = bytes(piece.data)
                else:
                    page = piece.onto(self._page_for_update(node, piece.index))
                key = node.key(piece.index)
                versions[key] = self._cache.put_dirty(key, page)
            node.size = max(node.size, end)
            node.mtime_ns = time.time_ns()
            self._queue_write(node.path, offset + shipped.start, data[shipped], versions)
            position = self._wal_positions.position(node.path, offset, data)
            if position is not None:
                self._wal_lsn = max(self._wal_lsn, position)
            return self._pending_bytes >= self._pending_limit

    def _changed_part(self, node: Node, offset: int, data: bytes) -> slice:
        """The part of a write into a WAL segment that the page server needs (rfcs/0031):
        without the bytes at its start and at its end that equal what the cache holds of
        the first and the last page it covers (a rewrite of the same bytes: its last byte,
        which still sets the mtime). Writes that grow the file or continue the extent
        being gathered (a bulk load) ship whole, so extents stay whole; so do writes to
        any other file: a data page's small change (a hint bit, a visibility flag) would
        make the page server read the page's older version to lay it over, which costs
        more than the 8 KB it saves."""
        end = offset + len(data)
        extent = self._extent
        if not data or end > node.size or segment_start(node.path or "") is None \
                or (extent is not None and extent.follows(node.path or "", offset, len(data))):
            return slice(0, len(data))
        if offset // PAGE_SIZE == (end - 1) // PAGE_SIZE:  # one page (a commit): one compare
            old = self._known_page(node, offset // PAGE_SIZE)
            start = offset % PAGE_SIZE
            first, last = (0, len(data)) if old is None else \
                changed_span(old[start:start + len(data)], data)
        else:
            first = self._same_head(node, offset, data)
            last = len(data) - self._same_tail(node, end, data)
        if first >= last:
            return slice(len(data) - 1, len(data))
        return slice(first, last)

    def _same_head(self, node: Node, offset: int, data: bytes) -> int:
        """How many bytes at the start of a write equal the cached first page's (0 if
        that page is not cached)."""
        index = offset // PAGE_SIZE
        old = self._known_page(node, index)
        if old is None:
            return 0
        start = offset - index * PAGE_SIZE
        count = min(len(data), PAGE_SIZE - start)
        return changed_span(old[start:start + count], data[:count])[0]

    def _same_tail(self, node: Node, end: int, data: bytes) -> int:
        """How many bytes at the end of a write equal the cached last page's."""
        index = (end - 1) // PAGE_SIZE
        old = self._known_page(node, index)
        if old is None:
            return 0
        count = min(len(data), end - index * PAGE_SIZE)
        first, last = changed_span(old[end - index * PAGE_SIZE - count:end - index * PAGE_SIZE],
                                   data[len(data) - count:])
        return count if first == last else count - last

    def _refuse_growth_when_full(self, node: Node, end: int) -> None:
        """ENOSPC for extending a relation's file to ``end`` while the tenant is full."""
        if self.storage_full and end > node.size and node.path is not None \
                and not Relation.from_bytes(node.relation).is_synthetic:
            raise _error(errno.ENOSPC, node.path)

    def _page_for_update(self, node: Node, index: int) -> bytes:
        if index >= blocks_for(node.size):
            return ZERO_PAGE
        page = self._known_page(node, index)
        if page is not None:
            return page
        return bytes(self._fetch(node, node.relation, node.block_offset, [index])[index])

    def truncate(self, path: str, length: int, node: Node | None = None) -> None:
        """Truncate ``node`` (an open handle's) or else ``path`` to ``length`` bytes."""
        while True:
            try:
                self._truncate_locked(path, node, length)
                return
            except CacheFullError:
                self.flush()

    def _truncate_locked(self, path: str, handle: Node | None, length: int) -> None:
        with self._lock:
            node = handle or self._node(path)
            if node.kind == FileKind.DIR:
                raise _error(errno.EISDIR, path)
            if node.path is None:
                return
            self._refuse_growth_when_full(node, length)
            versions: dict[PageKey, int] = {}
            if length < node.size:
                keep, tail = truncate_tail(length)
                if tail:
                    page = cut_page(self._page_for_update(node, keep - 1), tail)
                    versions[node.key(keep - 1)] = self._cache.put_dirty(node.key(keep - 1), page)
                self._cache.discard_relation_from(node.relation, node.block_offset + keep)
                node.zero_from = keep if node.zero_from is None else min(node.zero_from, keep)
                self._zeroing.add(node)
            node.size = length
            node.mtime_ns = time.time_ns()
            self._queue(Truncate(node.path, length), versions)
            node.zero_seq = self._seq

    # --- durability --------------------------------------------------------------------------

    def flush(self) -> None:
        """Ship the queue as ordered batches; return once all are durable.

        On failure the batches not acknowledged are kept, as they were cut and
        numbered, and the next flush sends them first: the page server's record of
        the last batch it applied tells whether the one in flight was applied.
        """
        with self._flush_lock:
            with self._lock:
                self._queue_extent()
                queued, self._pending, self._pending_bytes = self._pending, [], 0
                wal_lsn = self._wal_lsn
            outgoing = self._unacknowledged + [
                _Outgoing(Batch(tuple(entry.op for entry in cut), wal_lsn,
                                batch_id=next(self._batch_ids)), cut)
                for cut in _batches(queued, self._batch_bytes)]
            self._unacknowledged = []
            for done, out in enumerate(outgoing):
                try:
                    self._remote("Ingest", partial(self._writer.write, out.batch))
                except BaseException:
                    self._keep_unacknowledged(outgoing[done:])
                    raise
                self.storage_full = self._writer.storage_full
                self._acknowledged(out.entries)

    def _keep_unacknowledged(self, outgoing: list[_Outgoing]) -> None:
        """Keep batches that are not durable for the next flush to send first, in order."""
        self._unacknowledged = outgoing
        with self._lock:
            self._pending_bytes += sum(entry.data_bytes for out in outgoing
                                       for entry in out.entries)

    def _acknowledged(self, batch: list[_Queued]) -> None:
        """A batch is durable: its pages may become clean, its zero ranges readable."""
        versions: dict[PageKey, int] = {}
        for entry in batch:  # in order: a page written twice keeps its newer version
            versions.update(entry.versions)
        with self._lock:
            self._cache.end_flush(versions)  # unless written again since
            seq = batch[-1].seq
            cleared = [node for node in self._zeroing if node.zero_seq <= seq]
            for node in cleared:  # not every node of the tree: agents make many files
                node.zero_from = None
                self._zeroing.discard(node)


def _batches(queued: list[_Queued], batch_bytes: int) -> list[list[_Queued]]:
    """Cut the queue into batches of about ``batch_bytes`` of data, order kept."""
    batches: list[list[_Queued]] = []
    current: list[_Queued] = []
    size = 0
    for entry in queued:
        current.append(entry)
        size += entry.data_bytes
        if size >= batch_bytes:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


def _place(out: memoryview, position: int, skip: int, page: PageData) -> None:
    """Copy the part of ``page`` that falls into ``out`` when page ``position`` starts at
    ``position * PAGE_SIZE - skip`` of it."""
    at = position * PAGE_SIZE - skip
    lo, hi = max(at, 0), min(at + PAGE_SIZE, len(out))
    out[lo:hi] = memoryview(page)[lo - at:hi - at]


def _runs(indexes: list[int]) -> list[tuple[int, int]]:
    """Increasing ``indexes`` as runs of consecutive ones: (first, count) each."""
    runs: list[tuple[int, int]] = []
    for index in indexes:
        if runs and runs[-1][0] + runs[-1][1] == index:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((index, 1))
    return runs
