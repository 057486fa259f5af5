"""The FUSE shim: a thin mfusepy adapter that serves a branch's ``BranchView`` as PGDATA.

The view (``compute.view``) holds the file tree, the page cache and the ordered
queue, and owns durability; this adapter turns FUSE calls into view calls. It
keeps what only a mount has: paths as FUSE gives them, file handles, the
ephemeral paths (pid files, temp files, logs) that live in local scratch space
and are never versioned, and the kernel settings of the mount. ``fsync``,
``fdatasync`` and ``fsyncdir`` flush the view. Errors are ``OSError`` with an
errno, from the view or from the scratch files; mfusepy answers FUSE with that
errno (``fuse.FuseOSError`` is one such error).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import mfusepy as fuse

from common.keys import PAGE_SIZE
from common.ops import FileKind
from common.pgdata import is_ephemeral
from compute.page_cache import PageCache
from compute.view import BatchSink, BranchView, Node, PageSource
from compute.wal import segment_start

log = logging.getLogger(__name__)

FUSE_CAP_AUTO_INVAL_DATA = 1 << 12
MAX_WRITE_BYTES = 1024 * 1024  # the kernel's largest FUSE write (fs.fuse.max_pages_limit 256)
SYNC_FLAGS = os.O_DSYNC | os.O_SYNC  # open flags that make each write a durability point


def is_direct(rel: str) -> bool:
    """Whether opens of ``rel`` bypass the kernel's page cache (FUSE ``direct_io``).

    WAL segments: a write with ``O_DSYNC`` then reaches the daemon as one request
    (the kernel syncs a cached ``O_DSYNC`` write with a second one, ``FUSE_FSYNC``).
    Every open of a segment is direct, so no reader ever sees cached WAL pages that
    a direct write bypassed.
    """
    return segment_start(rel) is not None


class StrataFUSE(fuse.FUSE):  # type: ignore[misc]
    """mfusepy's mount, with ``direct_io`` set on opens of the files ``is_direct`` names."""

    def open(self, path: bytes, fip: Any) -> int:
        result: int = super().open(path, fip)
        self._choose_caching(path, fip)
        return result

    def create(self, path: bytes, mode: int, fip: Any) -> int:
        result: int = super().create(path, mode, fip)
        self._choose_caching(path, fip)
        return result

    def read(self, path: bytes | None, buf: Any, size: int, offset: int, fip: Any) -> int:
        """Answer a read straight into the kernel's reply buffer (``buf``, ``size`` bytes):
        no bytes object per read and no copy but the one into it."""
        out = (ctypes.c_ubyte * size).from_address(ctypes.addressof(buf.contents))
        count: int = self.operations.read_into(
            None if path is None else os.fsdecode(path), memoryview(out).cast("B"), offset,
            fip.contents.fh)
        return count

    @staticmethod
    def _choose_caching(path: bytes, fip: Any) -> None:
        if is_direct(os.fsdecode(path).strip("/")):
            fip.contents.direct_io = 1


