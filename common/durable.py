"""Writing files so that they survive a crash: fsync the data, rename, fsync the directory."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def fsync_dir(directory: Path) -> None:
    """Make the creation, rename or removal of entries in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replaced_durably(path: Path, mode: int = 0o600,
                     buffering: int = -1) -> Iterator[BinaryIO]:
    """Write a new ``path`` through the yielded file: it replaces the old one atomically
    and durably once the block ends; readers see old or new, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
        with open(fd, "wb", buffering=buffering) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_durably(path: Path, data: bytes, mode: int = 0o600, *, replace: bool = True) -> bool:
    """Replace ``path`` with ``data`` atomically and durably; readers see old or new.

    The file has ``mode`` from its creation, before any byte is written. With ``replace``
    False an existing ``path`` is kept and False returned: of concurrent writers exactly
    one creates it, the others get False.
    """
    if replace:
        with replaced_durably(path, mode) as out:
            out.write(data)
        return True
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # unique per writer
    try:
        os.fchmod(fd, mode)
        with open(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, path)  # atomic, and unlike rename never replaces
        except FileExistsError:
            return False
    finally:
        os.unlink(temp)
    fsync_dir(path.parent)
    return True


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically but without fsync: for files rewritten
    often and only shown (a crash may lose the newest version, never leave a torn one)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
