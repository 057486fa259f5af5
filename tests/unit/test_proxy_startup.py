"""How a startup names its branch (the ``options`` parameter) and what the proxy answers a
client that asks for a protocol newer than 3.0."""

from __future__ import annotations

import struct

import pytest

from strata.proxy.pgwire import Startup
from strata.proxy.startup import (
    Route,
    RouteError,
    escape_option,
    negotiate_protocol_version,
    protocol_options,
    route_of,
    split_options,
    take_branch,
)


def test_the_branch_comes_from_options_and_user_and_database_pass_unchanged() -> None:
    startup = Startup({"user": "app", "database": "shop",
                       "options": "-c strata.branch=acme/dev", "application_name": "psql"})
    assert route_of(startup) == Route("acme", "dev", Startup(
        {"user": "app", "database": "shop", "application_name": "psql"}))
    assert not route_of(startup).owner
    only_branch = route_of(Startup({"user": "acme", "options": "--strata.branch=dev"}))
    assert (only_branch.tenant, only_branch.branch, only_branch.owner) == ("acme", "dev", True)
    assert "database" not in only_branch.startup.params  # PostgreSQL's default: the user's


@pytest.mark.parametrize("options", [
    "-c strata.branch=acme/dev", "-cstrata.branch=acme/dev", "--strata.branch=acme/dev",
    "  -c   strata.branch=acme/dev  "])
def test_every_spelling_of_the_setting_is_taken_out(options: str) -> None:
    assert take_branch(options) == ("acme/dev", "")
    assert take_branch("--strata-branch=x")[0] is None  # PostgreSQL's strata_branch


def test_other_options_are_kept_with_their_escapes() -> None:
    options = r"-c work_mem=64MB -c strata.branch=acme/dev --application_name=a\ b -c x.y=1\\2"
    branch, kept = take_branch(options)
    assert branch == "acme/dev"
    assert kept == r"-c work_mem=64MB --application_name=a\ b -c x.y=1\\2"
    assert split_options(kept) == ["-c", "work_mem=64MB", "--application_name=a b", "-c",
                                   "x.y=1\\2"]
    route = route_of(Startup({"user": "acme", "options": options}))
    assert route.startup.params["options"] == kept


def test_escape_option_is_the_inverse_of_split_options() -> None:
    words = ["plain", "with space", "tab\there", "back\\slash", "new\nline"]
    assert split_options(" ".join(escape_option(word) for word in words)) == words


def test_a_startup_without_a_branch_is_told_how_to_name_one() -> None:
    for params in ({"user": "acme"}, {"user": "acme", "options": "-c work_mem=1MB"},
                   {"user": "acme", "database": "main"}):
        with pytest.raises(RouteError, match=r"strata.branch=TENANT/BRANCH") as refused:
            route_of(Startup(params))
        assert refused.value.sqlstate == "08004"
    with pytest.raises(RouteError, match="no PostgreSQL user name"):
        route_of(Startup({"options": "-c strata.branch=acme/main"}))


def test_bad_options_are_refused() -> None:
    with pytest.raises(RouteError, match="given 2 times"):
        take_branch("-c strata.branch=a/b --strata.branch=a/c")
    with pytest.raises(RouteError, match="backslash"):
        split_options("-c x=1\\")
    with pytest.raises(RouteError, match="TENANT/BRANCH or BRANCH"):
        route_of(Startup({"user": "acme", "options": "-c strata.branch=acme/"}))


def test_protocol_options_are_dropped_and_named_in_negotiate_protocol_version() -> None:
    startup = Startup({"user": "acme", "options": "-c strata.branch=main",
                       "_pq_.test_option": "1", "_pq_.other": "x"})
    assert protocol_options(startup) == ["_pq_.test_option", "_pq_.other"]
    assert route_of(startup).startup == Startup({"user": "acme"})
    message = negotiate_protocol_version(protocol_options(startup))
    assert message[:1] == b"v"
    assert struct.unpack("!I", message[1:5])[0] == len(message) - 1
    assert struct.unpack("!ii", message[5:13]) == (3 << 16, 2)  # newest: 3.0; 2 options
    assert message[13:] == b"_pq_.test_option\0_pq_.other\0"
    assert negotiate_protocol_version([]) == b"v" + struct.pack("!Iii", 12, 3 << 16, 0)
