"""What strangers may hold of the proxy before they authenticate.

A connection counts as unauthenticated from its accept until its client proved who it is
(to the proxy, or to the compute for roles the proxy passes through). Such connections
are capped in total, per source address and per tenant named; a cap that is full drops
its OLDEST member rather than refusing the newcomer: a flood of idle connections then
only pushes out connections that idled longest, and a client that authenticates in the
time the flood takes to refill a cap gets in. Each also has a deadline
(``Caps.auth_timeout_s``, PostgreSQL's ``authentication_timeout``), and each of its
messages a size limit (``strata.proxy.pgwire``).
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("strata.proxy")


@dataclass(frozen=True)
class Caps:
    """Limits on unauthenticated connections."""

    auth_timeout_s: float = 60.0
    total: int = 1000
    per_source: int = 200
    per_tenant: int = 200

    def __post_init__(self) -> None:
        if self.auth_timeout_s <= 0 or min(self.total, self.per_source, self.per_tenant) < 1:
            raise ValueError("the authentication timeout and every cap must be positive")


class Pending:
    """One unauthenticated connection; ``drop`` ends it (closes its socket at once)."""

    __slots__ = ("drop", "dropped", "source", "tenant")

    def __init__(self, source: str, drop: Callable[[], None]) -> None:
        self.source = source
        self.tenant: str | None = None
        self.drop = drop
        self.dropped = False  # by the gate, for a full cap


class Gate:
    """The unauthenticated connections, oldest first, in total and per group."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self._all: dict[Pending, None] = {}  # dicts keep insertion order: oldest first
        self._by_source: dict[str, dict[Pending, None]] = {}
        self._by_tenant: dict[str, dict[Pending, None]] = {}
        self.dropped = 0  # connections dropped for a full cap (for tests and the log)

    def __len__(self) -> int:
        return len(self._all)

    def admit(self, source: str, drop: Callable[[], None]) -> Pending:
        """Count a new connection from ``source``, making room for it if a cap is full."""
        pending = Pending(source, drop)
        self._make_room(self._all, self.caps.total, "in total")
        group = self._by_source.setdefault(source, {})
        self._make_room(group, self.caps.per_source, f"from {source}")
        self._all[pending] = None
        group[pending] = None
        return pending

    def name(self, pending: Pending, tenant: str) -> None:
        """The connection asks for ``tenant``: count it there too."""
        if pending not in self._all or pending.tenant is not None:
            return
        group = self._by_tenant.setdefault(tenant, {})
        self._make_room(group, self.caps.per_tenant, f"for tenant {tenant!r}")
        pending.tenant = tenant
        group[pending] = None

    def release(self, pending: Pending) -> None:
        """The connection authenticated or ended: it no longer counts."""
        if self._all.pop(pending, 0) is None:
            _forget(self._by_source, pending.source, pending)
            if pending.tenant is not None:
                _forget(self._by_tenant, pending.tenant, pending)

    def _make_room(self, group: dict[Pending, None], cap: int, where: str) -> None:
        while len(group) >= cap:
            oldest = next(iter(group))
            self.release(oldest)
            oldest.dropped = True
            self.dropped += 1
            log.debug("dropped the oldest unauthenticated connection %s (cap %d)", where, cap)
            oldest.drop()


def _forget(groups: dict[str, dict[Pending, None]], key: str, pending: Pending) -> None:
    group = groups.get(key)
    if group is not None:
        group.pop(pending, None)
        if not group:
            del groups[key]


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open descriptors to its hard limit (each session
    costs two); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
