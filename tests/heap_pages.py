"""Heap pages and ``pg_filenode.map`` files laid out as PostgreSQL 15 writes them, for tests
of what Strata reads from catalogs without a compute (``pageserver.catalog``)."""

from __future__ import annotations

import struct

from common.keys import PAGE_SIZE

XMAX_INVALID = 0x0800
XMIN_INVALID = 0x0200
XMIN_FROZEN = 0x0300  # committed and invalid: frozen
_HEADER = 24
_TUPLE_HEADER = 24  # 23 bytes, MAXALIGNed


def heap_page(tuples: list[tuple[bytes, int, int]]) -> bytes:
    """A heap page holding ``(data, xmax, infomask)`` tuples in line-pointer order."""
    page = bytearray(PAGE_SIZE)
    upper = PAGE_SIZE
    for slot, (data, xmax, infomask) in enumerate(tuples):
        length = _TUPLE_HEADER + len(data)
        upper = (upper - length) & ~7
        header = struct.pack("<IIIIHHHB", 2, xmax, 0, 0, 0, 0, infomask, _TUPLE_HEADER)
        page[upper:upper + length] = header.ljust(_TUPLE_HEADER, b"\0") + data
        struct.pack_into("<I", page, _HEADER + 4 * slot, upper | (1 << 15) | (length << 17))
    struct.pack_into("<HHHH", page, 12, _HEADER + 4 * len(tuples), upper, PAGE_SIZE, 0x2004)
    return bytes(page)


def name(text: str) -> bytes:
    """A NameData column."""
    return text.encode().ljust(64, b"\0")


def pg_class_row(oid: int, relname: str, filenode: int, kind: str, namespace: int = 2200,
                 toast: int = 0) -> bytes:
    """The leading, fixed-width columns of a ``pg_class`` row."""
    row = bytearray(120)
    struct.pack_into("<I", row, 0, oid)
    row[4:68] = name(relname)
    struct.pack_into("<I", row, 68, namespace)
    struct.pack_into("<I", row, 88, filenode)
    struct.pack_into("<I", row, 108, toast)
    row[115] = ord(kind)
    return bytes(row)


def oid_and_name(oid: int, text: str) -> bytes:
    """A ``pg_namespace`` or ``pg_database`` row's leading columns."""
    return struct.pack("<I", oid) + name(text)


def filenode_map(mapping: dict[int, int]) -> bytes:
    """A ``pg_filenode.map`` (512 bytes; its CRC is not checked by Strata)."""
    raw = struct.pack("<ii", 0x592717, len(mapping))
    for oid, filenode in mapping.items():
        raw += struct.pack("<II", oid, filenode)
    return raw.ljust(512, b"\0")
