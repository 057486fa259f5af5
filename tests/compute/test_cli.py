"""`strata tenant create` then `strata compute start main`: a database that psql, psycopg
and pgbench use normally; one writer per branch; stop, list and restart."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import pytest

from strata.local import computes
from strata.local.home import Home
from tests.cli.conftest import Strata, free_port, strata_home
from tests.compute.load import pg_tool


@pytest.fixture(scope="module")
def cli(compute_host: None) -> Iterator[Strata]:
    with strata_home() as home:
        strata = Strata(home, free_port())
        try:
            strata.up()
            strata.json("tenant", "create", "shop")
            yield strata
        finally:
            try:
                strata.stop_everything()
            finally:
                for tenant_dir in (home / "computes").glob("*"):
                    for node in computes.listing(Home(home), tenant_dir.name):
                        with contextlib.suppress(Exception):
                            node.kill()


def test_start_use_refuse_stop_restart(cli: Strata) -> None:
    started = cli.json("compute", "start", "main", "--tenant", "shop")
    assert started["status"] == "running" and started["user"] == "postgres"
    port = started["port"]
    node = computes.find(Home(cli.home), "shop", "main")
    assert node is not None and started["uri"] == node.spec.uri()
    assert started["host"] == str(node.spec.socket_dir)  # a unix socket, no TCP port
    assert (node.spec.socket_dir.stat().st_mode & 0o777) == 0o700
    psql = pg_tool("psql", node.spec, "-Atc", "SELECT current_setting('wal_recycle'), "
                   "current_setting('full_page_writes'), current_setting('listen_addresses')",
                   "postgres")
    assert psql.stdout.strip() == "off|off|"
    pg_tool("pgbench", node.spec, "-i", "-s", "1", "-q", "postgres")
    bench = pg_tool("pgbench", node.spec, "-c", "2", "-T", "3", "postgres")
    assert "tps = " in bench.stdout
    with psycopg.connect(started["uri"], autocommit=True) as conn:
        conn.execute("CREATE TABLE notes(body text)")
        conn.execute("INSERT INTO notes VALUES ('kept')")

    again = cli.fail(1, "compute", "start", "main", "--tenant", "shop")
    assert "already runs on branch 'main'" in again
    elsewhere = {"STRATA_COMPUTE_DIR": str(cli.home.parent / "elsewhere")}  # another slot
    refused = cli.run("compute", "start", "main", "--tenant", "shop", expect=1, env=elsewhere)
    assert "already has a writer" in refused.stderr
    assert "--force" in refused.stderr

    listed = cli.json("compute", "list", "--tenant", "shop")["computes"]
    assert [(c["branch"], c["status"], c["port"]) for c in listed] == [("main", "running", port)]
    assert cli.json("branch", "show", "main", "--tenant", "shop")["writer"].endswith(
        "/computes/shop/main")

    assert cli.json("tenant", "show", "shop")["compute_cache_disk_bytes"] > 1_000_000
    stopped = cli.json("compute", "stop", "main", "--tenant", "shop")
    assert stopped["was"] == "running"
    assert cli.json("tenant", "show", "shop")["compute_cache_disk_bytes"] == 0  # kept none
    assert cli.json("compute", "list", "--tenant", "shop")["computes"][0]["status"] == "stopped"
    assert cli.json("branch", "show", "main", "--tenant", "shop")["writer"] is None
    assert cli.json("compute", "stop", "main", "--tenant", "shop")["was"] == "stopped"

    cli.json("branch", "create", "feature", "--tenant", "shop")
    branch = cli.json("compute", "start", "feature", "--tenant", "shop",
                      "--full-page-writes", "on", "--cache-mb", "32", "--cache-keep-mb", "1")
    restarted = cli.json("compute", "start", "main", "--tenant", "shop")
    assert restarted["port"] == port and branch["port"] != port
    with psycopg.connect(restarted["uri"]) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("kept",)]
    with psycopg.connect(branch["uri"]) as conn:
        assert conn.execute("SHOW full_page_writes").fetchone() == ("on",)
        assert conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone() == (100_000,)
    for name in ("feature", "main"):
        cli.json("compute", "stop", name, "--tenant", "shop")
    kept = cli.json("tenant", "show", "shop")["compute_cache_disk_bytes"]
    assert 0 < kept <= 1024 * 1024 + 256 * 1024  # feature's 1 MB (and its index)
    listed = {c["branch"]: c for c in cli.json("compute", "list", "--tenant", "shop")["computes"]}
    assert listed["feature"]["cache_disk_bytes"] == kept and listed["feature"]["cache_keep_mb"] == 1
    assert listed["main"]["cache_disk_bytes"] == 0


def test_errors_are_one_line(cli: Strata) -> None:
    missing = cli.fail(3, "compute", "start", "nope", "--tenant", "shop")
    assert "nope" in missing
    assert "ever started" in cli.fail(3, "compute", "stop", "nope", "--tenant", "shop")
    assert "invalid" in cli.fail(2, "compute", "stop", "../x", "--tenant", "shop")
