"""A branch's history with real computes and the proxy: `connect BRANCH@TIME` reads the
past, refuses writes (also to the owner role) and goes when idle; `branch changes` names
the table and indexes an UPDATE wrote; `branch diff --data` finds exactly the changed
rows."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from strata.local import computes, passwords
from strata.local.home import Home
from tests.cli.conftest import Strata, free_port, strata_home
from tests.compute.load import wait_for

IDLE_S = 3


@pytest.fixture(scope="module")
def cli(compute_host: None) -> Iterator[Strata]:
    """`strata up` (page server and proxy) with tenant acme."""
    with strata_home() as home:
        strata = Strata(home, free_port())
        try:
            strata.up("--suspend-timeout", f"{IDLE_S}s")
            strata.json("tenant", "create", "acme")
            strata.run("connect", "main", "--tenant", "acme")  # makes the tenant's password
            yield strata
        finally:
            try:
                strata.stop_everything()
            finally:
                for node in computes.listing(Home(home), "acme"):
                    with contextlib.suppress(Exception):
                        node.kill()


def _owner(cli: Strata, branch: str) -> str:
    return str(cli.json("connect", branch, "--tenant", "acme")["uri"])


def _branches(cli: Strata, *flags: str) -> list[str]:
    listed = cli.json("branch", "list", "--tenant", "acme", *flags)["branches"]
    return [b["name"] for b in listed]


def test_connect_at_a_time_reads_the_past_refuses_writes_and_goes_when_idle(
        cli: Strata) -> None:
    cli.json("branch", "create", "hist", "--tenant", "acme")
    with psycopg.connect(_owner(cli, "hist"), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO items VALUES (1, 'kept'), (2, 'deleted later')")
        time.sleep(1.5)
        before_delete = datetime.now(UTC).isoformat()
        time.sleep(1.5)
        conn.execute("DELETE FROM items WHERE id = 2")
    endpoint = cli.json("connect", f"hist@{before_delete}", "--tenant", "acme",
                        "--idle", f"{IDLE_S}s")
    name = endpoint["branch"]
    assert endpoint["ephemeral"] and endpoint["user"] == "strata_readonly"
    assert name not in _branches(cli) and name in _branches(cli, "--all")
    with psycopg.connect(endpoint["uri"], autocommit=True) as conn:
        assert conn.execute("SELECT id FROM items ORDER BY id").fetchall() == [(1,), (2,)]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO items VALUES (3, 'new')")
        conn.execute("SET default_transaction_read_only = off")
        for statement in ("DELETE FROM items", "CREATE TABLE mine (x int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    owner = passwords.ensure_credential(Home(cli.home), "acme", name)
    port = endpoint["port"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(f"postgresql://acme:{owner}@127.0.0.1:{port}/postgres?options="
                        f"-c%20strata.branch%3Dacme%2F{name}&sslmode=disable")
    with psycopg.connect(_owner(cli, "hist")) as conn:  # the branch itself moved on
        assert conn.execute("SELECT id FROM items").fetchall() == [(1,)]
    in_psql = cli.run("psql", "--tenant", "acme", "--idle", f"{IDLE_S}s",
                      f"hist@{before_delete}", "-Atc", "SELECT id FROM items ORDER BY id")
    assert in_psql.stdout.split() == ["1", "2"]  # `strata psql BRANCH@POINT`: the same past
    wait_for(lambda: not [b for b in _branches(cli, "--all") if ".at-" in b], 90,
             "the idle endpoints to be stopped and deleted")
    assert computes.find(Home(cli.home), "acme", name) is None
    cli.json("compute", "stop", "hist", "--tenant", "acme")


def test_branch_changes_names_the_updated_table_and_its_indexes(cli: Strata) -> None:
    cli.json("branch", "create", "stock", "--tenant", "acme")
    with psycopg.connect(_owner(cli, "stock"), autocommit=True) as conn:
        conn.execute("CREATE TABLE parts (id int PRIMARY KEY, qty int, label text)")
        conn.execute("CREATE INDEX parts_qty ON parts (qty)")
        conn.execute("INSERT INTO parts SELECT g, g, repeat('x', 80) FROM "
                     "generate_series(1, 20000) g")
        conn.execute("CREATE TABLE untouched AS SELECT generate_series(1, 1000) AS x")
    cli.json("compute", "stop", "stock", "--tenant", "acme")  # a clean stop writes all
    cli.json("branch", "create", "restock", "--parent", "stock", "--tenant", "acme")
    with psycopg.connect(_owner(cli, "restock"), autocommit=True) as conn:
        conn.execute("UPDATE parts SET qty = qty + 1 WHERE id % 10 = 0")  # 10 %
    started = time.perf_counter()
    found = cli.json("branch", "changes", "restock", "--tenant", "acme")
    print(f"branch changes: {time.perf_counter() - started:.2f} s (CLI, compute running)")
    assert found["compute_checkpointed"] and found["complete"]
    named = {r["name"]: r for r in found["relations"] if r["schema"] == "public"}
    assert set(named) == {"parts", "parts_pkey", "parts_qty"}
    assert named["parts"]["kind"] == "table" and named["parts"]["change"] == "written"
    assert named["parts"]["pages"] >= 100  # 2,000 rows spread over the table's pages
    for index in ("parts_pkey", "parts_qty"):
        assert (named[index]["kind"], named[index]["table"]) == ("index", "parts")
    assert all(r["database"] == "postgres" for r in named.values())
    unchanged = cli.json("branch", "changes", "stock", "--tenant", "acme", "--since",
                         str(cli.json("branch", "show", "stock", "--tenant", "acme")
                             ["last_lsn"]))
    assert unchanged["relations"] == []
    for branch in ("restock",):
        cli.json("compute", "stop", branch, "--tenant", "acme")


def test_data_diff_finds_exactly_the_changed_rows(cli: Strata) -> None:
    cli.json("branch", "create", "ledger", "--tenant", "acme")
    with psycopg.connect(_owner(cli, "ledger"), autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int)")
        conn.execute("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 500) g")
        conn.execute("CREATE TABLE notes (body text)")  # no primary key
    cli.json("branch", "create", "ledger-fix", "--parent", "ledger", "--tenant", "acme")
    with psycopg.connect(_owner(cli, "ledger-fix"), autocommit=True) as conn:
        conn.execute("INSERT INTO accounts VALUES (501, 1), (502, 2)")
        conn.execute("DELETE FROM accounts WHERE id IN (7, 8, 9)")
        conn.execute("UPDATE accounts SET balance = 0 WHERE id IN (10, 20, 30, 40)")
        conn.execute("UPDATE accounts SET balance = 100 WHERE id = 50")  # the same value
        conn.execute("CREATE TABLE extra (id int PRIMARY KEY)")
    found = cli.json("branch", "diff", "ledger", "ledger-fix", "--data", "--sample", "10",
                     "--tenant", "acme")
    table = found["tables"][0]
    assert [t["table"] for t in found["tables"]] == ["public.accounts"]
    assert (table["inserted"], table["deleted"], table["updated"]) == (2, 3, 4)
    samples = table["samples"]
    assert sorted(s["key"]["id"] for s in samples["inserted"]) == [501, 502]
    assert sorted(s["key"]["id"] for s in samples["deleted"]) == [7, 8, 9]
    assert sorted(s["key"]["id"] for s in samples["updated"]) == [10, 20, 30, 40]
    update = next(s for s in samples["updated"] if s["key"]["id"] == 10)
    assert (update["old"]["balance"], update["new"]["balance"]) == (100, 0)
    assert found["skipped"] == [{"table": "public.notes", "why": "no primary key"}]
    assert found["only_new"] == ["public.extra"]
    same = cli.json("branch", "diff", "ledger", "ledger", "--data", "--tenant", "acme")
    assert (same["inserted"], same["deleted"], same["updated"]) == (0, 0, 0)
    for branch in ("ledger", "ledger-fix"):
        cli.json("compute", "stop", branch, "--tenant", "acme")
