"""Names of relations read from a branch's own catalog pages, without a compute.

PostgreSQL keeps ``pg_class`` (and ``pg_database``) at file numbers that
``pg_filenode.map`` records; ``pg_index`` and ``pg_namespace`` are ordinary catalogs
``pg_class`` names. Their leading columns are fixed-width and never null, so a heap
tuple gives them at fixed offsets after its header. No commit log is read: a tuple whose
insert is marked aborted (not frozen) is skipped, and where an object has several versions the one
not marked deleted wins (docs/rfcs/0017).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, TypeVar

from common.keys import PAGE_SIZE

PG_CLASS: Final = 1259
PG_DATABASE: Final = 1262
PG_INDEX: Final = 2610
PG_NAMESPACE: Final = 2615

_MAP_MAGIC: Final = 0x592717
_MAP_ENTRIES: Final = 62
_PAGE_HEADER: Final = 24
_LP_NORMAL: Final = 1
_XMIN_COMMITTED: Final = 0x0100
_XMIN_INVALID: Final = 0x0200  # with _XMIN_COMMITTED too: frozen, not aborted
_XMAX_INVALID: Final = 0x0800
_XMAX_LOCK_ONLY: Final = 0x0080
_NAME_LEN: Final = 64
_T = TypeVar("_T")


def read_filenode_map(raw: bytes) -> dict[int, int]:
    """``pg_filenode.map``: catalog oid -> file number; empty if it is not one."""
    if len(raw) < 8:
        return {}
    magic, count = struct.unpack_from("<ii", raw)
    if magic != _MAP_MAGIC or not 0 <= count <= _MAP_ENTRIES or len(raw) < 8 + 8 * count:
        return {}
    pairs = struct.unpack_from(f"<{2 * count}I", raw, 8)
    return dict(zip(pairs[0::2], pairs[1::2], strict=True))


@dataclass(frozen=True)
class Tuple:
    """One heap tuple's data and whether it is the live version as far as hint bits
    and xmax tell."""

    data: bytes
    live: bool


def heap_tuples(pages: bytes) -> Iterator[Tuple]:
    """The tuples of a heap file's pages whose insert is not marked aborted."""
    for start in range(0, len(pages) - PAGE_SIZE + 1, PAGE_SIZE):
        page = pages[start:start + PAGE_SIZE]
        lower = struct.unpack_from("<H", page, 12)[0]
        if lower <= _PAGE_HEADER or lower > PAGE_SIZE:
            continue  # a new (all-zero) page
        for slot in range(_PAGE_HEADER, lower - 3, 4):
            word = struct.unpack_from("<I", page, slot)[0]
            offset, flags, length = word & 0x7FFF, (word >> 15) & 3, word >> 17
            if flags != _LP_NORMAL or length < 23 or offset + length > PAGE_SIZE:
                continue
            xmax = struct.unpack_from("<I", page, offset + 4)[0]
            infomask = struct.unpack_from("<H", page, offset + 20)[0]
            hoff = page[offset + 22]
            aborted = infomask & (_XMIN_COMMITTED | _XMIN_INVALID) == _XMIN_INVALID
            if aborted or hoff > length:
                continue
            live = xmax == 0 or bool(infomask & (_XMAX_INVALID | _XMAX_LOCK_ONLY))
            yield Tuple(page[offset + hoff:offset + length], live)


def _name(data: bytes, at: int) -> str:
    return data[at:at + _NAME_LEN].split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True)
class ClassRow:
    """What ``pg_class`` says of one relation."""

    oid: int
    name: str
    namespace: int
    filenode: int  # 0: a mapped catalog (pg_filenode.map has it)
    toast: int  # reltoastrelid
    kind: str


def _class_row(data: bytes) -> ClassRow | None:
    if len(data) < 116:
        return None
    oid, = struct.unpack_from("<I", data, 0)
    namespace, = struct.unpack_from("<I", data, 68)
    filenode, = struct.unpack_from("<I", data, 88)
    toast, = struct.unpack_from("<I", data, 108)
    return ClassRow(oid, _name(data, 4), namespace, filenode, toast, chr(data[115]))


def _newest_by_key(rows: Iterator[tuple[int, _T, bool]]) -> dict[int, _T]:
    """One value per key: the live version if there is one, else any."""
    chosen: dict[int, tuple[_T, bool]] = {}
    for key, value, live in rows:
        if key not in chosen or (live and not chosen[key][1]):
            chosen[key] = (value, live)
    return {key: value for key, (value, _) in chosen.items()}


@dataclass(frozen=True)
class RelationName:
    """A relation of one database as a person names it."""

    oid: int
    schema: str
    name: str
    kind: str
    table: str  # an index's or TOAST table's own table; "" otherwise


FileReader = Callable[[str], bytes | None]
"""Reads a whole file of the data directory at the point looked at; None: no such file."""


def database_names(read: FileReader) -> dict[int, str]:
    """Database oid -> name, from the shared ``pg_database``."""
    filenode = read_filenode_map(read("global/pg_filenode.map") or b"").get(PG_DATABASE)
    pages = read(f"global/{filenode}") if filenode else None
    if not pages:
        return {}
    rows = ((struct.unpack_from("<I", t.data)[0], _name(t.data, 4), t.live)
            for t in heap_tuples(pages) if len(t.data) >= 4 + _NAME_LEN)
    return _newest_by_key(rows)


def relation_names(read: FileReader, db: int) -> dict[int, RelationName]:
    """File number -> name of every relation ``pg_class`` of database ``db`` lists."""
    directory = f"base/{db}"
    mapped = read_filenode_map(read(f"{directory}/pg_filenode.map") or b"")
    pages = read(f"{directory}/{mapped[PG_CLASS]}") if PG_CLASS in mapped else None
    if not pages:
        return {}
    classes = _newest_by_key((row.oid, row, t.live) for t in heap_tuples(pages)
                             if (row := _class_row(t.data)) is not None)

    def catalog_rows(oid: int, width: int) -> Iterator[Tuple]:
        row = classes.get(oid)
        filenode = (row.filenode or mapped.get(oid, 0)) if row else 0
        raw = read(f"{directory}/{filenode}") if filenode else None
        return (t for t in heap_tuples(raw or b"") if len(t.data) >= width)

    schemas = _newest_by_key((struct.unpack_from("<I", t.data)[0], _name(t.data, 4), t.live)
                             for t in catalog_rows(PG_NAMESPACE, 4 + _NAME_LEN))
    index_of: dict[int, int] = _newest_by_key(
        (*struct.unpack_from("<II", t.data), t.live) for t in catalog_rows(PG_INDEX, 8))
    toast_of = {row.toast: row.oid for row in classes.values() if row.toast}
    named: dict[int, RelationName] = {}
    for row in classes.values():
        filenode = row.filenode or mapped.get(row.oid, 0)
        if not filenode:
            continue
        owner = classes.get(index_of.get(row.oid) or toast_of.get(row.oid, 0))
        named[filenode] = RelationName(row.oid, schemas.get(row.namespace, ""), row.name,
                                       row.kind, owner.name if owner else "")
    return named
