"""`strata tenant import` from a running PostgreSQL 15 (a plain server on loopback with a
password, replication allowed in its pg_hba.conf): by base backup, every database of it
lands in the tenant's main and answers the same queries as the source through the proxy,
its objects belong to the tenant's role, the source's roles, memberships and grants are
there with no superuser among them but Strata's own, and a fork of it works; a source
whose bootstrap superuser has another name comes in with it renamed postgres; a login
without REPLICATION, a pg_hba.conf without replication or a clashing postgres role falls
back to pg_dump and says so, with the same answers; a bad source fails with one line and
no tenant left."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from common.postgres import pg_bin_dir
from compute import identity
from strata.local import computes
from strata.local.home import Home
from tests.cli.conftest import Strata, free_port, strata_home

PASSWORD = "s3cret-source"
QUERIES = (
    "SELECT count(*), sum(amount) FROM orders",
    "SELECT c.name, count(o.id), sum(o.amount) FROM customers c LEFT JOIN orders o "
    "ON o.customer_id = c.id GROUP BY c.name ORDER BY c.name",
    "SELECT * FROM big_spenders ORDER BY name",
    "SELECT last_value FROM orders_id_seq",
)


@contextlib.contextmanager
def running_cluster(superuser: str) -> Iterator[str]:
    """A PostgreSQL 15 server on a free loopback port, its bootstrap superuser
    ``superuser`` with password PASSWORD, replication allowed from loopback (initdb's
    pg_hba.conf); the URI of it without a database name."""
    parent = Path(tempfile.mkdtemp(prefix="strata-import-source-"))
    parent.chmod(0o755)
    data, port = parent / "data", free_port()
    run_as = ["runuser", "-u", "postgres", "--"]
    (parent / "pw").write_text(PASSWORD)
    shutil.chown(parent / "pw", "postgres")
    shutil.chown(parent, "postgres")
    bin_dir = pg_bin_dir()
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", superuser,
                    "--pwfile", str(parent / "pw"), "--auth-local=peer",
                    "--auth-host=scram-sha-256"], check=True, capture_output=True)
    ctl = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l",
           str(parent / "log")]
    try:
        subprocess.run([*ctl, "-o", f"-p {port} -k {parent} -c listen_addresses=127.0.0.1",
                        "start"], check=True, capture_output=True)
        yield f"postgresql://{superuser}:{PASSWORD}@127.0.0.1:{port}/"
    finally:
        subprocess.run([*ctl, "-m", "fast", "stop"], check=False, capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def source(compute_host: None) -> Iterator[str]:
    """A PostgreSQL 15 server with databases shop and analytics; the URI of shop."""
    with running_cluster("postgres") as server:
        uri = server + "shop"
        with psycopg.connect(server + "postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL)")
            conn.execute("CREATE TABLE orders (id serial PRIMARY KEY, customer_id int "
                         "REFERENCES customers, amount numeric(10, 2), placed date)")
            conn.execute("INSERT INTO customers SELECT g, 'customer ' || g "
                         "FROM generate_series(1, 50) g")
            conn.execute("INSERT INTO orders (customer_id, amount, placed) SELECT g % 50 + 1, "
                         "g * 1.25, date '2026-01-01' + g % 300 FROM generate_series(1, 2000) g")
            conn.execute("CREATE INDEX orders_placed ON orders (placed)")
            conn.execute("CREATE VIEW big_spenders AS SELECT c.name, sum(o.amount) AS total "
                         "FROM customers c JOIN orders o ON o.customer_id = c.id "
                         "GROUP BY c.name HAVING sum(o.amount) > 50000")
            conn.execute("CREATE ROLE analysts NOLOGIN")
            conn.execute("CREATE ROLE reader LOGIN IN ROLE analysts")
            conn.execute("CREATE ROLE boss SUPERUSER LOGIN PASSWORD 'boss'")
            conn.execute(f"CREATE ROLE dumper LOGIN PASSWORD '{PASSWORD}' "
                         "IN ROLE pg_read_all_data")  # may read all, may not replicate
            conn.execute("GRANT SELECT ON orders TO analysts")
            conn.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES "
                         "TO analysts")  # postgres's: only a superuser could set them
        with psycopg.connect(server + "postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE analytics")
        with psycopg.connect(server + "analytics", autocommit=True) as conn:
            conn.execute("CREATE TABLE events AS SELECT g AS id, g % 7 AS kind "
                         "FROM generate_series(1, 700) g")
            conn.execute("GRANT SELECT ON events TO reader")
        yield uri


@pytest.fixture(scope="module")
def cli(compute_host: None) -> Iterator[Strata]:
    with strata_home() as home:
        strata = Strata(home, free_port())
        try:
            strata.up()
            yield strata
        finally:
            try:
                strata.stop_everything()
            finally:
                for tenant in ("shop", "dumped", "renamed", "clash", "nohba"):
                    for node in computes.listing(Home(home), tenant):
                        with contextlib.suppress(Exception):
                            node.kill()


def _answers(uri: str) -> list[list[tuple[object, ...]]]:
    with psycopg.connect(uri) as conn:
        return [conn.execute(query).fetchall() for query in QUERIES]


def test_an_import_answers_the_same_queries_as_the_source(source: str, cli: Strata) -> None:
    done = cli.json("tenant", "import", "shop", "--from", source)
    assert (done["method"], done["fallback_reason"]) == ("base backup", None)
    assert sorted(done["databases"]) == ["analytics", "postgres", "shop"]
    assert sorted(done["databases"]["shop"]) == ["public.customers", "public.orders"]
    assert done["databases"]["analytics"] == ["public.events"]
    assert sorted(done["roles"]) == ["analysts", "boss", "dumper", "reader"]
    imported = cli.json("connect", "main", "--tenant", "shop", "--database", "shop")["uri"]
    assert _answers(imported) == _answers(source)
    events = "SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind"
    analytics = cli.json("connect", "main", "--tenant", "shop", "--database",
                         "analytics")["uri"]
    with psycopg.connect(analytics) as mine, \
            psycopg.connect(source.replace("/shop", "/analytics")) as theirs:
        assert mine.execute(events).fetchall() == theirs.execute(events).fetchall()
        assert mine.execute("SELECT has_table_privilege('reader', 'events', 'SELECT')"
                            ).fetchone() == (True,)
    with psycopg.connect(imported) as conn:
        owners = conn.execute("SELECT DISTINCT tableowner FROM pg_tables "
                              "WHERE schemaname = 'public'").fetchall()
        assert owners == [("shop",)]
        supers = conn.execute("SELECT rolname FROM pg_roles WHERE rolsuper "
                              "AND rolname !~ '^pg_'").fetchall()
        assert supers == [("postgres",)]  # Strata's own; boss is not one here
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE (rolreplication OR "
                            "rolbypassrls) AND rolname <> 'postgres'").fetchone() == (0,)
        assert conn.execute("SELECT rolname FROM pg_roles WHERE rolname IN "
                            "(current_user, 'strata_readonly') AND NOT rolsuper "
                            "ORDER BY 1").fetchall() == [("shop",), ("strata_readonly",)]
        assert conn.execute(
            "SELECT has_table_privilege('analysts', 'orders', 'SELECT'), "
            "has_table_privilege('reader', 'orders', 'SELECT'), "
            "has_table_privilege('reader', 'customers', 'SELECT'), "
            "pg_has_role('reader', 'analysts', 'MEMBER')").fetchone() == (
            True, True, False, True)
    cli.json("branch", "create", "fork", "--tenant", "shop")
    forked = cli.json("connect", "fork", "--tenant", "shop", "--database", "shop")["uri"]
    with psycopg.connect(forked) as conn:
        conn.execute("DELETE FROM orders WHERE id <= 1000")
    assert _answers(forked) != _answers(source)
    assert _answers(imported) == _answers(source)
    for branch in ("fork", "main"):
        cli.json("compute", "stop", branch, "--tenant", "shop")


def test_a_login_without_replication_falls_back_to_pg_dump(source: str, cli: Strata
                                                           ) -> None:
    dumper = source.replace("postgres:", "dumper:")
    done = cli.run("tenant", "import", "dumped", "--from", dumper)
    assert ("not by base backup (the login dumper has no REPLICATION attribute): copying "
            "with pg_dump") in done.stderr
    assert "by dump" in done.stdout
    imported = cli.json("connect", "main", "--tenant", "dumped", "--database", "shop")["uri"]
    assert _answers(imported) == _answers(source)
    assert "has no REPLICATION" in cli.fail(1, "tenant", "import", "never", "--from", dumper,
                                            "--method", "base-backup", "--json")
    cli.json("compute", "stop", "main", "--tenant", "dumped")


def test_a_bootstrap_superuser_of_another_name_becomes_strata_s_postgres(cli: Strata
                                                                          ) -> None:
    """Renamed by base backup; a role already named postgres, or a pg_hba.conf without
    replication, falls back to pg_dump and says why."""
    with running_cluster("admin") as server:
        with psycopg.connect(server + "postgres", autocommit=True) as conn:
            conn.execute("CREATE TABLE kept AS SELECT g AS n FROM generate_series(1, 100) g")
        done = cli.json("tenant", "import", "renamed", "--from", server + "postgres",
                        "--method", "base-backup")
        assert done["method"] == "base backup"
        uri = cli.json("connect", "main", "--tenant", "renamed")["uri"]
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT sum(n) FROM kept").fetchone() == (5050,)
            assert conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'kept'"
                                ).fetchone() == ("renamed",)
            assert conn.execute("SELECT oid, rolname FROM pg_roles WHERE rolsuper AND "
                                "rolname !~ '^pg_'").fetchall() == [(10, "postgres")]
            assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'admin'"
                                ).fetchone() == (0,)
        cli.json("compute", "stop", "main", "--tenant", "renamed")

        with psycopg.connect(server + "postgres", autocommit=True) as conn:
            conn.execute("CREATE ROLE postgres LOGIN")  # now the rename would clash
        denied = cli.run("tenant", "import", "clash", "--from", server + "postgres",
                         "--method", "base-backup", expect=1)
        assert "another role is named postgres" in denied.stderr.splitlines()[-1]
        assert identity.find("clash") is None  # the OS user made for the copy is gone
        clash = cli.json("tenant", "import", "clash", "--from", server + "postgres")
        assert clash["method"] == "dump"
        assert "another role is named postgres" in clash["fallback_reason"]
        cli.json("compute", "stop", "main", "--tenant", "clash")

        with psycopg.connect(server + "postgres", autocommit=True) as conn:
            hba = Path(str(conn.execute("SHOW hba_file").fetchone()[0]))  # type: ignore[index]
            hba.write_text("".join(line + "\n" for line in hba.read_text().splitlines()
                                   if "replication" not in line))
            conn.execute("SELECT pg_reload_conf()")
        refused = cli.run("tenant", "import", "nohba", "--from", server + "postgres")
        assert "not by base backup (pg_basebackup failed:" in refused.stderr
        assert "no pg_hba.conf entry for replication connection" in refused.stderr
        assert "by dump" in refused.stdout
        cli.json("compute", "stop", "main", "--tenant", "nohba")


def test_a_source_that_cannot_be_read_leaves_no_tenant(source: str, cli: Strata) -> None:
    wrong = source.replace(PASSWORD, "wrong")
    message = cli.fail(1, "tenant", "import", "nope", "--from", wrong)
    assert "cannot read the source cluster" in message and "wrong" not in message
    assert "nope" not in [t["tenant"] for t in cli.json("tenant", "list")["tenants"]]
    assert "not a PostgreSQL URI" in cli.fail(1, "tenant", "import", "nope", "--from",
                                              "host=a b c")
    cli.json("tenant", "create", "taken", "--empty")
    assert "tenant 'taken' already exists" in cli.fail(1, "tenant", "import", "taken",
                                                       "--from", source)
    cli.json("tenant", "delete", "taken", "--yes")
