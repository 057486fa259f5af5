"""Relation names from catalog pages: live versions win, aborted inserts are skipped,
indexes and TOAST tables name their table, mapped catalogs are found through the map."""

from __future__ import annotations

import struct

from pageserver import catalog
from tests.heap_pages import (
    XMAX_INVALID,
    XMIN_FROZEN,
    XMIN_INVALID,
    filenode_map,
    heap_page,
    oid_and_name,
    pg_class_row,
)


def _files() -> dict[str, bytes]:
    classes = heap_page([
        (pg_class_row(1259, "pg_class", 0, "r", 11), 0, XMAX_INVALID),
        (pg_class_row(2610, "pg_index", 2610, "r", 11), 0, XMAX_INVALID),
        (pg_class_row(2615, "pg_namespace", 2615, "r", 11), 0, XMAX_INVALID),
        (pg_class_row(16384, "old_name", 16384, "r", toast=16387), 900, 0),  # renamed
        (pg_class_row(16384, "orders", 16384, "r", toast=16387), 0, XMAX_INVALID),
        (pg_class_row(16387, "pg_toast_16384", 16387, "t", 99), 0, XMAX_INVALID),
        (pg_class_row(16390, "orders_pkey", 16391, "i"), 0, 0),
        (pg_class_row(16400, "never", 16400, "r"), 0, XMIN_INVALID),  # aborted CREATE
        (pg_class_row(16401, "frozen", 16401, "r"), 0, XMIN_FROZEN | XMAX_INVALID),
    ])
    return {
        "base/5/pg_filenode.map": filenode_map({1259: 1259}),
        "base/5/1259": classes,
        "base/5/2610": heap_page([(struct.pack("<II", 16390, 16384), 0, 0)]),
        "base/5/2615": heap_page([(oid_and_name(2200, "public"), 0, 0),
                                  (oid_and_name(11, "pg_catalog"), 0, 0),
                                  (oid_and_name(99, "pg_toast"), 0, 0)]),
        "global/pg_filenode.map": filenode_map({1262: 1262}),
        "global/1262": heap_page([(oid_and_name(5, "postgres"), 0, 0)]),
    }


def test_relation_names_from_catalog_pages() -> None:
    files = _files()
    names = catalog.relation_names(lambda path: files.get(path), 5)
    assert names[16384] == catalog.RelationName(16384, "public", "orders", "r", "")
    assert names[16391] == catalog.RelationName(16390, "public", "orders_pkey", "i", "orders")
    assert names[16387].table == "orders" and names[16387].schema == "pg_toast"
    assert names[1259].name == "pg_class"  # mapped: file number from pg_filenode.map
    assert 16400 not in names
    assert names[16401].name == "frozen"
    assert catalog.database_names(lambda path: files.get(path)) == {5: "postgres"}


def test_missing_or_foreign_files_name_nothing() -> None:
    assert catalog.relation_names(lambda path: None, 5) == {}
    assert catalog.read_filenode_map(b"\0" * 512) == {}
    assert catalog.database_names(
        lambda path: b"short" if path == "global/pg_filenode.map" else None) == {}
