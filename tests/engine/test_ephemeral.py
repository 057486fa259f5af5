"""Ephemeral branches (time-travel endpoints): they need a TTL, are never protected, and
keep the flag across a restart of the engine."""

from __future__ import annotations

import time

import pytest

from common.errors import InvalidArgumentError
from pageserver.tenant import BranchSettings
from tests.engine.conftest import EngineFactory


def test_an_ephemeral_branch_needs_a_ttl_and_keeps_its_flag(make_engine: EngineFactory) -> None:
    engine = make_engine()
    tenant = engine.create_tenant("t")
    soon = time.time_ns() // 1000 + 60_000_000
    for refused in (BranchSettings(None, ephemeral=True),
                    BranchSettings(None, protected=True, ephemeral=True)):
        with pytest.raises(InvalidArgumentError, match="ephemeral branch needs a TTL"):
            tenant.create_branch("x", settings=refused)
    tenant.create_branch("trip", settings=BranchSettings(soon, 60, ephemeral=True))
    tenant.create_branch("plain")
    assert tenant.branch_info("trip").ephemeral and not tenant.branch_info("plain").ephemeral
    engine.close()
    again = make_engine().tenant("t")
    assert again.branch_info("trip").ephemeral and again.branch_info("trip").expires_at_us
