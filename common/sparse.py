"""Files that take disk only for what they hold: punching holes, counting allocated bytes.

A file made by extending its size (``ftruncate``) is sparse: blocks are allocated only
where bytes are written. ``punch_hole`` gives a written range's blocks back to the
filesystem (the range then reads as zeros; the size stays), so a file of fixed-size slots
costs disk for the slots in use only. ``allocated_bytes`` is what ``du`` counts.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["allocated_bytes", "punch_hole", "punch_runs", "runs"]

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Free the blocks of ``length`` bytes at ``offset`` of the file open as ``fd``."""
    if length <= 0:
        return
    if _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"punching a hole in a file: {os.strerror(err)}")


def runs(indices: Iterable[int]) -> Iterator[tuple[int, int]]:
    """(first, count) of each run of consecutive numbers in sorted ``indices``."""
    first = count = 0
    for index in indices:
        if count and index == first + count:
            count += 1
            continue
        if count:
            yield first, count
        first, count = index, 1
    if count:
        yield first, count


def punch_runs(fd: int, indices: Iterable[int], unit: int) -> None:
    """Punch the ``unit``-byte slots numbered ``indices`` (sorted), one call per run."""
    for first, count in runs(indices):
        punch_hole(fd, first * unit, count * unit)


def allocated_bytes(path: Path) -> int:
    """Bytes the filesystem allocated to ``path`` (``st_blocks``); 0 if it is absent."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0
