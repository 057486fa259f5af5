"""Row-level differences between two branches' databases, by primary key.

For each table both sides have, with the same primary key columns, one side's
``(key, md5 of the columns both sides have)`` pairs are held in memory while the other
side's stream past them: rows only on the new side were inserted, only on the old side
deleted, and on both with another hash updated. Each kind keeps a capped sample of whole
rows, fetched by key afterwards (through the primary key's index). Tables without a
primary key, or on one side only, are listed and not compared (``branch diff`` without
``--data`` shows schema changes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

CONNECT_TIMEOUT_S = 120  # the proxy starts a stopped compute on connect
_FETCH_ROWS = 5000

_TABLES = """
SELECT n.nspname, c.relname,
       (SELECT array_agg(a.attname::text ORDER BY k.ord)
          FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) AS key,
       (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
 WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%'
"""


@dataclass(frozen=True)
class Table:
    """A table of one side: its primary key columns (empty: none) and all its columns."""

    schema: str
    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]


@dataclass
class TableDiff:
    """Differences of one table: counts and capped samples (keys and rows as JSON)."""

    schema: str
    name: str
    key: list[str]
    inserted: int = 0
    deleted: int = 0
    updated: int = 0
    samples: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"inserted": [], "deleted": [], "updated": []})

    def to_json(self) -> dict[str, Any]:
        return {"table": f"{self.schema}.{self.name}", "key": self.key,
                "inserted": self.inserted, "deleted": self.deleted, "updated": self.updated,
                "samples": self.samples}


def _tables(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], Table]:
    return {(schema, name): Table(schema, name, tuple(key or ()), tuple(columns or ()))
            for schema, name, key, columns in conn.execute(_TABLES).fetchall()}


def _rows(conn: psycopg.Connection[Any], table: Table,
          columns: tuple[str, ...]) -> psycopg.Cursor[Any]:
    """A streaming cursor of ``(key as JSON text, md5 of columns)`` of ``table``."""
    key = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c))
                             for c in table.key)
    values = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    query = sql.SQL("SELECT jsonb_build_object({})::text, md5(ROW({})::text) FROM {}.{}"
                    ).format(key, values, sql.Identifier(table.schema),
                             sql.Identifier(table.name))
    cursor = conn.cursor(name=f"strata_diff_{table.name}"[:60])
    cursor.itersize = _FETCH_ROWS
    cursor.execute(query)
    return cursor


def _row(conn: psycopg.Connection[Any], table: Table, key: str) -> Any:
    """The whole row of ``table`` with primary key ``key`` (JSON text), as JSON."""
    target = sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name))
    columns = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in table.key)
    given = sql.SQL(", ").join(sql.SQL("k.{}").format(sql.Identifier(c)) for c in table.key)
    query = sql.SQL("SELECT to_jsonb(t) FROM {} t WHERE ({}) = (SELECT {} FROM "
                    "jsonb_populate_record(NULL::{}, %s::jsonb) k)").format(
                        target, columns, given, target)
    found = conn.execute(query, (key,)).fetchone()
    return found[0] if found else None


def diff_table(old: psycopg.Connection[Any], new: psycopg.Connection[Any], before: Table,
               after: Table, sample: int) -> TableDiff:
    """Row differences of one table present on both sides with the same primary key."""
    shared = tuple(c for c in before.columns if c in set(after.columns))
    found = TableDiff(after.schema, after.name, list(after.key))
    with old.transaction(), _rows(old, before, shared) as rows:
        hashes = dict(rows)
    changed: dict[str, list[str]] = {"inserted": [], "updated": []}
    with new.transaction(), _rows(new, after, shared) as rows:
        for key, digest in rows:
            was = hashes.pop(key, None)
            kind = "inserted" if was is None else ("updated" if was != digest else "")
            if kind:
                setattr(found, kind, getattr(found, kind) + 1)
                if len(changed[kind]) < sample:
                    changed[kind].append(key)
    found.deleted = len(hashes)
    for key in changed["inserted"]:
        found.samples["inserted"].append({"key": json.loads(key),
                                          "row": _row(new, after, key)})
    for key in changed["updated"]:
        found.samples["updated"].append({"key": json.loads(key), "old": _row(old, before, key),
                                         "new": _row(new, after, key)})
    for key in list(hashes)[:sample]:
        found.samples["deleted"].append({"key": json.loads(key),
                                         "row": _row(old, before, key)})
    return found


def data_diff(old_uri: str, new_uri: str, sample: int) -> dict[str, Any]:
    """The row differences from the database ``old_uri`` to ``new_uri``."""
    with psycopg.connect(old_uri, connect_timeout=CONNECT_TIMEOUT_S) as old, \
            psycopg.connect(new_uri, connect_timeout=CONNECT_TIMEOUT_S) as new:
        for conn in (old, new):
            conn.read_only = True
        before, after = _tables(old), _tables(new)
        compared, skipped = [], []
        for name in sorted(set(before) & set(after)):
            if not before[name].key or before[name].key != after[name].key:
                skipped.append({"table": ".".join(name), "why": "no primary key"
                                if not (before[name].key and after[name].key)
                                else "primary key changed"})
                continue
            compared.append(diff_table(old, new, before[name], after[name], sample).to_json())
    return {"tables": compared, "skipped": skipped,
            "only_old": [".".join(name) for name in sorted(set(before) - set(after))],
            "only_new": [".".join(name) for name in sorted(set(after) - set(before))],
            "inserted": sum(t["inserted"] for t in compared),
            "deleted": sum(t["deleted"] for t in compared),
            "updated": sum(t["updated"] for t in compared)}
