"""The local store's journal of small creates: one flush per create-if-absent.

Creating an object durably by POSIX rules alone costs two journal commits of the
filesystem (fdatasync of the new file, fsync of its directory), and on ext4 most of the
page server's CPU per commit (rfcs/0023). Instead, the bytes and key of a small create
are appended to a preallocated journal file and fdatasync'ed (data blocks only: the
file's size and blocks were made durable when it was preallocated), and only then is
the object linked under its name, unsynced. Names and bytes reach the disk later, all
at once, by ``syncfs``; after it the journal's entries are dropped.

Crash consistency:
- A create returns True only once its entry is durable.
- A name is linked only after its entry is durable (under the journal's lock), so a name
  that survives a crash either has an entry, or was made durable by a ``syncfs`` that
  finished before its entry was dropped.
- Opening the store replays every journal first (under its lock): an entry whose object
  is missing, or whose file is shorter or different (its name reached the disk before its
  bytes), is written again, durably. So no reader of the store sees a torn object.
- A delete or replace of a key that has an entry settles the journal first (``syncfs``,
  then the entries dropped): a replay never brings back a removed or replaced object.
- An entry whose link never happened (a crash in between) is created by the replay: a
  create that did not answer may have landed, as the store contract already allows.

Layout (``.strata-tmp-journal-0`` and ``-1`` in the directory of a tenant, for its keys;
hidden from ``list`` by the reserved prefix), integers big-endian::

    header, 4096 bytes: 8 bytes JOURNAL_MAGIC, u64 epoch, u8 live (0: holds nothing)
    entries: u32 n, u32 crc (zlib.crc32 of the n bytes), then n bytes:
             u64 epoch, u16 key length, utf-8 key, the object's bytes
    zeros up to the file's capacity

Entries count only while their file is live and their epoch is the file's: the first
entry that is zero, fails its crc or carries another epoch ends the file. Of the two
files one is written at a time; when it is full (or holds MAX_ENTRIES entries) the other
(settled) takes over, live, at the next epoch, and the full one is settled in the
background. Epochs only grow (a
settled file keeps its own), so a settle started for one epoch never drops a later one.
Exclusion across processes: ``flock`` on file 0 (per open file, so two stores in one
process exclude each other too).
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from common.durable import fsync_dir

log = logging.getLogger(__name__)

JOURNAL_MAGIC = b"STRJNL\x00\x01"
JOURNAL_NAME = ".strata-tmp-journal-"  # the reserved prefix: never a key, never listed
MAX_JOURNALED_BYTES = 256 * 1024  # larger objects are created the direct way
CAPACITY = 1024 * 1024  # of each of the two files; a tenant pays 2 MB
# Entries per file before the other takes over, however small they are: a settle's
# syncfs also writes back the inode tables the unsynced links dirtied, and ext4 skips
# inodes freed in the last 35 s (5 s once their table block is clean) when it allocates
# one, so settling rarely made each new object's inode cost up to 250 µs (rfcs/0031).
MAX_ENTRIES = 128
_HEADER = struct.Struct(">8sQB")
_HEADER_BYTES = 4096
_PREFIX = struct.Struct(">II")  # n, crc
_BODY = struct.Struct(">QH")  # epoch, key length
_ZEROS = bytes(1 << 20)

_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(fd: int) -> None:
    """Write every dirty page and inode of the filesystem holding ``fd`` to disk and wait."""
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass
class _File:
    """One of the two journal files, as last read."""

    fd: int
    epoch: int = 0
    live: bool = False
    end: int = _HEADER_BYTES
    keys: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Entry:
    key: str
    data: bytes


class CreateJournal:
    """The journal of one directory group of a store; thread-safe and shared by processes
    through the files. Callers hold ``locked()`` around ``append`` and the link that
    follows it, and around deletes and replaces (``settle_if_holds``)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._thread_lock = threading.RLock()
        self._files: list[_File] = []
        try:
            for i in (0, 1):
                self._files.append(self._open(directory / f"{JOURNAL_NAME}{i}"))
        except BaseException:
            for file in self._files:
                os.close(file.fd)
            raise
        self._settler: threading.Thread | None = None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the journal, by this thread among all threads and processes."""
        with self._thread_lock:
            fcntl.flock(self._files[0].fd, fcntl.LOCK_EX)
            try:
                self._refresh()
                yield
            finally:
                fcntl.flock(self._files[0].fd, fcntl.LOCK_UN)

    def append(self, key: str, data: bytes) -> None:
        """Write an entry and make it durable (under ``locked``)."""
        encoded = key.encode()
        size = _PREFIX.size + _BODY.size + len(encoded) + len(data)
        active = self._active()
        if active is None or active.end + size > CAPACITY or len(active.keys) >= MAX_ENTRIES:
            active = self._switch(active)
        head = _BODY.pack(active.epoch, len(encoded)) + encoded  # the bytes are not copied
        crc = zlib.crc32(data, zlib.crc32(head))
        os.pwritev(active.fd, [_PREFIX.pack(len(head) + len(data), crc), head, data],
                   active.end)
        os.fdatasync(active.fd)
        active.end += size
        active.keys.add(key)

    def holds(self, key: str) -> bool:
        """Whether an entry for ``key`` is not settled yet (under ``locked``)."""
        return any(file.live and key in file.keys for file in self._files)

    def settle(self) -> None:
        """Make every journaled object durable under its name, then drop the entries
        (under ``locked``)."""
        if not any(file.live for file in self._files):
            return
        syncfs(self._files[0].fd)
        for file in self._files:
            self._drop(file)

    def entries(self) -> list[Entry]:
        """Every entry not yet settled, oldest first (under ``locked``)."""
        found: list[Entry] = []
        for file in sorted((f for f in self._files if f.live), key=lambda f: f.epoch):
            found.extend(entry for entry, _ in _scan(file.fd, file.epoch, _HEADER_BYTES))
        return found

    def close(self) -> None:
        settler = self._settler
        if settler is not None:
            settler.join()
        for file in self._files:
            os.close(file.fd)

    # --- internals (under ``locked``) ------------------------------------------

    def _active(self) -> _File | None:
        live = [file for file in self._files if file.live]
        return max(live, key=lambda file: file.epoch) if live else None

    def _switch(self, full: _File | None) -> _File:
        """Start the other file at the next epoch; settle the full one in the background
        (or now, if the other one is not settled yet)."""
        target = self._files[0] if full is None else self._files[1 - self._files.index(full)]
        if target.live:  # the background settle has not finished: settle now
            self.settle()
        epoch = max(file.epoch for file in self._files) + 1
        os.pwrite(target.fd, _HEADER.pack(JOURNAL_MAGIC, epoch, 1), 0)
        os.fdatasync(target.fd)
        target.epoch, target.live, target.end, target.keys = epoch, True, _HEADER_BYTES, set()
        if full is not None:
            self._settle_in_background(full, full.epoch)
        return target

    def _settle_in_background(self, file: _File, epoch: int) -> None:
        settler = self._settler
        if settler is not None and settler.is_alive():
            return  # it drops only the epoch it was started for; the switch settles later

        def run() -> None:
            try:
                syncfs(file.fd)
                with self.locked():
                    if file.live and file.epoch == epoch:
                        self._drop(file)
            except OSError as exc:
                log.warning("settling the store's create journal in %s failed (%s); the "
                            "next switch retries", self._directory, exc)

        self._settler = threading.Thread(target=run, name="strata-journal-settle", daemon=True)
        self._settler.start()

    def _drop(self, file: _File) -> None:
        if not file.live:
            return
        os.pwrite(file.fd, _HEADER.pack(JOURNAL_MAGIC, file.epoch, 0), 0)
        os.fdatasync(file.fd)
        file.live, file.end, file.keys = False, _HEADER_BYTES, set()

    def _refresh(self) -> None:
        """Catch up with what other processes wrote since this one last looked."""
        for file in self._files:
            magic, epoch, flag = _HEADER.unpack(os.pread(file.fd, _HEADER.size, 0))
            live = magic == JOURNAL_MAGIC and flag == 1
            if (epoch, live) != (file.epoch, file.live):
                file.epoch, file.live, file.end, file.keys = epoch, live, _HEADER_BYTES, set()
            if file.live:
                for entry, end in _scan(file.fd, file.epoch, file.end):
                    file.keys.add(entry.key)
                    file.end = end

    def _open(self, path: Path) -> _File:
        """Open a journal file, creating it preallocated (zeros, fsynced) if missing."""
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            fd = _create_preallocated(path)
        return _File(fd)


def _create_preallocated(path: Path) -> int:
    """A new journal file of CAPACITY zero bytes under ``path``, durable, or the one a
    concurrent creator made first."""
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.open(".", os.O_TMPFILE | os.O_RDWR, 0o600, dir_fd=directory)
        try:
            _fill(fd)
            os.link(f"/proc/self/fd/{fd}", path.name, dst_dir_fd=directory)
        except FileExistsError:
            os.close(fd)
            return os.open(path, os.O_RDWR)
        except BaseException:
            os.close(fd)
            raise
    finally:
        os.close(directory)
    fsync_dir(path.parent)
    return fd


def _fill(fd: int) -> None:
    offset = 0
    while offset < CAPACITY:
        offset += os.pwrite(fd, _ZEROS[: CAPACITY - offset], offset)
    os.fsync(fd)


def _scan(fd: int, epoch: int, start: int) -> Iterator[tuple[Entry, int]]:
    """The entries of ``epoch`` from ``start`` on, each with where the next begins."""
    pos = start
    while pos + _PREFIX.size <= CAPACITY:
        n, crc = _PREFIX.unpack(os.pread(fd, _PREFIX.size, pos))
        if n < _BODY.size or pos + _PREFIX.size + n > CAPACITY:
            return
        raw = os.pread(fd, n, pos + _PREFIX.size)
        if len(raw) != n or zlib.crc32(raw) != crc:
            return
        entry_epoch, key_length = _BODY.unpack_from(raw)
        if entry_epoch != epoch:
            return
        key_end = _BODY.size + key_length
        yield Entry(raw[_BODY.size:key_end].decode(), raw[key_end:]), pos + _PREFIX.size + n
        pos += _PREFIX.size + n

