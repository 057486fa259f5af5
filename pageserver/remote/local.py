"""Remote storage in a local directory: for tests, single-machine setups and benchmarks.

Each object is the file ``root/<key>``. Writes go to a temporary file in the target
directory which is synced and then renamed (put) or hard-linked (put_if_absent) into
place, and the directory is fsynced, so an object is either absent, old or new, even
after a crash, and concurrent writers from any thread or process never clash.

put_if_absent is on every acknowledgement's path (the ingest log creates a chunk per group
commit). A small one (up to ``MAX_JOURNALED_BYTES``) is an unnamed file (``O_TMPFILE``)
written but not synced, its bytes and key appended to the create journal of its tenant
and fdatasync'ed there (one flush of data blocks), then linked under its name (``linkat``
fails if the name exists: the condition, atomic across processes); names and bytes are
made durable later, many at once (``create_journal.py`` says why that is crash-safe). A
larger one is written and fdatasynced, linked, and its directory fsynced: two syncs, the
least that makes both the bytes and the name durable by POSIX rules alone. Every create,
replace and delete of a tenant's keys holds its journal's lock for the step that changes
the name, so a replay of the journal never undoes one. Where ``O_TMPFILE`` is not
supported there is no journal, and creates go through a named temporary file.

A directory tree cannot hold both ``a`` and ``a/b`` (S3 can): writing one of them while
the other exists fails with RemoteStorageError.
"""

from __future__ import annotations

import builtins
import errno
import logging
import os
import stat
import tempfile
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import NoReturn

from common.durable import fsync_dir
from common.errors import NotFoundError
from pageserver.remote.base import (
    RESERVED_SEGMENT_PREFIX,
    RemoteStorage,
    RemoteStorageError,
    check_key,
    check_prefix,
    check_range,
)
from pageserver.remote.create_journal import (
    JOURNAL_NAME,
    MAX_JOURNALED_BYTES,
    CreateJournal,
    Entry,
)

log = logging.getLogger(__name__)

# What opening or removing a missing object fails with: the path is absent, is a
# directory (only other keys live below it), or runs through a file.
_MISSING = (FileNotFoundError, IsADirectoryError, NotADirectoryError)

# What opening an O_TMPFILE file fails with where the kernel or filesystem lacks it.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})

# Keys below ``tenants/<tenant>/`` share their tenant's create journal, so tenants never
# wait for each other's flushes; other keys are created rarely, and never journaled.
_TENANTS = "tenants"
# Why a new create journal may fail to be made, leaving creates the slower way.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})
_SECTOR = 512  # the unit a crash can leave unwritten in a file