class StrataFS(fuse.Operations):  # type: ignore[misc]
    """mfusepy operations over a branch's file tree."""

    use_ns = True

    def __init__(self, tree: dict[str, Node], cache: PageCache, reader: PageSource,
                 writer: BatchSink, scratch: Path, uid: int, gid: int) -> None:
        self._scratch = scratch
        self._uid, self._gid = uid, gid
        self._handles_lock = threading.Lock()
        self._handles: dict[int, Node | int] = {}  # fh -> node, or an OS fd in scratch
        self._sync_handles: set[int] = set()  # versioned files opened with O_DSYNC/O_SYNC
        self._next_fh = 1
        for path in [p for p in tree if is_ephemeral(p)]:  # e.g. pg_stat_tmp from initdb
            node = tree.pop(path)
            if node.kind == FileKind.DIR:
                os.makedirs(self._local(path), node.mode, exist_ok=True)
        self.view = BranchView(tree, cache, reader, writer)

    # --- plumbing ---------------------------------------------------------------------

    @staticmethod
    def _rel(path: str) -> str:
        return path.strip("/")

    def _local(self, path: str) -> str:
        return str(self._scratch / path)

    def _handle(self, fh: int | None) -> Node | int | None:
        if fh is None:
            return None
        with self._handles_lock:
            return self._handles.get(fh)

    def _new_handle(self, target: Node | int, flags: int = 0) -> int:
        with self._handles_lock:
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = target
            if isinstance(target, Node) and flags & SYNC_FLAGS:
                self._sync_handles.add(fh)
            return fh

    # --- mount-time settings ---------------------------------------------------------

    def init_with_config(self, conn_info: Any, config_3: Any) -> None:
        """Keep the kernel page cache: with one writer, auto-invalidation only costs reads.

        Writes of up to 1 MB in one request (the default is 128 KB): a large WAL write on
        an ``O_DSYNC`` handle is then one round trip to the page server, not eight.
        libfuse caps it at its buffer and asks the kernel for the pages it needs.
        """
        if conn_info is not None:
            conn_info.want &= ~FUSE_CAP_AUTO_INVAL_DATA
            conn_info.max_write = MAX_WRITE_BYTES
        if config_3 is not None:
            config_3.kernel_cache = 1
            config_3.hard_remove = 1

    # --- metadata ------------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        rel = self._rel(path)
        if is_ephemeral(rel):
            return self._local_stat(rel)
        handle = self._handle(fh)
        attrs = self.view.attributes(rel, handle if isinstance(handle, Node) else None)
        kind = stat.S_IFDIR if attrs.kind == FileKind.DIR else stat.S_IFREG
        return {
            "st_mode": kind | attrs.mode, "st_nlink": 2 if attrs.kind == FileKind.DIR else 1,
            "st_size": attrs.size, "st_uid": self._uid, "st_gid": self._gid,
            "st_mtime": attrs.mtime_ns, "st_ctime": attrs.mtime_ns, "st_atime": attrs.mtime_ns,
            "st_blocks": (attrs.size + 511) // 512, "st_blksize": PAGE_SIZE,
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
        names = set() if is_ephemeral(rel) else self.view.listdir(rel)
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
        else:
            self.view.chmod(rel, mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        return 0  # ownership is the compute's, not the database's

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            os.utime(self._local(rel), ns=times or (time.time_ns(), time.time_ns()))
        else:
            self.view.touch(rel, times[1] if times else time.time_ns())
        return 0

    # --- namespace --------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            os.makedirs(self._local(rel), mode, exist_ok=False)
        else:
            self.view.mkdir(rel, mode)
        return 0

    def rmdir(self, path: str) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            os.rmdir(self._local(rel))
        else:
            self.view.rmdir(rel, lambda: self._remove_scratch_twin(rel))
        return 0

    def _remove_scratch_twin(self, rel: str) -> None:
        """Remove the scratch directory of a versioned one (it may hold pgsql_tmp)."""
        local = self._local(rel)
        if os.path.isdir(local):
            if os.listdir(local):
                raise fuse.FuseOSError(errno.ENOTEMPTY)
            os.rmdir(local)

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            os.makedirs(os.path.dirname(self._local(rel)), exist_ok=True)
            return self._new_handle(os.open(self._local(rel), os.O_RDWR | os.O_CREAT, mode))
        return self._new_handle(self.view.create(rel, mode), flags)

    def unlink(self, path: str) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            os.unlink(self._local(rel))
        else:
            self.view.unlink(rel)
        return 0

    def rename(self, old: str, new: str) -> int:
        src, dst = self._rel(old), self._rel(new)
        if is_ephemeral(src) or is_ephemeral(dst):
            if is_ephemeral(src) != is_ephemeral(dst):
                raise fuse.FuseOSError(errno.EXDEV)
            os.rename(self._local(src), self._local(dst))
        else:
            self.view.rename(src, dst)
        return 0

    # --- file data ---------------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        rel = self._rel(path)
        if is_ephemeral(rel):
            return self._new_handle(os.open(self._local(rel), flags & ~os.O_CREAT))
        fh = self._new_handle(self.view.open(rel), flags)
        if flags & os.O_TRUNC:
            self.truncate(path, 0, fh)
        return fh

    def release(self, path: str, fh: int) -> int:
        with self._handles_lock:
            target = self._handles.pop(fh, None)
            self._sync_handles.discard(fh)
        if isinstance(target, int):
            os.close(target)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close() is not a durability point; fsync is

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        out = bytearray(size)
        return bytes(out[:self.read_into(path, memoryview(out), offset, fh)])

    def read_into(self, path: str | None, out: memoryview, offset: int, fh: int) -> int:
        """Read up to ``len(out)`` bytes at ``offset`` into ``out``; how many were read."""
        target = self._handle(fh)
        if isinstance(target, int):
            return os.preadv(target, [out], offset)
        if target is None:
            raise fuse.FuseOSError(errno.EBADF)
        return self.view.read_into(target, out, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        target = self._handle(fh)
        if isinstance(target, int):
            return os.pwrite(target, data, offset)
        if target is None:
            raise fuse.FuseOSError(errno.EBADF)
        self.view.write(target, data, offset)
        if self._is_sync(fh):
            self.view.flush()  # O_DSYNC: durable before the write returns
        return len(data)

    def _is_sync(self, fh: int) -> bool:
        with self._handles_lock:
            return fh in self._sync_handles

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        rel = self._rel(path)
        handle = self._handle(fh)
        if isinstance(handle, int):
            os.ftruncate(handle, length)
        elif handle is None and is_ephemeral(rel):
            os.truncate(self._local(rel), length)
        else:
            self.view.truncate(rel, length, handle)
        return 0

    # --- durability --------------------------------------------------------------------------

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        target = self._handle(fh)
        if isinstance(target, int):
            os.fsync(target)
        else:
            self.view.flush()
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        self.view.flush()
        return 0

    def destroy(self, path: str) -> None:
        try:
            self.view.flush()
        except OSError:
            log.error("unmounted with unflushed changes: the page server is unreachable")
