"""Forks for agents, shared by the CLI and the MCP server: N branches of one parent made
at once (NAME-1 ... NAME-N), all or none, with a TTL or a lease; and lease renewal.

A lease is an expiry that ``renew`` moves a lease ahead again (the page server keeps the
lease with the branch): forks whose agent died stop being renewed, expire, and the
reaper deletes them with their storage, as any branch whose TTL passed.
"""

from __future__ import annotations

import contextlib
import re

from common.client import NEWEST, ClientError, HistoryPoint, StrataClient
from proto import strata_pb2 as pb
from strata.local.errors import LocalError

MAX_COUNT = 50  # forks one create makes


def fork_names(name: str, count: int | None) -> list[str]:
    """``[name]``, or with ``count`` ``name-1`` ... ``name-count``."""
    if count is None:
        return [name]
    if not 1 <= count <= MAX_COUNT:
        raise LocalError(f"give a count from 1 to {MAX_COUNT}, not {count}")
    return [f"{name}-{number}" for number in range(1, count + 1)]


def create_forks(client: StrataClient, tenant: str, names: list[str], *, parent: str,
                 at: HistoryPoint = NEWEST, ttl_s: int = 0, lease_s: int = 0,
                 suspend_timeout_s: int = 0, protected: bool = False,
                 history_s: int = 0, undo_off: bool = False) -> list[pb.BranchInfo]:
    """Fork ``parent`` once per name; if one fails, those made are deleted again."""
    made: list[pb.BranchInfo] = []
    try:
        for name in names:
            made.append(client.create_branch(tenant, name, parent=parent, at=at, ttl_s=ttl_s,
                                             lease_s=lease_s,
                                             suspend_timeout_s=suspend_timeout_s,
                                             protected=protected, history_s=history_s,
                                             undo_off=undo_off))
    except BaseException:
        for info in made:
            with contextlib.suppress(ClientError):  # the error that stopped us is the news
                client.delete_branch(tenant, info.name)
        raise
    return made


def renew(client: StrataClient, tenant: str, names: list[str]) -> list[pb.BranchInfo]:
    """Renew the lease of each named branch; a name no branch has stands for the leased
    forks made under it (``NAME-1`` ... ``NAME-N``)."""
    listed = client.list_branches(tenant)
    existing = {b.name for b in listed}
    targets: list[str] = []
    for name in names:
        if name in existing:
            targets.append(name)
            continue
        forks = re.compile(re.escape(name) + r"-[0-9]+")
        members = sorted(b.name for b in listed if b.lease_s and forks.fullmatch(b.name))
        if not members:
            raise LocalError(f"no branch {name!r}, nor leased forks {name}-1 ... of it")
        targets.extend(members)
    return [client.update_branch(tenant, target, renew_lease=True) for target in targets]
