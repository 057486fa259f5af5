"""A compute's token renewal (compute/token_renewal.py) against a real page server."""

from __future__ import annotations

import logging

import pytest

from common.client import ClientError, StrataClient
from compute.token_renewal import TokenRenewal
from pageserver.api import auth
from proto import strata_pb2 as pb
from tests.api.conftest import Live


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_renewal_replaces_the_token_once_half_its_life_has_passed(
        live: Live, caplog: pytest.LogCaptureFixture) -> None:
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant="t", empty=True),
                             metadata=live.admin, timeout=10)
    first = live.authority.issue("t", auth.Scope.COMPUTE, 600, branches=("main",))
    issued = live.authority.verify(first)
    clock = Clock(issued.issued_at + 299)
    with StrataClient(f"127.0.0.1:{live.server.port}", first) as client:
        renewal = TokenRenewal(client, "t", first, clock)
        renewal.renew_if_due()
        assert renewal.renewals == 0  # less than half its life has passed
        clock.now = issued.issued_at + 301
        renewal.renew_if_due()
        assert renewal.renewals == 1
        live.authority.registry.revoke(issued.token_id)  # the client no longer uses it
        assert client.get_branch("t", "main").name == "main"
        successor = next(r for r in live.authority.registry.records()
                         if r.renewed_from == issued.token_id)
        assert successor.branches == ("main",)
        assert successor.expires_at - successor.created_at == 600

        clock.now = successor.created_at + 299
        renewal.renew_if_due()  # not due again until half of the new lifetime has passed
        assert renewal.renewals == 1
        live.authority.registry.revoke(successor.token_id)
        clock.now = successor.created_at + 301
        with caplog.at_level(logging.WARNING, logger="compute.token_renewal"):
            renewal.renew_if_due()  # a revoked token cannot renew: logged, retried later
        assert renewal.renewals == 1 and "token renewal failed" in caplog.text
        with pytest.raises(ClientError, match="revoked"):
            client.get_branch("t", "main")
