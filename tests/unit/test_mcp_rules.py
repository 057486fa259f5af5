"""What ``strata mcp`` reads from a token and the rules it adds on top of the page
server's: claims read from tokens the page server's own authority issued (so a change of
the token format fails here), protected branches and read-only tokens."""

from __future__ import annotations

import pytest

from pageserver.api.auth import ALL_TENANTS, Scope, TokenAuthority
from pageserver.api.signing_keys import KeyRing
from pageserver.api.token_registry import TokenRegistry
from proto import strata_pb2 as pb
from strata.mcp import guard
from strata.mcp.caller import BadToken, caller_of
from tests.tokens import every_tenant


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(KeyRing(b"k" * 32), TokenRegistry(None), every_tenant)


def test_the_claims_are_those_the_page_server_issued(authority: TokenAuthority) -> None:
    token = authority.issue("acme", Scope.TENANT, 60, branches=("prod", "dev"),
                            read_only=True)
    caller = caller_of(token, "stdio")
    claims = authority.verify(token)
    assert (caller.tenant, caller.scope, caller.token_id, caller.branches,
            caller.read_only) == ("acme", "tenant", claims.token_id, ("prod", "dev"), True)
    assert caller.tenant_or("other") == "acme" and caller.names("prod")

    everything = caller_of(authority.issue("acme", Scope.TENANT, 60), "stdio")
    assert everything.branches is None and not everything.read_only
    assert not everything.names("main")  # a token for every branch names none
    admin = caller_of(authority.issue(ALL_TENANTS, Scope.ADMIN, 60), "stdio")
    assert admin.tenant_or("other") == "other"


@pytest.mark.parametrize("token", ["", "nonsense", "a.b.c"])
def test_what_is_not_a_strata_token_is_refused(token: str) -> None:
    with pytest.raises(BadToken, match="not a Strata token"):
        caller_of(token, "stdio")


def test_protected_branches_change_only_with_a_token_naming_them(
        authority: TokenAuthority) -> None:
    wide = caller_of(authority.issue("acme", Scope.TENANT, 60), "stdio")
    named = caller_of(authority.issue("acme", Scope.TENANT, 60, branches=("prod",)), "x")
    reader = caller_of(authority.issue("acme", Scope.TENANT, 60, read_only=True), "x")
    prod = pb.BranchInfo(name="prod", protected=True)
    fork = pb.BranchInfo(name="fork")
    main = pb.BranchInfo(name="main")  # protected whatever the flag says

    for info in (prod, main):
        with pytest.raises(guard.Refused, match=f"branch {info.name!r} is protected"):
            guard.check_change(wide, info, "reset")
    guard.check_change(named, prod, "reset")
    guard.check_write(named, prod)
    guard.check_write(wide, fork)
    with pytest.raises(guard.Refused, match="the token is read-only"):
        guard.check_write(reader, fork)
    assert [guard.may_change(wide, b) for b in (prod, fork, main)] == [False, True, False]
