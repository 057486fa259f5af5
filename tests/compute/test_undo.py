"""Undo and leases with real PostgreSQL behind `strata up`'s proxy: a DROP TABLE or a
DELETE without WHERE sent through the proxy (plain text or TLS) gets an automatic
checkpoint and `strata undo` brings the rows back; a DELETE with WHERE gets none, nor does
a branch with undo off; a prepared DELETE gets its checkpoint when it runs (EXECUTE, or a
driver's Bind), not when prepared; leased forks that nobody renews are deleted with their
storage, a renewed one stays."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from strata.local import computes, passwords
from strata.local.home import Home
from tests.cli.conftest import Strata, free_port, strata_home
from tests.compute.load import wait_for

TENANT = "acme"
LEASE_S = 10  # of the leased forks: renewed every second by whoever keeps them


class Run:
    def __init__(self, cli: Strata, port: int) -> None:
        self.cli = cli
        self.port = port

    def uri(self, branch: str, sslmode: str = "disable") -> str:
        password = passwords.ensure_credential(Home(self.cli.home), TENANT, branch)
        return (f"postgresql://{TENANT}:{password}@127.0.0.1:{self.port}/postgres"
                f"?options=-c%20strata.branch%3D{TENANT}%2F{branch}&sslmode={sslmode}")

    def json(self, *args: str) -> Any:
        return self.cli.json(*args, "--tenant", TENANT)

    def automatic(self, branch: str) -> list[dict[str, Any]]:
        """The branch's automatic checkpoints, oldest first."""
        listed = self.json("checkpoint", "list")["checkpoints"]
        return sorted((c for c in listed if c["branch"] == branch and c["automatic"]),
                      key=lambda c: c["created_at_us"])

    def wait_for_automatic(self, branch: str, statement: str) -> dict[str, Any]:
        """The automatic checkpoint taken before ``statement`` (written in the background)."""
        found: list[dict[str, Any]] = []

        def taken() -> bool:
            found[:] = [c for c in self.automatic(branch) if c["statement"] == statement]
            return bool(found)
        wait_for(taken, 30, f"the automatic checkpoint before {statement!r}")
        return found[0]


@pytest.fixture(scope="module")
def run(compute_host: None) -> Iterator[Run]:
    with strata_home() as home:
        cli = Strata(home, free_port())
        try:
            state = cli.up()
            cli.json("tenant", "create", TENANT)
            yield Run(cli, int(state["proxy"]["address"].rpartition(":")[2]))
        finally:
            try:
                cli.stop_everything()
            finally:
                for node in computes.listing(Home(home), TENANT):
                    with contextlib.suppress(Exception):
                        node.kill()


