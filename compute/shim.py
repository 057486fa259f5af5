"""The FUSE shim: PGDATA of one branch, pages from the page server, writes shipped in order.

Every mutating operation is applied to the shim's view under one lock and
queued, in that same order; ``fsync``/``fdatasync``/``fsyncdir`` ship the whole
queue as ingest batches and return only once the page server made them
durable. Every durable LSN is therefore a prefix of the operation order: a
state a real disk could have been in at a power cut (see DESIGN.md).

Reads are served from the local page cache (dirty pages included) and, on a
miss, fetched in batches from the page server at its newest durable LSN.
Blocks of a file that the page server cannot know yet (a new file, or blocks
past a pending truncate) read as zeros until the queue is flushed.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import mfusepy as fuse

from common.convert import relation_to_pb
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
from common.pgdata import is_ephemeral
from compute.page_cache import CacheFullError, PageCache, PageKey
from compute.prefetch import InFlight, Prefetcher
from compute.remote import BatchWriter, PageReader, PageServerRefused, PageServerUnavailable
from compute.wal import wal_position

log = logging.getLogger(__name__)
_T = TypeVar("_T")

FUSE_CAP_AUTO_INVAL_DATA = 1 << 12
MAX_BATCH_BYTES = 16 * 1024 * 1024  # split a flush into batches of about this much data
MAX_PENDING_BYTES = 256 * 1024 * 1024  # ship the queue in the background past this


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


class StrataFS(fuse.Operations):  # type: ignore[misc]
    """mfusepy operations over a branch's file tree."""

    use_ns = True

    def __init__(self, tree: dict[str, Node], cache: PageCache, reader: PageReader,
                 writer: BatchWriter, scratch: Path, uid: int, gid: int) -> None:
        self._tree = tree
        self._cache = cache
        self._reader = reader
        self._writer = writer
        self._scratch = scratch
        self._uid, self._gid = uid, gid
        self._lock = threading.RLock()  # the view and the queue
        self._flush_lock = threading.Lock()  # one flush at a time, in order
        self._pending: list[FileOp] = []
        self._pending_bytes = 0
        self._seq = 0  # operations queued so far
        self._dirty: set[PageKey] = set()
        self._wal_lsn = 0
        self._handles: dict[int, Node | int] = {}  # fh -> node, or an OS fd in scratch
        self._next_fh = 1
        self._prefetch = Prefetcher()
        self._in_flight = InFlight()
        self.failed: BaseException | None = None
        for path in [p for p in tree if is_ephemeral(p)]:  # e.g. pg_stat_tmp from initdb
            node = tree.pop(path)
            if node.kind == FileKind.DIR:
                os.makedirs(self._local(path), node.mode, exist_ok=True)

    # --- plumbing ---------------------------------------------------------------------

    @staticmethod
    def _rel(path: str) -> str:
        return path.strip("/")

    def _node(self, path: str) -> Node:
        node = self._tree.get(path)
        if node is None and path != "":
            raise fuse.FuseOSError(errno.ENOENT)
        return node if node is not None else self._tree[""]

    def _queue(self, op: FileOp, data_bytes: int = 0) -> None:
        self._pending.append(op)
        self._pending_bytes += data_bytes
        self._seq += 1

    def _local(self, path: str) -> str:
        return str(self._scratch / path)

    def _remote(self, what: str, call: Callable[[], _T]) -> _T:
        """Run a page-server call; unreachable or refused becomes EIO for PostgreSQL."""
        try:
            return call()
        except (PageServerUnavailable, PageServerRefused) as exc:
            log.error("%s failed: %s", what, exc)
            self.failed = exc
            raise fuse.FuseOSError(errno.EIO) from exc

    # --- mount-time settings ---------------------------------------------------------

    def init_with_config(self, conn_info: Any, config_3: Any) -> None:
        """Keep the kernel page cache: with one writer, auto-invalidation only costs reads."""
        if conn_info is not None:
            conn_info.want &= ~FUSE_CAP_AUTO_INVAL_DATA
        if config_3 is not None:
            config_3.kernel_cache = 1
            config_3.hard_remove = 1

    # --- metadata ------------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        rel = self._rel(path)
        if is_ephemeral(rel):
            return self._local_stat(rel)
        with self._lock:
            handle = self._handles.get(fh) if fh is not None else None
            node = handle if isinstance(handle, Node) else self._node(rel)
            kind = stat.S_IFDIR if node.kind == FileKind.DIR else stat.S_IFREG
            return {
                "st_mode": kind | node.mode, "st_nlink": 2 if node.kind == FileKind.DIR else 1,
                "st_size": node.size, "st_uid": self._uid, "st_gid": self._gid,
                "st_mtime": node.mtime_ns, "st_ctime": node.mtime_ns, "st_atime": node.mtime_ns,
                "st_blocks": (node.size + 511) // 512, "st_blksize": PAGE_SIZE,
            }

    def _local_stat(self, rel: str) -> dict[str, int]:
        try:
            st = os.lstat(self._local(rel))
        except FileNotFoundError as exc:
            raise fuse.FuseOSError(errno.ENOENT) from exc
        return {"st_mode": st.st_mode, "st_nlink": st.st_nlink, "st_size": st.st_size,
                "st_blocks": st.st_blocks, "st_uid": self._uid, "st_gid": self._gid,
                "st_mtime": st.st_mtime_ns, "st_ctime": st.st_ctime_ns,
                "st_atime": st.st_atime_ns}

    def readdir(self, path: str, fh: int) -> list[str | tuple[str, dict[str, int], int]]:
        rel = self._rel(path)
        names: set[str] = set()
        if not is_ephemeral(rel):
            with self._lock:
                if self._node(rel).kind != FileKind.DIR:
                    raise fuse.FuseOSError(errno.ENOTDIR)
                prefix = rel + "/" if rel else ""
                names = {p[len(prefix):] for p in self._tree
                         if p.startswith(prefix) and p and "/" not in p[len(prefix):]}
        local = self._local(rel)
        if os.path.isdir(local):
            names.update(os.listdir(local))
        return [".", "..", *sorted(names)]

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": PAGE_SIZE, "f_frsize": PAGE_SIZE, "f_blocks": 1 << 32,
                "f_bfree": 1 << 31, "f_bavail": 1 << 31, "f_files": 1 << 24,
                "f_ffree": 1 << 23, "f_favail": 1 << 23, "f_namemax": 255}

    def chmod(self, path: str, mode: int) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            os.chmod(self._local(rel), mode)
            return 0
        with self._lock:
            node = self._node(rel)
            node.mode = mode & 0o7777
            self._queue(Chmod(rel, node.mode))
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        return 0  # ownership is the compute's, not the database's

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            os.utime(self._local(rel), ns=times or (time.time_ns(), time.time_ns()))
            return 0
        with self._lock:
            self._node(rel).mtime_ns = times[1] if times else time.time_ns()
        return 0

    # --- namespace --------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            os.makedirs(self._local(rel), mode, exist_ok=False)
            return 0
        with self._lock:
            self._require_new(rel)
            self._tree[rel] = Node(rel, FileKind.DIR, mode & 0o7777)
            self._queue(Mkdir(rel, mode & 0o7777))
        return 0

    def rmdir(self, path: str) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            os.rmdir(self._local(rel))
            return 0
        with self._lock:
            node = self._node(rel)
            if node.kind != FileKind.DIR:
                raise fuse.FuseOSError(errno.ENOTDIR)
            if any(p.startswith(rel + "/") for p in self._tree):
                raise fuse.FuseOSError(errno.ENOTEMPTY)
            local = self._local(rel)
            if os.path.isdir(local):
                if os.listdir(local):
                    raise fuse.FuseOSError(errno.ENOTEMPTY)
                os.rmdir(local)
            del self._tree[rel]
            node.path = None
            self._queue(Rmdir(rel))
        return 0

    def _require_new(self, rel: str) -> None:
        if rel in self._tree:
            raise fuse.FuseOSError(errno.EEXIST)
        parent = self._tree.get(rel.rpartition("/")[0])
        if parent is None or parent.kind != FileKind.DIR:
            raise fuse.FuseOSError(errno.ENOENT)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            os.makedirs(os.path.dirname(self._local(rel)), exist_ok=True)
            return self._new_handle(os.open(self._local(rel), os.O_RDWR | os.O_CREAT, mode))
        with self._lock:
            self._require_new(rel)
            relation, offset = self._choose_relation(rel)
            node = Node(rel, FileKind.FILE, mode & 0o7777, relation=relation,
                        block_offset=offset, zero_from=0)
            self._tree[rel] = node
            self._queue(Create(rel, node.mode, relation))
            node.zero_seq = self._seq
            return self._new_handle(node)

    def _choose_relation(self, rel: str) -> tuple[bytes, int]:
        """The path's RelTag unless a live file uses it, else a random synthetic relation."""
        natural = path_slot(rel)
        if natural is not None and not any(
                (n.relation, n.block_offset) == natural for n in self._tree.values()
                if n.kind == FileKind.FILE):
            return natural
        return Relation.synthetic(int.from_bytes(os.urandom(8), "big") | 1).to_bytes(), 0

    def unlink(self, path: str) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            os.unlink(self._local(rel))
            return 0
        with self._lock:
            node = self._node(rel)
            if node.kind == FileKind.DIR:
                raise fuse.FuseOSError(errno.EISDIR)
            self._drop(node)
            self._queue(Unlink(rel))
        return 0

    def _drop(self, node: Node) -> None:
        """Forget a file that is being removed: its pages and its place in the tree."""
        if node.path is not None:
            del self._tree[node.path]
        node.path = None
        self._cache.discard_relation_from(node.relation, node.block_offset)
        self._dirty = {key for key in self._dirty if key[0] != node.relation
                       or key[1] < node.block_offset}

    def rename(self, old: str, new: str) -> int:
        src, dst = self._rel(old), self._rel(new)
        if is_ephemeral(src) or is_ephemeral(dst):
            if is_ephemeral(src) != is_ephemeral(dst):
                raise fuse.FuseOSError(errno.EXDEV)
            os.rename(self._local(src), self._local(dst))
            return 0
        with self._lock:
            node = self._node(src)
            target = self._tree.get(dst)
            if target is not None and target is not node:
                if target.kind == FileKind.DIR and node.kind != FileKind.DIR:
                    raise fuse.FuseOSError(errno.EISDIR)
                if target.kind == FileKind.DIR and any(
                        p.startswith(dst + "/") for p in self._tree):
                    raise fuse.FuseOSError(errno.ENOTEMPTY)
                if target.kind == FileKind.FILE:
                    if node.kind == FileKind.DIR:
                        raise fuse.FuseOSError(errno.ENOTDIR)
                    self._drop(target)
                else:
                    del self._tree[dst]
            moved = [p for p in self._tree if p == src or p.startswith(src + "/")]
            for path in moved:
                entry = self._tree.pop(path)
                entry.path = dst + path[len(src):]
                self._tree[entry.path] = entry
            self._queue(Rename(src, dst))
        return 0

    # --- file data ---------------------------------------------------------------------------

    def _new_handle(self, target: Node | int) -> int:
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = target
            return fh

    def open(self, path: str, flags: int) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            return self._new_handle(os.open(self._local(rel), flags & ~os.O_CREAT))
        with self._lock:
            node = self._node(rel)
            if node.kind == FileKind.DIR:
                raise fuse.FuseOSError(errno.EISDIR)
            fh = self._new_handle(node)
        if flags & os.O_TRUNC:
            self.truncate(path, 0, fh)
        return fh

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            target = self._handles.pop(fh, None)
        if isinstance(target, int):
            os.close(target)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close() is not a durability point; fsync is

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._lock:
            target = self._handles.get(fh)
        if isinstance(target, int):
            return os.pread(target, size, offset)
        if target is None:
            raise fuse.FuseOSError(errno.EBADF)
        with self._lock:
            end = min(offset + size, target.size)
            if offset >= end:
                return b""
            first, last = offset // PAGE_SIZE, (end - 1) // PAGE_SIZE
            pages: dict[int, bytes] = {}
            missing: list[int] = []
            for index in range(first, last + 1):
                page = self._known_page(target, index)
                if page is None:
                    missing.append(index)
                else:
                    pages[index] = page
            relation, block_offset, size_now = target.relation, target.block_offset, target.size
        if missing:
            pages.update(self._fetch(target, relation, block_offset, missing, size_now))
        data = b"".join(pages[index] for index in range(first, last + 1))
        start = offset - first * PAGE_SIZE
        return data[start:start + end - offset]

    def _known_page(self, node: Node, index: int) -> bytes | None:
        """The page from the cache, zeros if the page server cannot have it, else None."""
        page = self._cache.get(node.key(index))
        if page is not None:
            return page
        if node.zero_from is not None and index >= node.zero_from:
            return ZERO_PAGE
        return None

    def _fetch(self, node: Node, relation: bytes, block_offset: int, indexes: list[int],
               size: int) -> dict[int, bytes]:
        """Fetch missing pages in one round trip, plus a read-ahead window if sequential.

        Pages another thread is fetching already are waited for, not fetched twice.
        """
        blocks_in_file = (size + PAGE_SIZE - 1) // PAGE_SIZE
        requested = set(indexes)
        waits: list[threading.Event] = []
        wanted: list[int] = []
        with self._lock:
            ticket = self._cache.fetch_ticket()
            for index in self._prefetch.extend(relation, indexes, blocks_in_file):
                key = (relation, block_offset + index)
                event = self._in_flight.waiting_for(key)
                if event is not None:
                    if index in requested:
                        waits.append(event)
                elif index in requested or not self._cache.contains(key):
                    wanted.append(index)
            keys = [(relation, block_offset + index) for index in wanted]
            self._in_flight.claim(keys)
        fetched: dict[int, bytes] = {}
        try:
            if wanted:
                blocks = [block_offset + index for index in wanted]
                _, pages = self._remote("GetPages", lambda: self._reader.get_pages(
                    relation_to_pb(Relation.from_bytes(relation)), blocks))
                fetched = dict(zip(wanted, pages, strict=True))
                with self._lock:
                    for index, page in fetched.items():  # refused if written meanwhile
                        self._cache.put_clean((relation, block_offset + index), page, ticket)
        finally:
            with self._lock:
                self._in_flight.release(keys)
        for event in waits:
            event.wait()  # the fetching thread always releases, also when it fails
        with self._lock:
            # A write that raced the fetch is newer than what came back: prefer it.
            result: dict[int, bytes] = {}
            for index in indexes:
                known = self._known_page(node, index) or fetched.get(index)
                if known is not None:
                    result[index] = known
        missing = [index for index in indexes if index not in result]
        if missing:  # another thread's fetch failed, or its pages were evicted already
            result.update(self._fetch(node, relation, block_offset, missing, size))
        return result

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._lock:
            target = self._handles.get(fh)
        if isinstance(target, int):
            return os.pwrite(target, data, offset)
        if target is None:
            raise fuse.FuseOSError(errno.EBADF)
        while True:
            try:
                overflowing = self._write_locked(target, data, offset)
                break
            except CacheFullError:
                self._flush()  # makes every dirty page clean, hence evictable
        if overflowing:
            self._flush()
        return len(data)

    def _write_locked(self, target: Node, data: bytes, offset: int) -> bool:
        """Apply a write to the view and queue it; True if the queue should be shipped."""
        with self._lock:
            if target.path is None:
                return False  # the file was unlinked: nothing of it survives
            end = offset + len(data)
            first, last = offset // PAGE_SIZE, (end - 1) // PAGE_SIZE
            for index in range(first, last + 1):
                start = index * PAGE_SIZE
                lo, hi = max(offset, start), min(end, start + PAGE_SIZE)
                if hi - lo == PAGE_SIZE:
                    page = data[lo - offset:hi - offset]
                else:
                    old = self._page_for_update(target, index)
                    page = old[:lo - start] + data[lo - offset:hi - offset] + old[hi - start:]
                self._put_dirty(target.key(index), page)
            target.size = max(target.size, end)
            target.mtime_ns = time.time_ns()
            self._queue(Write(target.path, offset, bytes(data)), len(data))
            position = wal_position(target.path, offset, data)
            if position is not None:
                self._wal_lsn = max(self._wal_lsn, position)
            return self._pending_bytes >= MAX_PENDING_BYTES

    def _page_for_update(self, node: Node, index: int) -> bytes:
        if index * PAGE_SIZE >= node.size:
            return ZERO_PAGE
        page = self._known_page(node, index)
        if page is not None:
            return page
        return self._fetch(node, node.relation, node.block_offset, [index], node.size)[index]

    def _put_dirty(self, key: PageKey, page: bytes) -> None:
        """Cache a written page; CacheFullError asks the caller to flush (unlocked) and retry."""
        self._cache.put_dirty(key, page)
        self._dirty.add(key)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        rel = self._rel(path)
        with self._lock:
            handle = self._handles.get(fh) if fh is not None else None
        if isinstance(handle, int):
            os.ftruncate(handle, length)
            return 0
        if handle is None and is_ephemeral(rel):
            os.truncate(self._local(rel), length)
            return 0
        while True:
            try:
                return self._truncate_locked(rel, handle, length)
            except CacheFullError:
                self._flush()

    def _truncate_locked(self, rel: str, handle: Node | None, length: int) -> int:
        with self._lock:
            node = handle if isinstance(handle, Node) else self._node(rel)
            if node.kind == FileKind.DIR:
                raise fuse.FuseOSError(errno.EISDIR)
            if node.path is None:
                return 0
            if length < node.size:
                keep = (length + PAGE_SIZE - 1) // PAGE_SIZE
                tail = length % PAGE_SIZE
                if tail:
                    page = self._page_for_update(node, keep - 1)
                    self._put_dirty(node.key(keep - 1), page[:tail] + bytes(PAGE_SIZE - tail))
                self._cache.discard_relation_from(node.relation, node.block_offset + keep)
                self._dirty = {k for k in self._dirty if k[0] != node.relation
                               or k[1] < node.block_offset + keep}
                node.zero_from = keep if node.zero_from is None else min(node.zero_from, keep)
            node.size = length
            node.mtime_ns = time.time_ns()
            self._queue(Truncate(node.path, length))
            node.zero_seq = self._seq
        return 0

    # --- durability --------------------------------------------------------------------------

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._lock:
            target = self._handles.get(fh)
        if isinstance(target, int):
            os.fsync(target)
            return 0
        self._flush()
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        self._flush()
        return 0

    def _flush(self) -> None:
        """Ship the queue as ordered batches; return once all are durable."""
        with self._flush_lock:
            with self._lock:
                ops, self._pending, self._pending_bytes = self._pending, [], 0
                seq = self._seq
                keys, self._dirty = self._dirty, set()
                versions = self._cache.begin_flush(keys)
                wal_lsn = self._wal_lsn
            try:
                for batch in _batches(ops, wal_lsn):
                    self._remote("Ingest", partial(self._writer.write, batch))
            except fuse.FuseOSError:
                with self._lock:  # keep everything for a retry, in order
                    self._pending = ops + self._pending
                    self._pending_bytes += sum(len(op.data) for op in ops
                                               if isinstance(op, Write))
                    self._dirty |= keys
                    self._cache.abort_flush(versions)
                raise
            with self._lock:
                self._cache.end_flush(versions)
                for node in self._tree.values():
                    if node.zero_from is not None and node.zero_seq <= seq:
                        node.zero_from = None

    def destroy(self, path: str) -> None:
        try:
            self._flush()
        except fuse.FuseOSError:
            log.error("unmounted with unflushed changes: the page server is unreachable")


def _batches(ops: list[FileOp], wal_lsn: int) -> list[Batch]:
    """Cut the queue into batches of about MAX_BATCH_BYTES of data, order kept."""
    batches: list[Batch] = []
    current: list[FileOp] = []
    size = 0
    for op in ops:
        current.append(op)
        size += len(op.data) if isinstance(op, Write) else 0
        if size >= MAX_BATCH_BYTES:
            batches.append(Batch(tuple(current), wal_lsn))
            current, size = [], 0
    if current:
        batches.append(Batch(tuple(current), wal_lsn))
    return batches
