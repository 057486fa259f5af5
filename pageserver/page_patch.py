"""Byte-range patches between two versions of an 8 KB page.

PostgreSQL rewrites its last WAL page from the start on every commit, so consecutive
versions of that page differ only in the records appended since (plus a few header
bytes); a page of a relation written twice differs in the tuples it changed. A patch
holds only those bytes: runs of ``(u16 offset, u16 length, bytes)`` in increasing
offset order, each laid over the older version. Differences closer than ``_GAP`` bytes
share a run, since a run header costs four bytes.
"""

from __future__ import annotations

import struct
from typing import Final

import numpy as np

from common.keys import PAGE_SIZE

_RUN: Final = struct.Struct("<HH")  # offset, length
_GAP: Final = 8  # equal bytes between two differences that still end a run


class PatchError(ValueError):
    """A patch that does not apply to a page (malformed, or running past its end)."""


def make_patch(old: bytes, new: bytes) -> bytes:
    """The runs that turn ``old`` into ``new`` (both one page); empty if they are equal."""
    if len(old) != PAGE_SIZE or len(new) != PAGE_SIZE:
        raise ValueError("a patch is made between two whole pages")
    changed = np.flatnonzero(np.frombuffer(old, np.uint8) != np.frombuffer(new, np.uint8))
    if not changed.size:
        return b""
    breaks = np.flatnonzero(np.diff(changed) > _GAP)
    starts = changed[np.concatenate(([0], breaks + 1))].tolist()
    ends = (changed[np.concatenate((breaks, [changed.size - 1]))] + 1).tolist()
    out = bytearray()
    for start, end in zip(starts, ends, strict=True):
        out += _RUN.pack(start, end - start)
        out += new[start:end]
    return bytes(out)


def apply_patch(old: bytes, patch: bytes) -> bytes:
    """``old`` with the runs of ``patch`` laid over it."""
    page = bytearray(old)
    pos = 0
    floor = 0  # runs are in increasing order and do not overlap
    while pos < len(patch):
        if pos + _RUN.size > len(patch):
            raise PatchError("patch ends inside a run header")
        offset, length = _RUN.unpack_from(patch, pos)
        pos += _RUN.size
        if offset < floor or offset + length > PAGE_SIZE or pos + length > len(patch) \
                or not length:
            raise PatchError(f"bad run at page offset {offset}, {length} bytes")
        page[offset:offset + length] = patch[pos:pos + length]
        pos += length
        floor = offset + length
    return bytes(page)