class LocalDirectoryStorage(RemoteStorage):
    """Objects as files under ``root``; safe for concurrent use by threads and processes."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root).absolute()
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self._root, 0o700)  # objects are the server's alone (also older ones below)
        self._journals: dict[str, CreateJournal] = {}
        self._journals_lock = threading.Lock()
        self._journaling = _supports_tmpfile(self._root)
        weakref.finalize(self, _close_all, self._journals)
        if self._journaling:
            try:
                self._replay_journals()
            except OSError as e:
                self._fail("replay of the create journals", "", e)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            self._make_dirs(path.parent)
            tmp = self._write_temp(path.parent, data)
            try:
                with self._settled(key):
                    os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            fsync_dir(path.parent)
        except OSError as e:
            self._fail("put", key, e)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            journal = self._journal(key)
            if journal is not None and len(data) <= MAX_JOURNALED_BYTES:
                return self._create_journaled(journal, key, path, data)
            self._make_dirs(path.parent)
            directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                with journal.locked() if journal is not None else nullcontext():
                    if not self._link_new(directory, path, data):
                        return False
                os.fsync(directory)  # the name is durable: the object exists after a crash
            finally:
                os.close(directory)
        except OSError as e:
            self._fail("put_if_absent", key, e)
        return True

    def _create_journaled(self, journal: CreateJournal, key: str, path: Path,
                          data: bytes) -> bool:
        """put_if_absent through the create journal: durable once the entry is. The
        commit path: one open of the directory (made first only if it is missing) and
        one lstat of the name, no walk up the tree (rfcs/0031)."""
        try:
            directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            self._make_dirs(path.parent)
            directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o600, dir_fd=directory)
            try:
                _write_all(fd, data)
                with journal.locked():
                    if _taken(directory, path.name):
                        return False
                    journal.append(key, data)
                    try:
                        os.link(f"/proc/self/fd/{fd}", path.name, dst_dir_fd=directory)
                    except OSError:
                        journal.settle()  # the entry must not bring back a name not ours
                        raise
            finally:
                os.close(fd)
        finally:
            os.close(directory)
        return True

    def _link_new(self, directory: int, path: Path, data: bytes) -> bool:
        """Publish a fully written, synced file as ``path`` unless the name exists
        (False then); the caller makes the name durable."""
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o600, dir_fd=directory)
        except OSError as e:
            if e.errno not in _NO_TMPFILE:
                raise
            return self._link_named_temp(path, data)
        try:
            _write_all(fd, data)
            os.fdatasync(fd)
            try:
                # linkat() fails if the name exists, atomically across threads and processes
                os.link(f"/proc/self/fd/{fd}", path.name, dst_dir_fd=directory)
            except FileExistsError:
                if path.is_dir():
                    raise
                return False
        finally:
            os.close(fd)
        return True

    def _link_named_temp(self, path: Path, data: bytes) -> bool:
        """``_link_new`` through a named temporary file, removed again."""
        tmp = self._write_temp(path.parent, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            if path.is_dir():
                raise
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except _MISSING as e:
            raise NotFoundError(f"object not found: {key!r} in {self.describe()}") from e
        except OSError as e:
            self._fail("get", key, e)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        path = self._path(key)
        try:
            with path.open("rb") as f:
                f.seek(start)
                return f.read(length)
        except _MISSING as e:
            raise NotFoundError(f"object not found: {key!r} in {self.describe()}") from e
        except OSError as e:
            self._fail("get_range", key, e)

    def list(self, prefix: str) -> builtins.list[str]:
        check_prefix(prefix)
        # Walk only below the deepest directory the prefix names completely, and only
        # into directories that can hold matching keys.
        base = prefix.rpartition("/")[0]
        top = self._root.joinpath(*base.split("/")) if base else self._root
        keys: builtins.list[str] = []
        try:
            for dirpath, dirnames, filenames in os.walk(top, onerror=self._walk_error):
                rel = Path(dirpath).relative_to(self._root).as_posix()
                here = "" if rel == "." else rel + "/"
                dirnames[:] = [
                    d
                    for d in dirnames
                    if (here + d + "/").startswith(prefix) or prefix.startswith(here + d + "/")
                ]
                keys.extend(
                    here + name
                    for name in filenames
                    if not name.startswith(RESERVED_SEGMENT_PREFIX)
                    and (here + name).startswith(prefix)
                )
        except OSError as e:
            self._fail("list", prefix, e)
        keys.sort()
        return keys

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            with self._settled(key):
                path.unlink()
            fsync_dir(path.parent)
        except _MISSING:
            return
        except OSError as e:
            self._fail("delete", key, e)

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every object in ``keys`` (missing ones are ignored), syncing each
        directory once at the end rather than once per object: a log release deletes
        thousands of chunks from one directory."""
        checked = [check_key(key) for key in keys]  # every key checked before any delete
        groups: dict[str, list[str]] = {}
        for key in checked:
            groups.setdefault(_group(key), []).append(key)
        touched: set[Path] = set()
        for group in groups.values():
            try:
                with self._settled(*group):
                    touched.update(self._unlink_each(group))
            except OSError as e:
                self._fail("delete", group[0], e)
        for directory in touched:
            try:
                fsync_dir(directory)
            except OSError as e:
                self._fail("delete", str(directory.relative_to(self._root)), e)

    def delete_prefix(self, prefix: str) -> None:
        """Remove the objects under ``prefix``, then, for a whole tenant's prefix, its
        create journal (2 MB preallocated), and every directory left empty below the
        prefix's directory, that one included."""
        super().delete_prefix(prefix)
        group = _group(prefix + "key")
        if group and prefix == group + "/":
            self._drop_journal(group)
        base = prefix.rpartition("/")[0]
        if base:
            self._remove_empty_directories(self._root.joinpath(*base.split("/")))

    def _drop_journal(self, group: str) -> None:
        """Close and delete ``group``'s create journal: its keys are all gone, so it holds
        nothing a replay would need."""
        with self._journals_lock:
            journal = self._journals.pop(group, None)
        directory = self._root.joinpath(*group.split("/"))
        try:
            if journal is not None:
                with journal.locked():
                    pass  # an append under way in this process has ended
                journal.close()
            for i in (0, 1):
                (directory / f"{JOURNAL_NAME}{i}").unlink(missing_ok=True)
        except OSError as e:
            self._fail("delete of the create journal", group, e)

    def _remove_empty_directories(self, top: Path) -> None:
        """Remove ``top`` and the directories below it that hold nothing (deepest first);
        a directory another create has just used again stays."""
        try:
            for dirpath, _, _ in os.walk(top, topdown=False, onerror=self._walk_error):
                with suppress(OSError):  # not empty: in use again
                    os.rmdir(dirpath)
            if top.parent.exists():
                fsync_dir(top.parent)
        except OSError as e:
            self._fail("delete", str(top.relative_to(self._root)), e)

    def _unlink_each(self, keys: builtins.list[str]) -> builtins.set[Path]:
        """Remove the files of ``keys`` (missing ones are ignored); their directories."""
        touched: set[Path] = set()
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
            except _MISSING:
                continue
            except OSError as e:
                self._fail("delete", key, e)
            touched.add(path.parent)
        return touched

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            st = path.stat()
        except _MISSING as e:
            raise NotFoundError(f"object not found: {key!r} in {self.describe()}") from e
        except OSError as e:
            self._fail("size", key, e)
        if not stat.S_ISREG(st.st_mode):
            raise NotFoundError(f"object not found: {key!r} in {self.describe()}")
        return st.st_size

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def describe(self) -> str:
        return f"local:{self._root}"

    # --- the create journals ----------------------------------------------------

    def _journal(self, key: str) -> CreateJournal | None:
        """The create journal of ``key``'s tenant; None for keys outside a tenant (created
        rarely: the direct way), without journaling, or while its disk has no room for
        a new journal (which therefore holds no entry)."""
        group = _group(key)
        return self._group_journal(group) if group and self._journaling else None

    def _group_journal(self, group: str) -> CreateJournal | None:
        """The create journal of ``group`` (``tenants/<tenant>``), opened once."""
        with self._journals_lock:
            journal = self._journals.get(group)
            if journal is None:
                directory = self._root.joinpath(*group.split("/"))
                self._make_dirs(directory)
                try:
                    journal = self._journals[group] = CreateJournal(directory)
                except OSError as e:
                    if e.errno not in _NO_ROOM:
                        raise
                    log.warning("%s: no room for a create journal in %s (%s); creating "
                                "objects there the slower way", self.describe(), directory, e)
            return journal

    @contextmanager
    def _settled(self, *keys: str) -> Iterator[None]:
        """Hold the journal of ``keys`` (all of one group), settled first if it holds an
        entry for one of them, while they are replaced or removed."""
        journal = self._journal(keys[0])
        if journal is None:
            yield
            return
        with journal.locked():
            if any(journal.holds(key) for key in keys):
                journal.settle()
            yield

    def _replay_journals(self) -> None:
        """Write again, durably, every journaled object that a crash lost or cut short,
        then drop the entries."""
        for path in self._root.glob(f"{_TENANTS}/*/{JOURNAL_NAME}0"):
            journal = self._group_journal(path.parent.relative_to(self._root).as_posix())
            if journal is None:
                continue
            with journal.locked():
                repaired = [entry for entry in journal.entries() if self._repair(entry)]
                if repaired:
                    journal.settle()
                    log.warning("%s: wrote %d objects again from the create journal in %s "
                                "(a crash lost them)", self.describe(), len(repaired),
                                path.parent)

    def _repair(self, entry: Entry) -> bool:
        """Write ``entry``'s object again if a crash took its name or bytes not yet written
        back; a file that differs otherwise is damage, left for checksums to report."""
        path = self._path(entry.key)
        try:
            if not _lost_to_a_crash(path.read_bytes(), entry.data):
                return False
        except _MISSING:
            pass
        self._make_dirs(path.parent)
        tmp = self._write_temp(path.parent, entry.data)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
        return True

    def _path(self, key: str) -> Path:
        return self._root.joinpath(*check_key(key).split("/"))

    def _make_dirs(self, directory: Path) -> None:
        """Create ``directory`` and missing parents, syncing each new entry to disk."""
        missing: builtins.list[Path] = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            try:
                d.mkdir(mode=0o700)
            except FileExistsError:
                if not d.is_dir():  # an object named like the directory: a key conflict
                    raise
            fsync_dir(d.parent)

    @staticmethod
    def _write_temp(directory: Path, data: bytes) -> Path:
        """A new, synced file in ``directory`` holding ``data``, named so list() skips it."""
        fd, name = tempfile.mkstemp(prefix=RESERVED_SEGMENT_PREFIX, dir=directory)
        tmp = Path(name)
        try:
            _write_all(fd, data)
            os.fdatasync(fd)  # the data and the size to read it by; the rename is synced after
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        return tmp

    @staticmethod
    def _walk_error(error: OSError) -> None:
        """Let list() ignore a directory that is missing (nothing to list), raise otherwise."""
        if not isinstance(error, FileNotFoundError | NotADirectoryError):
            raise error

    def _fail(self, operation: str, key: str, error: OSError) -> NoReturn:
        raise RemoteStorageError(
            f"{operation} of {key!r} in {self.describe()} failed: {error}"
        ) from error


