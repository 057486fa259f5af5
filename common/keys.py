"""Keys of the versioned store: relations, blocks and file-metadata keys.

A page key is ``(relation, block)``. PostgreSQL relation files map to their
RelTag ``(spcOid, dbOid, relNumber, fork)`` with block numbers running across
1 GB segment files; every other file gets a synthetic relation of its own.
File metadata is keyed by path. Both live in one ordered key space: metadata
keys (prefix 0x00) sort before page keys (prefix 0x01).
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

PAGE_SIZE = 8192
RELSEG_BLOCKS = 131072  # blocks per 1 GB segment file
ZERO_PAGE = bytes(PAGE_SIZE)

GLOBALTABLESPACE_OID = 1664
DEFAULTTABLESPACE_OID = 1663

FORK_NAMES = {"": 0, "fsm": 1, "vm": 2, "init": 3}
SYNTHETIC_FORK = 0xFF

META_PREFIX = b"\x00"
PAGE_PREFIX = b"\x01"
KEYSPACE_START = b"\x00"
KEYSPACE_END = b"\x02"

_REL_STRUCT = struct.Struct(">IIIB")
RELATION_BYTES = _REL_STRUCT.size  # 13

_REL_FILE = re.compile(r"^(\d+)(?:_(fsm|vm|init))?(?:\.(\d+))?$")


class Relation(NamedTuple):
    """A relation: a RelTag, or a synthetic file identity (fork 0xFF)."""

    spc: int
    db: int
    rel: int
    fork: int

    def to_bytes(self) -> bytes:
        return _REL_STRUCT.pack(self.spc, self.db, self.rel, self.fork)

    @staticmethod
    def from_bytes(raw: bytes) -> Relation:
        return Relation(*_REL_STRUCT.unpack(raw))

    @property
    def is_synthetic(self) -> bool:
        return self.fork == SYNTHETIC_FORK

    @staticmethod
    def synthetic(file_id: int) -> Relation:
        """A synthetic relation for a non-relation file; ``file_id`` is a u64."""
        return Relation(0, file_id >> 32, file_id & 0xFFFFFFFF, SYNTHETIC_FORK)

    def __str__(self) -> str:
        if self.is_synthetic:
            return f"file:{(self.db << 32) | self.rel:x}"
        return f"{self.spc}/{self.db}/{self.rel}.{self.fork}"


def parse_relation_path(path: str) -> tuple[Relation, int] | None:
    """Map a PGDATA-relative path to ``(RelTag, segment number)``, or None.

    Recognises ``base/<db>/<rel>[_fork][.seg]``, ``global/<rel>[_fork][.seg]``
    and ``pg_tblspc/<spc>/<version dir>/<db>/<rel>[_fork][.seg]``.
    """
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "base" and parts[1].isdigit():
        spc, db, name = DEFAULTTABLESPACE_OID, int(parts[1]), parts[2]
    elif len(parts) == 2 and parts[0] == "global":
        spc, db, name = GLOBALTABLESPACE_OID, 0, parts[1]
    elif (
        len(parts) == 5
        and parts[0] == "pg_tblspc"
        and parts[1].isdigit()
        and parts[3].isdigit()
    ):
        spc, db, name = int(parts[1]), int(parts[3]), parts[4]
    else:
        return None
    match = _REL_FILE.match(name)
    if match is None:
        return None
    relnum = int(match.group(1))
    fork = FORK_NAMES[match.group(2) or ""]
    segno = int(match.group(3) or 0)
    if relnum > 0xFFFFFFFF or spc > 0xFFFFFFFF or db > 0xFFFFFFFF:
        return None
    return Relation(spc, db, relnum, fork), segno


def path_slot(path: str) -> tuple[bytes, int] | None:
    """Where a relation segment file's pages live: (RelTag bytes, first block), or None."""
    parsed = parse_relation_path(path)
    if parsed is None:
        return None
    relation, segno = parsed
    return relation.to_bytes(), segno * RELSEG_BLOCKS


def page_key(relation: Relation, block: int) -> bytes:
    """The ordered byte key of a page."""
    return PAGE_PREFIX + relation.to_bytes() + block.to_bytes(4, "big")


def meta_key(path: str) -> bytes:
    """The ordered byte key of a file's metadata."""
    return META_PREFIX + path.encode()


def relation_block_range(relation: Relation, start: bytes, end: bytes) -> tuple[int, int]:
    """The blocks ``[lo, hi)`` of ``relation`` whose page keys fall in ``[start, end)``."""
    prefix = PAGE_PREFIX + relation.to_bytes()
    first = prefix + b"\x00\x00\x00\x00"
    after = prefix + b"\xff\xff\xff\xff\x00"  # just above the last possible block
    if end <= first or start >= after:
        return (0, 0)
    lo = 0 if start <= first else _block_bound(start, prefix)
    hi = 1 << 32 if end >= after else _block_bound(end, prefix)
    return (lo, max(lo, hi))


def _block_bound(key: bytes, prefix: bytes) -> int:
    """Smallest block whose key is >= ``key``, for ``key`` inside the relation's range."""
    tail = key[len(prefix):]
    base = int.from_bytes(tail[:4].ljust(4, b"\x00"), "big")
    exact = len(tail) <= 4
    return base if exact else base + 1
