"""Undo's SQL classification: the C pre-filter (``_pump.suspect``) and the careful look
(``strata.proxy.destructive``), both directions: destructive statements are found
(false negatives lose undo), ordinary traffic is not (each false alarm of the pre-filter
costs Python, of the careful look a checkpoint), and whatever the careful look finds the
pre-filter flagged first, also for random token soup."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.proxy._pump import suspect
from strata.proxy.destructive import Finding, Prepared, findings, read

DESTRUCTIVE = [
    ("DROP TABLE t", "drop-table"),
    ("drop table if exists \"Orders\" cascade", "drop-table"),
    ("DrOp ScHeMa s CASCADE", "drop-schema"),
    ("DROP MATERIALIZED VIEW mv", "drop-materialized-view"),
    ("DROP DATABASE other", "drop-database"),
    ("TRUNCATE t", "truncate"),
    ("truncate table a, b restart identity", "truncate"),
    ("ALTER TABLE t DROP COLUMN c", "alter-table-drop"),
    ("alter table t drop constraint t_pkey", "alter-table-drop"),
    ("ALTER TABLE t ALTER COLUMN c DROP DEFAULT, DROP COLUMN d", "alter-table-drop"),
    ("DELETE FROM t", "delete-all"),
    ("delete from t;", "delete-all"),
    ("DELETE FROM t USING (SELECT 1 FROM u WHERE u.x = 1) s", "delete-all"),
    ("UPDATE t SET x = 1", "update-all"),
    ("UPDATE t SET x = (SELECT y FROM u WHERE u.id = 1)", "update-all"),
    ("UPDATE t SET x = 1 FROM u", "update-all"),
    ("WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone WHERE true",
     "delete-all"),
    ("WITH k AS (SELECT 1 WHERE true) DELETE FROM t", "delete-all"),
    ("EXPLAIN ANALYZE DELETE FROM t", "delete-all"),
    ("EXPLAIN (ANALYZE) UPDATE t SET x = 2", "update-all"),
    ("SELECT 1; DELETE FROM t", "delete-all"),
    ("UPDATE a SET x = 1 WHERE id = 1; DELETE FROM b", "delete-all"),
    ("/* comment */ DROP TABLE t", "drop-table"),
    ("-- where\nDELETE FROM t", "delete-all"),
    ("DELETE FROM t -- WHERE id = 1", "delete-all"),
    ("DELETE FROM t /* WHERE /* nested */ id = 1 */", "delete-all"),
    ("DELETE FROM t WHERE_x", "delete-all"),  # an identifier, not WHERE
    ("DELETE FROM \"where\"", "delete-all"),
    ("SELECT 'a'';DROP' ; DROP TABLE t", "drop-table"),
    ("SELECT $$it's$$; DROP TABLE t", "drop-table"),
    ("SELECT $tag$ $$ ' $tag$; TRUNCATE t", "truncate"),
    ("SELECT E'\\''; DELETE FROM t", "delete-all"),
    ("SELECT 'a\\'; DROP TABLE t; --'", "drop-table"),  # standard strings: DROP runs
    ("SELECT 'a\\''; DROP TABLE t", "drop-table"),  # backslash strings: DROP runs
    ("DO $$BEGIN DELETE FROM t; END$$", "do-block"),
    ("do language plpgsql 'BEGIN EXECUTE ''DROP TABLE t''; END'", "do-block"),
]

HARMLESS = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
    "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1",
    "DELETE FROM t WHERE id = $1",
    "delete from t where id in (select id from u)",
    "UPDATE t SET x = (SELECT 1) WHERE id = 3",
    "WITH d AS (DELETE FROM t WHERE x < 0 RETURNING *) SELECT * FROM d",
    "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 2",
    "SELECT * FROM jobs WHERE id = 1 FOR UPDATE SKIP LOCKED",
    "CREATE TABLE c (id int REFERENCES p ON DELETE CASCADE ON UPDATE CASCADE)",
    "GRANT SELECT, UPDATE, DELETE ON t TO someone",
    "SELECT 'DROP TABLE t; DELETE FROM u'",
    "SELECT \"drop\", \"truncate\" FROM dropped_items",
    "-- DROP TABLE t\nSELECT 1",
    "SELECT dropout, truncated, updated_at, deleted FROM t",
    "EXPLAIN DELETE FROM t",
    "ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
    "ALTER TABLE t ALTER COLUMN c DROP DEFAULT",
    "CREATE FUNCTION f() RETURNS void AS $$ DELETE FROM t $$ LANGUAGE sql",
    "DO $$BEGIN INSERT INTO t VALUES (1); END$$",
    "",
]

# What the pre-filter lets through without Python: the relay's fast path.
ORDINARY = [sql for sql in HARMLESS if "DROP" not in sql.upper() and "DO " not in sql
            and "GRANT" not in sql and "EXPLAIN" not in sql and "FUNCTION" not in sql]


@pytest.mark.parametrize(("sql", "kind"), DESTRUCTIVE)
def test_destructive_statements_are_found_by_both(sql: str, kind: str) -> None:
    assert [f.kind for f in findings(sql)][:1] == [kind]
    assert suspect(sql.encode())


@pytest.mark.parametrize("sql", HARMLESS)
def test_harmless_statements_take_no_checkpoint(sql: str) -> None:
    assert findings(sql) == []


@pytest.mark.parametrize("sql", ORDINARY)
def test_ordinary_traffic_passes_the_prefilter(sql: str) -> None:
    assert not suspect(sql.encode())


def test_a_finding_names_its_statement_only_collapsed_and_truncated() -> None:
    [found] = findings("SELECT 1;\n  DROP   TABLE\n t ;SELECT 2")
    assert found.statement == "DROP TABLE t"
    [long] = findings("DELETE FROM t" + " " * 10 + "-- " + "x" * 500)
    assert long.statement == "DELETE FROM t"
    [wide] = findings("TRUNCATE " + ", ".join(f"t{n}" for n in range(200)))
    assert len(wide.statement) == 200


WIPE = (Finding("delete-all", "DELETE FROM t"),)
PREPARED = [
    ("PREPARE wipe AS DELETE FROM t", [Prepared("prepare", "wipe", WIPE)]),
    ("prepare Wipe (int) as delete from t where id = $1", [Prepared("prepare", "wipe")]),
    ('PREPARE "Wipe" AS DELETE FROM t', [Prepared("prepare", "Wipe", WIPE)]),
    ("EXECUTE wipe", [Prepared("execute", "wipe")]),
    ("execute WIPE(1, 'a')", [Prepared("execute", "wipe")]),
    ("EXPLAIN ANALYZE EXECUTE wipe", [Prepared("execute", "wipe")]),
    ("EXPLAIN (ANALYZE) EXECUTE wipe", [Prepared("execute", "wipe")]),
    ("CREATE TABLE copy AS EXECUTE wipe", [Prepared("execute", "wipe")]),
    ("DEALLOCATE wipe", [Prepared("deallocate", "wipe")]),
    ("DEALLOCATE PREPARE wipe", [Prepared("deallocate", "wipe")]),
    ("DEALLOCATE ALL", [Prepared("deallocate", None)]),
    ("discard all", [Prepared("deallocate", None)]),
    ("PREPARE wipe AS DELETE FROM t; EXECUTE wipe; DROP TABLE u",
     [Prepared("prepare", "wipe", WIPE), Prepared("execute", "wipe"),
      Finding("drop-table", "DROP TABLE u")]),
]


@pytest.mark.parametrize(("sql", "expected"), PREPARED)
def test_prepared_statements_are_read_for_the_sessions_account(
        sql: str, expected: list[Finding | Prepared]) -> None:
    assert read(sql) == expected
    assert findings(sql) == [item for item in expected if isinstance(item, Finding)]
    if must_flag(sql):
        assert suspect(sql.encode())


@pytest.mark.parametrize("sql", ["GRANT EXECUTE ON FUNCTION f() TO someone",
                                 "CREATE TRIGGER g AFTER INSERT ON t FOR EACH ROW "
                                 "EXECUTE FUNCTION f()", "SELECT execute FROM t"])
def test_execute_as_a_privilege_or_trigger_action_is_no_prepared_statement(sql: str) -> None:
    assert read(sql) == []


def test_unbalanced_or_deep_parentheses_are_suspect() -> None:
    assert suspect(b"SELECT 1)")
    assert suspect(b"SELECT " + b"(" * 100 + b"1" + b")" * 100)


SQL_PIECES = st.sampled_from([
    "DELETE", "UPDATE", "WHERE", "DROP", "TRUNCATE", "ALTER", "TABLE", "DO", "AS", "ANALYZE",
    "EXPLAIN", "SELECT", "FROM", "t", "x", "(", ")", ";", "'", "''", "\"", "$$", "$a$", "$1",
    "--", "\n", "/*", "*/", "E'", "\\", ",", "=", "1", " ", "DEFAULT", "NOT", "FOR", "ON",
    "delete", "wHeRe", "ä", "PREPARE", "EXECUTE", "DEALLOCATE", "DISCARD", "ALL",
])


def must_flag(sql: str) -> bool:
    """Whether the careful look would act on ``sql``: a destructive statement, or one that
    runs or forgets prepared statements, or prepares a destructive one."""
    return any(isinstance(item, Finding) or item.verb != "prepare" or item.found
               for item in read(sql))


@settings(max_examples=3000, deadline=None)
@given(st.lists(SQL_PIECES, max_size=30).map(" ".join))
def test_whatever_the_careful_look_finds_the_prefilter_flagged(sql: str) -> None:
    if must_flag(sql):
        assert suspect(sql.encode())


@settings(max_examples=1000, deadline=None)
@given(st.lists(SQL_PIECES, max_size=30).map("".join))
def test_the_same_without_spaces_between_pieces(sql: str) -> None:
    if must_flag(sql):
        assert suspect(sql.encode())
