"""`strata tenant attach`, `detach` and `list` across two homes on one object store: a
tenant moves from one page server to another, and a new home on the same store takes a
tenant over with `strata up` and `strata tenant attach`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Strata, free_port, strata_home
from tests.moto_server import DUMMY_AWS_ENV

GENERAL, NOT_FOUND, AUTH = 1, 3, 4

NewHome = Callable[[], Strata]


@pytest.fixture
def new_home() -> Iterator[NewHome]:
    """Makes CLIs with homes of their own; stops every page server they started."""
    with ExitStack() as stack:
        def make() -> Strata:
            cli = Strata(stack.enter_context(strata_home()), free_port())
            stack.callback(cli.stop_everything)
            return cli

        yield make


def _sharing_objects_of(first: Strata, second: Strata) -> None:
    """Make ``second``'s local object store ``first``'s (as a shared mount would)."""
    second.home.mkdir(parents=True)
    (second.home / "objects").symlink_to(first.home / "objects", target_is_directory=True)


def _tenants(cli: Strata, *args: str) -> dict[str, dict[str, Any]]:
    return {t["tenant"]: t for t in cli.json("tenant", "list", *args)["tenants"]}


def test_a_tenant_moves_between_homes_on_one_store(new_home: NewHome) -> None:
    first, second = new_home(), new_home()
    first.up()
    first.json("tenant", "create", "t", "--empty")
    first.json("branch", "create", "dev", "--tenant", "t")
    _sharing_objects_of(first, second)
    second.up()
    second.json("tenant", "create", "u", "--empty")

    listed = _tenants(first)["t"]
    assert listed["attached_here"] and not listed["detached"]
    assert listed["address"] == f"127.0.0.1:{first.port}" and listed["pageserver_id"]
    assert "(this page server)" in first.run("tenant", "list").stdout

    message = second.fail(GENERAL, "tenant", "attach", "t")
    assert "detach it there first" in message and f"127.0.0.1:{first.port}" in message

    detached = first.json("tenant", "detach", "t")["tenant"]
    assert detached["detached"] and detached["address"] is None
    assert _tenants(first) == {}
    assert "detached from this page server" in first.fail(GENERAL, "branch", "list",
                                                          "--tenant", "t")
    everywhere = _tenants(second, "--all")
    assert sorted(everywhere) == ["t", "u"]
    assert everywhere["t"]["detached"] and everywhere["u"]["attached_here"]
    assert "nowhere (detached)" in second.run("tenant", "list", "--all").stdout

    attached = second.json("tenant", "attach", "t")["tenant"]
    assert attached["generation"] == listed["generation"] + 1
    assert attached["address"] == f"127.0.0.1:{second.port}" and attached["attached_here"]
    assert attached["pageserver_id"] != listed["pageserver_id"]
    assert second.json("branch", "show", "dev", "--tenant", "t")["parent"] == "main"
    assert sorted(_tenants(second)) == ["t", "u"]
    where = _tenants(first, "--all")["t"]
    assert (where["address"], where["attached_here"]) == (f"127.0.0.1:{second.port}", False)
    assert "attached to page server" in first.fail(GENERAL, "tenant", "attach", "t")


def test_detach_and_attach_need_an_admin_token(new_home: NewHome, tmp_path: Path) -> None:
    cli = new_home()
    cli.up()
    cli.json("tenant", "create", "t", "--empty")
    token_file = tmp_path / "token"
    token_file.write_text(cli.json("token", "create", "--tenant", "t", "--scope", "tenant")
                          ["token"])
    for command in ("detach", "attach"):
        cli.fail(AUTH, "tenant", command, "t", "--token-file", str(token_file))
    assert sorted(_tenants(cli)) == ["t"]


def _new_home_takes_over(first: Strata, second: Strata, *up: str) -> None:
    """The contract: `strata up` on a new home with the same store, then `strata tenant
    attach NAME`, serves the tenant."""
    first.up(*up)
    first.json("tenant", "create", "t", "--empty")
    first.json("branch", "create", "dev", "--tenant", "t")
    first.json("down")
    second.up(*up)
    second.run("tenant", "attach", "t")
    assert second.json("branch", "show", "dev", "--tenant", "t")["parent"] == "main"
    assert _tenants(second)["t"]["address"] == f"127.0.0.1:{second.port}"


def test_a_new_home_on_the_same_local_store_takes_a_tenant_over(new_home: NewHome) -> None:
    first, second = new_home(), new_home()
    first.home.mkdir(parents=True)
    (first.home / "objects").mkdir()
    _sharing_objects_of(first, second)
    _new_home_takes_over(first, second)


@pytest.mark.s3
def test_a_new_home_on_the_same_bucket_takes_a_tenant_over(
        new_home: NewHome, moto_endpoint: str, s3_bucket: str) -> None:
    first, second = new_home(), new_home()
    first.env = second.env = DUMMY_AWS_ENV
    _new_home_takes_over(first, second, "--storage", "s3", "--s3-endpoint", moto_endpoint,
                         "--s3-bucket", s3_bucket, "--s3-prefix", "strata/moves")
