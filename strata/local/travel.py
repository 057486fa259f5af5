"""Time-travel endpoints: a branch as it was at a point, read-only, gone when idle.

An endpoint is a hidden branch (``ephemeral``) cut at the point, with a TTL and a
suspend timeout both of the idle time. Its compute gives the tenant's owner role no
password, so only the read-only role logs in (``computes.start``); the proxy stops the
compute once idle and the reaper then deletes the branch, which never outlives its TTL
while no compute runs on it (``strata.local.reaper``). Each call makes a new endpoint:
no two clients share, and none is deleted under another.
"""

from __future__ import annotations

import secrets

from common.client import HistoryPoint, StrataClient
from proto import strata_pb2 as pb

_BASE_LENGTH = 48  # of the branch name in the endpoint's, which names fit in 63 characters


def endpoint_name(branch: str) -> str:
    """A fresh hidden branch name for an endpoint of ``branch``."""
    return f"{branch[:_BASE_LENGTH]}.at-{secrets.token_hex(3)}"


def open_endpoint(client: StrataClient, tenant: str, branch: str, at: HistoryPoint,
                  idle_s: int) -> pb.BranchInfo:
    """Cut ``branch`` at ``at`` as a hidden, read-only branch that goes when idle."""
    return client.create_branch(tenant, endpoint_name(branch), parent=branch, at=at,
                                ttl_s=idle_s, suspend_timeout_s=idle_s, ephemeral=True)
