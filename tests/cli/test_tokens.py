"""``strata token`` and ``strata audit`` end to end, and the quota bypasses of issue 18."""

from __future__ import annotations

from typing import Any

from tests.cli.conftest import Strata

GENERAL, USAGE, NOT_FOUND, AUTH = 1, 2, 3, 4


def _token_file(strata: Strata, token: str, name: str) -> str:
    path = strata.home.parent / f"{name}.token"
    path.write_text(token)
    path.chmod(0o600)
    return str(path)


def test_the_reported_quota_bypass_is_refused(strata: Strata) -> None:
    """2 branches and 1 hour: no restore, reset or setting may keep a third, or one that
    never expires."""
    strata.json("tenant", "create", "quota-small", "--empty")
    strata.json("tenant", "set", "quota-small", "--max-branches", "2", "--max-ttl", "1h")
    as_small = ("--tenant", "quota-small")
    strata.json("branch", "create", "a", *as_small)
    for number in range(3):
        message = strata.fail(GENERAL, "branch", "reset", "a", "--preserve-as", f"p{number}",
                              *as_small)
        assert message == "tenant 'quota-small' has 2 branches, its quota is 2: delete some first"
    assert "at most 3600 s" in strata.fail(GENERAL, "branch", "set", "a", "--no-ttl", *as_small)
    assert "never expire" in strata.fail(GENERAL, "branch", "set", "a", "--protected",
                                         "--no-ttl", *as_small)
    branches = strata.json("branch", "list", *as_small)["branches"]
    assert sorted(b["name"] for b in branches) == ["a", "main"]
    assert [b["name"] for b in branches if not b["expires_at_us"]] == ["main"]
    strata.run("tenant", "delete", "quota-small", "--yes")


def _actions(entries: list[dict[str, Any]], token_id: str) -> set[str]:
    return {e["action"] for e in entries if e["token_id"] == token_id}


def test_tokens_are_listed_limited_revoked_and_audited(strata: Strata) -> None:
    strata.json("tenant", "create", "audited", "--empty")
    strata.json("tenant", "set", "audited", "--max-branches", "9")
    owner = strata.json("token", "create", "--tenant", "audited", "--scope", "tenant")
    assert set(owner) >= {"token", "id"}
    as_owner = ("--tenant", "audited", "--token-file", _token_file(strata, owner["token"], "owner"))

    strata.json("branch", "create", "dev", *as_owner)
    strata.json("checkpoint", "create", "dev", "cp", *as_owner)
    strata.json("branch", "reset", "dev", *as_owner)
    strata.json("branch", "restore", "dev", "--to-checkpoint", "cp", *as_owner)
    strata.json("branch", "set", "dev", "--ttl", "2h", *as_owner)
    strata.json("checkpoint", "delete", "cp", *as_owner)

    limited = strata.json("token", "create", "--scope", "tenant", "--branch", "dev",
                          "--read-only", *as_owner)
    as_limited = ("--tenant", "audited", "--token-file",
                  _token_file(strata, limited["token"], "limited"))
    assert [b["name"] for b in strata.json("branch", "list", *as_limited)["branches"]] == [
        "dev"]
    assert "limited to branch dev, not main" in strata.fail(AUTH, "branch", "show", "main",
                                                           *as_limited)
    assert "read-only" in strata.fail(AUTH, "branch", "set", "dev", "--ttl", "1h", *as_limited)

    listed = {t["id"]: t for t in strata.json("token", "list", *as_owner)["tokens"]}
    assert listed[limited["id"]]["branches"] == ["dev"] and listed[limited["id"]]["read_only"]
    assert {t["tenant"] for t in listed.values()} == {"audited"}
    strata.json("token", "revoke", limited["id"], *as_owner)
    assert "revoked" in strata.fail(AUTH, "branch", "list", *as_limited)
    assert strata.json("token", "list", "--tenant", "audited")["tokens"][-1]["revoked_at"]
    assert "no token" in strata.fail(NOT_FOUND, "token", "revoke", "0" * 32, *as_owner)
    strata.run("branch", "delete", "dev", "--yes", *as_owner)
    assert "token id" in strata.run("audit", "--help").stdout

    entries = strata.json("audit", "--since", "1h", "--tenant", "audited")["entries"]
    assert _actions(entries, owner["id"]) == {
        "branch.create", "checkpoint.create", "branch.reset", "branch.restore",
        "branch.update", "checkpoint.delete", "token.create", "token.revoke", "branch.delete"}
    admin = {e["token_id"] for e in entries if e["action"] in ("tenant.create",
                                                               "tenant.quotas")}
    assert len(admin) == 1 and owner["id"] not in admin
    minted = [e for e in entries if e["action"] == "token.create"]
    assert [e["target"] for e in minted] == [owner["id"], limited["id"]]
    assert all(e["peer"] and e["scope"] for e in entries)
    own_view = strata.json("audit", *as_owner)["entries"]
    assert {e["tenant"] for e in own_view} == {"audited"}
    assert "branch.delete" in strata.run("audit", *as_owner).stdout

    strata.run("tenant", "delete", "audited", "--yes")
    deleted = strata.json("audit", "--since", "1m")["entries"]
    assert deleted[-1]["action"] == "tenant.delete" and deleted[-1]["tenant"] == "audited"
    assert "no longer exists" in strata.fail(AUTH, "branch", "list", *as_owner)
