"""`strata psql`: a branch that cannot be reached fails in one line, before psql runs."""

from __future__ import annotations

from tests.cli.conftest import Strata


def test_psql_on_a_missing_branch_fails_in_one_line_without_running_psql(
        strata: Strata) -> None:
    """psql is never started against its default socket: the one line is strata's."""
    message = strata.fail(3, "psql", "nosuch", "-c", "select 1")
    assert "nosuch" in message and "socket" not in message


def test_psql_without_a_page_server_fails_in_one_line(idle_strata: Strata) -> None:
    message = idle_strata.fail(5, "psql", "main", "-c", "select 1")
    assert "strata up" in message


def test_psql_refuses_json(strata: Strata) -> None:
    assert "--json" in strata.fail(2, "psql", "--json", "main")


def test_psql_given_a_uri_says_to_give_a_branch_without_echoing_the_password(
        strata: Strata) -> None:
    """`strata psql "$(strata connect X)"` is an easy slip; the URI holds the password."""
    uri = "postgresql://acme:s3cret-pw@127.0.0.1:6432/postgres"
    for command in ("psql", "connect"):
        message = strata.fail(2, command, uri)
        assert "branch name, not a URI" in message and "s3cret-pw" not in message


def test_psql_at_a_point_that_is_none_fails_in_one_line(strata: Strata) -> None:
    message = strata.fail(2, "psql", "main@no/such", "-c", "select 1")
    assert "no point of history" in message and "socket" not in message
