"""`strata branch changes` and `strata connect BRANCH@POINT` without computes: the
catalog of a real initdb cluster names what its import wrote, bad points are one-line
errors that leave no endpoint behind, and endpoints are hidden from listings."""

from __future__ import annotations

from tests.cli.conftest import Strata


def test_changes_of_main_since_its_start_name_the_catalogs_initdb_wrote(
        strata: Strata) -> None:
    strata.json("tenant", "create", "hist")
    found = strata.json("branch", "changes", "main", "--tenant", "hist")
    assert found["since_lsn"] == 0 and found["complete"] and not found["compute_checkpointed"]
    by_name = {r["relation"]: r for r in found["relations"]}
    pg_class = by_name["postgres.pg_catalog.pg_class"]
    assert (pg_class["kind"], pg_class["change"]) == ("table", "created")
    assert by_name["postgres.pg_catalog.pg_class_oid_index"]["table"] == "pg_class"
    assert "template1.pg_catalog.pg_class" in by_name
    assert found["pages"] == sum(r["pages"] for r in found["relations"]) > 100
    shown = strata.run("branch", "changes", "main", "--tenant", "hist").stdout
    assert "postgres.pg_catalog.pg_class " in shown and f"{found['pages']} pages" in shown
    strata.json("branch", "create", "quiet", "--tenant", "hist")
    assert strata.json("branch", "changes", "quiet", "--tenant", "hist")["relations"] == []


def test_bad_points_are_usage_errors_and_endpoints_are_hidden(strata: Strata) -> None:
    strata.json("tenant", "create", "trips")
    assert "no point of history" in strata.fail(2, "connect", "main@no/such", "--tenant",
                                                "trips")
    assert "no point of history" in strata.fail(2, "branch", "changes", "main", "--since",
                                                "+5m", "--tenant", "trips")
    assert "no branch 'nope'" in strata.fail(3, "connect", "nope@-1m", "--tenant", "trips")
    assert [b["name"] for b in strata.json("branch", "list", "--all", "--tenant", "trips")
            ["branches"]] == ["main"]  # the failures left no endpoint
    endpoint = strata.json("connect", "main@now", "--tenant", "trips", "--idle", "1m")
    assert endpoint["ephemeral"] and endpoint["user"] == "strata_readonly"
    assert endpoint["of_branch"] == "main" and endpoint["idle_timeout_s"] == 60
    shown = strata.json("branch", "show", endpoint["branch"], "--tenant", "trips")
    assert shown["ephemeral"] and shown["expires_at_us"] and not shown["protected"]
    names = [b["name"] for b in strata.json("branch", "list", "--tenant", "trips")["branches"]]
    assert names == ["main"]
    everything = strata.json("branch", "list", "--all", "--tenant", "trips")["branches"]
    assert endpoint["branch"] in [b["name"] for b in everything]