def _group(key: str) -> str:
    """Whose create journal ``key`` is in: ``tenants/<tenant>``, or "" (none)."""
    parts = key.split("/", 2)
    return "/".join(parts[:2]) if len(parts) == 3 and parts[0] == _TENANTS else ""


def _lost_to_a_crash(found: bytes, written: bytes) -> bool:
    """Whether ``found`` is ``written`` cut short or with sectors still zero (what a crash
    leaves of a file whose bytes were not written back), and not all of it."""
    if found == written or len(found) > len(written):
        return False
    for start in range(0, len(found), _SECTOR):
        piece = found[start:start + _SECTOR]
        if piece != written[start:start + len(piece)] and piece.count(0) != len(piece):
            return False
    return True


def _supports_tmpfile(directory: Path) -> bool:
    """Whether unnamed files can be made in ``directory`` (the journal needs them)."""
    try:
        os.close(os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o600))
    except OSError as e:
        if e.errno in _NO_TMPFILE:
            return False
        raise
    return True


def _close_all(journals: dict[str, CreateJournal]) -> None:
    for journal in journals.values():
        journal.close()


def _taken(directory: int, name: str) -> bool:
    """Whether ``name`` exists in ``directory`` (a descriptor); a directory there is a
    key conflict, an error."""
    try:
        mode = os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "a directory is where an object is named", name)
    return True


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
