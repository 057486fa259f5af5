"""Quotas hold on every path that creates or keeps a branch (issue 18's bypasses)."""

from __future__ import annotations

import time

import pytest

from common.errors import QuotaExceededError
from pageserver.engine import Engine
from pageserver.manifest import Quotas
from pageserver.tenant import BranchPoint, BranchSettings, Tenant


def _small(engine: Engine) -> Tenant:
    """A tenant allowed 2 branches (main and one more) living at most an hour."""
    tenant = engine.create_tenant("t")
    tenant.set_quotas(Quotas(max_branches=2, max_ttl_s=3600))
    tenant.create_branch("a")
    return tenant


def _without_expiry(tenant: Tenant) -> list[str]:
    return sorted(info.name for info in tenant.branch_infos(sorted(tenant.branch_names()))
                  if info.expires_at_us is None)


def test_the_reported_bypass_is_refused(engine: Engine) -> None:
    """The issue's recipe: restores preserving the old state, then clearing the TTL, made 5
    branches without expiry under a quota of 2 branches and 1 hour."""
    tenant = _small(engine)
    lsn = tenant.branch("a").durable_lsn
    for number in range(3):
        with pytest.raises(QuotaExceededError, match="its quota is 2"):
            tenant.restore_branch("a", BranchPoint(lsn=lsn), preserve_as=f"p{number}")
    with pytest.raises(QuotaExceededError, match="at most 3600 s"):
        tenant.update_branch("a", {"expires_at_us": None})
    assert sorted(tenant.branch_names()) == ["a", "main"]
    assert _without_expiry(tenant) == ["main"]


def test_restores_keep_the_expiry_and_preserve_within_quota(engine: Engine) -> None:
    tenant = engine.create_tenant("t")
    tenant.set_quotas(Quotas(max_branches=3, max_ttl_s=3600))
    tenant.create_branch("a")
    lsn = tenant.branch("a").durable_lsn
    tenant.restore_branch("a", BranchPoint(lsn=lsn), preserve_as="kept")
    kept = tenant.branch_info("kept").expires_at_us
    assert kept is not None and kept <= time.time_ns() // 1000 + 3601 * 10**6
    tenant.restore_branch("a", None)  # a reset keeps the branch's expiry
    assert _without_expiry(tenant) == ["main"]


def test_ttls_beyond_the_quota_are_refused_on_update(engine: Engine) -> None:
    tenant = _small(engine)
    later = time.time_ns() // 1000 + 7200 * 10**6
    with pytest.raises(QuotaExceededError, match="at most 3600 s"):
        tenant.update_branch("a", {"expires_at_us": later})
    with pytest.raises(QuotaExceededError, match="never expire"):
        tenant.update_branch("a", {"protected": True, "expires_at_us": None})
    with pytest.raises(QuotaExceededError, match="never expire"):
        tenant.set_quotas(Quotas(max_branches=3, max_ttl_s=3600))
        tenant.create_branch("b", settings=BranchSettings(protected=True))
    tenant.update_branch("a", {"expires_at_us": time.time_ns() // 1000 + 60 * 10**6})


def test_restores_preserving_automatically_count_too(engine: Engine) -> None:
    """A restore of a branch with children keeps its past under a generated name: another
    branch, so it needs room under max_branches."""
    tenant = engine.create_tenant("t")
    tenant.set_quotas(Quotas(max_branches=3))
    tenant.create_branch("a")
    tenant.create_branch("child", parent="a")
    with pytest.raises(QuotaExceededError, match="its quota is 3"):
        tenant.restore_branch("a", None)
    assert sorted(tenant.branch_names()) == ["a", "child", "main"]
