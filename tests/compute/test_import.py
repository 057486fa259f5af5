"""`strata tenant import` from a running PostgreSQL 15 (a plain server on loopback with a
password): the tenant's main answers the same queries as the source, its objects belong
to the tenant's role, and a bad source fails with one line and no tenant left."""

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


@pytest.fixture(scope="module")
def source(compute_host: None) -> Iterator[str]:
    """A PostgreSQL 15 server on a free loopback port with database shop; its URI."""
    parent = Path(tempfile.mkdtemp(prefix="strata-import-source-"))
    parent.chmod(0o755)
    data, port = parent / "data", free_port()
    run_as = ["runuser", "-u", "postgres", "--"]
    (parent / "pw").write_text(PASSWORD)
    shutil.chown(parent / "pw", "postgres")
    shutil.chown(parent, "postgres")
    bin_dir = pg_bin_dir()
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--pwfile", str(parent / "pw"), "--auth-local=peer",
                    "--auth-host=scram-sha-256"], check=True, capture_output=True)
    ctl = [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l",
           str(parent / "log")]
    subprocess.run([*ctl, "-o", f"-p {port} -k {parent} -c listen_addresses=127.0.0.1",
                    "start"], check=True, capture_output=True)
    uri = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/shop"
    try:
        with psycopg.connect(uri.replace("/shop", "/postgres"), autocommit=True) as conn:
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
        yield uri
    finally:
        subprocess.run([*ctl, "-m", "fast", "stop"], check=False, capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)


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
                for node in computes.listing(Home(home), "shop"):
                    with contextlib.suppress(Exception):
                        node.kill()


def _answers(uri: str) -> list[list[tuple[object, ...]]]:
    with psycopg.connect(uri) as conn:
        return [conn.execute(query).fetchall() for query in QUERIES]


def test_an_import_answers_the_same_queries_as_the_source(source: str, cli: Strata) -> None:
    done = cli.json("tenant", "import", "shop", "--from", source)
    assert sorted(done["tables"]) == ["public.customers", "public.orders"]
    imported = cli.json("connect", "main", "--tenant", "shop")["uri"]
    assert _answers(imported) == _answers(source)
    with psycopg.connect(imported) as conn:
        owners = conn.execute("SELECT DISTINCT tableowner FROM pg_tables "
                              "WHERE schemaname = 'public'").fetchall()
        assert owners == [("shop",)]
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                            ).fetchone() == (False,)
    cli.json("compute", "stop", "main", "--tenant", "shop")


def test_a_source_that_cannot_be_read_leaves_no_tenant(source: str, cli: Strata) -> None:
    wrong = source.replace(PASSWORD, "wrong")
    message = cli.fail(1, "tenant", "import", "nope", "--from", wrong)
    assert "pg_dump of the source failed" in message and "wrong" not in message
    assert "nope" not in [t["tenant"] for t in cli.json("tenant", "list")["tenants"]]
    assert "not a PostgreSQL URI" in cli.fail(1, "tenant", "import", "nope", "--from",
                                              "host=a b c")