def _count(run: Run, branch: str, table: str) -> int:
    with psycopg.connect(run.uri(branch), autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


def test_drop_table_then_undo_brings_the_table_back_with_its_rows(run: Run) -> None:
    run.json("branch", "create", "dropper")
    with psycopg.connect(run.uri("dropper"), autocommit=True) as conn:
        conn.execute("CREATE TABLE precious AS SELECT n FROM generate_series(1, 5000) n")
        conn.execute("DROP TABLE precious")
    taken = run.wait_for_automatic("dropper", "DROP TABLE precious")
    assert re.fullmatch(r"auto-\d{8}-\d{6}\.\d{6}-drop-table", taken["name"])
    assert taken["expires_at_us"] - taken["created_at_us"] == pytest.approx(24 * 3600e6,
                                                                              rel=0.01)
    done = run.json("undo", "dropper")
    assert done["undid"] == "DROP TABLE precious" and done["compute_restarted"] is True
    assert _count(run, "dropper", "precious") == 5000
    assert run.automatic("dropper") == []  # used up: the next undo goes further back
    message = run.cli.fail(1, "undo", "dropper", "--tenant", TENANT)
    assert "no automatic checkpoint" in message


def test_delete_without_where_is_undone_and_one_with_where_takes_no_checkpoint(
        run: Run) -> None:
    run.json("branch", "create", "deleter")
    with psycopg.connect(run.uri("deleter"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT n FROM generate_series(1, 1000) n")
        conn.execute("DELETE FROM t WHERE n <= 10")  # ordinary: no checkpoint
        conn.execute("UPDATE t SET n = n + 1 WHERE n = 500")  # neither
        conn.execute("delete /* everything */ from t")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    run.wait_for_automatic("deleter", "delete /* everything */ from t")
    # Checkpoints are written in order: one for the DELETE with WHERE would be older.
    assert [c["statement"] for c in run.automatic("deleter")] == [
        "delete /* everything */ from t"]
    assert run.json("undo", "deleter")["undid"] == "delete /* everything */ from t"
    assert _count(run, "deleter", "t") == 990


def test_a_branch_with_undo_off_gets_no_checkpoint(run: Run) -> None:
    run.json("branch", "create", "careless", "--no-undo")
    assert run.json("branch", "show", "careless")["undo"] is False
    with psycopg.connect(run.uri("careless"), autocommit=True) as conn:
        conn.execute("CREATE TABLE a (x int)")
        conn.execute("CREATE TABLE b (x int)")
        conn.execute("DROP TABLE a")
        run.json("branch", "set", "careless", "--undo")
        conn.execute("TRUNCATE b")
    run.wait_for_automatic("careless", "TRUNCATE b")
    assert [c["statement"] for c in run.automatic("careless")] == ["TRUNCATE b"]


@contextmanager
def renewing(run: Run, *names: str) -> Iterator[None]:
    """Renew the leases of ``names`` every second while the block runs, as a live job
    does whatever it is busy with: its work may outlast a lease on a loaded machine."""
    stop = threading.Event()

    def renew() -> None:
        while True:
            run.json("branch", "renew", *names)
            if stop.wait(1):
                return

    renewer = threading.Thread(target=renew, name="lease-renewer", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()


def test_leased_forks_nobody_renews_go_with_their_storage(run: Run) -> None:
    made = run.json("branch", "create", "job", "--count", "3", "--lease", f"{LEASE_S}s")
    assert [b["name"] for b in made["branches"]] == ["job-1", "job-2", "job-3"]
    assert all(b["lease_s"] == LEASE_S and b["expires_at_us"] for b in made["branches"])
    with renewing(run, "job-1", "job-2"):  # until job-1 is filled; job-3: nobody
        listed = {b["name"]: b for b in run.json("branch", "list")["branches"]}
        assert listed["job-1"]["lease_s"] == LEASE_S and listed["main"]["lease_s"] is None
        with psycopg.connect(run.uri("job-1"), autocommit=True) as conn:  # owns layers
            conn.execute("CREATE TABLE filler AS SELECT repeat('x', 500) AS s "
                         "FROM generate_series(1, 20000)")
        gone_timeline = run.json("branch", "show", "job-1")["timeline_id"]

        def files_of_job_1() -> list[Path]:
            """Its objects in the local store, cached layers, compute files: all under
            home."""
            return [p for p in Path(run.cli.home).rglob("*") if gone_timeline in str(p)
                    and p.is_file()]
        assert files_of_job_1()
    # From here nobody renews job-1: it goes once its lease runs out.
    deadline = time.monotonic() + 60
    while {"job-1", "job-3"} & {b["name"] for b in run.json("branch", "list")["branches"]}:
        assert time.monotonic() < deadline, "the reaper did not delete the expired forks"
        renewed = run.json("branch", "renew", "job-2")["branches"]
        assert renewed[0]["expires_at_us"] > time.time_ns() // 1000 + 3_000_000
        time.sleep(1)
    with renewing(run, "job-2"):  # still kept while the rest is checked
        names = {b["name"] for b in run.json("branch", "list")["branches"]}
        assert "job-2" in names
        wait_for(lambda: not files_of_job_1(), 30,
                 "job-1's objects and cached layers to be gone")
        assert computes.find(Home(run.cli.home), TENANT, "job-1") is None
        renewed = run.json("branch", "renew", "job")["branches"]  # the name they were
    assert [b["name"] for b in renewed] == ["job-2"]  # made under: job-2 only
    assert run.cli.fail(1, "branch", "renew", "nothing", "--tenant", TENANT).startswith(
        "no branch 'nothing'")


def test_a_statement_the_driver_prepared_gets_a_checkpoint_each_run(run: Run) -> None:
    """psycopg prepares a query from its 5th run on and then only binds it: each DROP
    still gets its checkpoint, held at the Bind."""
    run.json("branch", "create", "repeater")
    with psycopg.connect(run.uri("repeater"), autocommit=True) as conn:
        conn.prepare_threshold = 2
        for _ in range(6):
            conn.execute("CREATE TABLE again (x int)")
            conn.execute("DROP TABLE again")
        conn.execute("CREATE TABLE last (x int)")
        conn.execute("DROP TABLE last")
    run.wait_for_automatic("repeater", "DROP TABLE last")
    assert [c["statement"] for c in run.automatic("repeater")] == [
        *["DROP TABLE again"] * 6, "DROP TABLE last"]


def test_a_tls_session_gets_its_checkpoint_and_undo(run: Run) -> None:
    run.json("branch", "create", "secure")
    with psycopg.connect(run.uri("secure", "require"), autocommit=True) as conn:
        assert conn.pgconn.ssl_in_use
        conn.execute("CREATE TABLE kept AS SELECT n FROM generate_series(1, 3000) n")
        conn.execute("DELETE FROM kept WHERE n <= 100")  # ordinary: no checkpoint
        conn.execute("DROP TABLE kept")
    run.wait_for_automatic("secure", "DROP TABLE kept")
    assert [c["statement"] for c in run.automatic("secure")] == ["DROP TABLE kept"]
    assert run.json("undo", "secure")["undid"] == "DROP TABLE kept"
    assert _count(run, "secure", "kept") == 2900


def test_a_prepared_delete_gets_its_checkpoint_when_it_runs(run: Run) -> None:
    """PREPARE destroys nothing: the checkpoint is taken at each EXECUTE, so undo keeps
    the rows written between the two; sent as a simple Query and over the extended
    protocol (the driver's own Parse/Bind/Execute of ``EXECUTE``); after DEALLOCATE the
    name's EXECUTE takes none."""
    run.json("branch", "create", "preparer")
    with psycopg.connect(run.uri("preparer"), autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT n FROM generate_series(1, 100) n")
        conn.execute("PREPARE Wipe AS DELETE FROM t")
        conn.execute("INSERT INTO t SELECT n FROM generate_series(101, 150) n")
        assert conn.pgconn.exec_(b"EXECUTE wipe").command_tuples == 150  # a simple Query
    run.wait_for_automatic("preparer", "DELETE FROM t")
    assert run.json("undo", "preparer")["undid"] == "DELETE FROM t"
    assert _count(run, "preparer", "t") == 150
    with psycopg.connect(run.uri("preparer"), autocommit=True) as conn:
        conn.execute("PREPARE wipe AS DELETE FROM t")
        conn.execute("INSERT INTO t VALUES (151)")
        conn.execute("EXECUTE wipe", prepare=True)  # a named Parse, then its Bind
        run.wait_for_automatic("preparer", "DELETE FROM t")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("DEALLOCATE wipe")
        conn.execute("PREPARE wipe AS DELETE FROM t WHERE n = 1")
        conn.execute("EXECUTE wipe")  # the harmless one now: no checkpoint
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert [c["statement"] for c in run.automatic("preparer")] == ["DELETE FROM t"]
    assert run.json("undo", "preparer")["undid"] == "DELETE FROM t"
    assert _count(run, "preparer", "t") == 151
