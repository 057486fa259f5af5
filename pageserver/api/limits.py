"""Per-tenant limits on open streams and calls in flight, so no tenant can hold the server.

The synchronous gRPC server gives every call a worker thread for its whole life:
an idle GetPages stream holds one for as long as its client keeps it open. The
limits make the pool large enough for every call they admit: at most
``max_streams`` streams and ``max_calls`` unary calls run at once, a tenant may
hold at most ``streams_per_tenant`` streams of each method (so that its idle
GetPages streams cannot keep its own Ingest stream out) and ``calls_per_tenant``
unary calls, and the
pool has ``admin_threads`` more for calls with the admin token, which are never
limited. A call beyond a limit is refused at once with RESOURCE_EXHAUSTED
(``TooBusyError``) naming the limit, and its thread is free again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from common.errors import InvalidArgumentError, TooBusyError


@dataclass(frozen=True)
class CallLimits:
    """How many streams and unary calls may run at once, per tenant and in all."""

    streams_per_tenant: int = 64  # a compute keeps 13 (12 GetPages, 1 Ingest)
    calls_per_tenant: int = 16
    max_streams: int = 512
    max_calls: int = 128
    admin_threads: int = 32  # headroom for the operator's calls, never limited

    def __post_init__(self) -> None:
        for name in ("streams_per_tenant", "calls_per_tenant", "max_streams", "max_calls",
                     "admin_threads"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name} must be at least 1")

    @property
    def threads(self) -> int:
        """Worker threads the server needs so that admitted calls never wait for one."""
        return self.max_streams + self.max_calls + self.admin_threads


class _Counter:
    """Slots of one kind (streams or calls): per tenant and in all."""

    def __init__(self, kind: str, per_tenant: int, total: int, setting: str) -> None:
        self._kind = kind
        self._per_tenant = per_tenant
        self._total = total
        self._setting = setting
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}
        self._all = 0

    def acquire(self, tenant: str, method: str) -> None:
        key = f"{tenant}/{method}"
        with self._lock:
            held = self._held.get(key, 0)
            if held >= self._per_tenant:
                what = f"{method} {self._kind}" if method else self._kind
                raise TooBusyError(
                    f"tenant {tenant!r} has {held} {what} at once, its limit "
                    f"({self._setting}_per_tenant = {self._per_tenant}); close some or wait")
            if self._all >= self._total:
                raise TooBusyError(
                    f"the page server has {self._all} {self._kind} at once, its limit "
                    f"(max_{self._setting} = {self._total}); try again later")
            self._held[key] = held + 1
            self._all += 1

    def release(self, tenant: str, method: str) -> None:
        key = f"{tenant}/{method}"
        with self._lock:
            left = self._held[key] - 1
            if left:
                self._held[key] = left
            else:
                del self._held[key]
            self._all -= 1

    def held(self, tenant: str, method: str) -> int:
        with self._lock:
            return self._held.get(f"{tenant}/{method}", 0)


class CallAdmission:
    """Admits calls within ``CallLimits``; ``tenant`` None (the admin token) is not limited."""

    def __init__(self, limits: CallLimits) -> None:
        self.limits = limits
        self._streams = _Counter("streams open", limits.streams_per_tenant,
                                 limits.max_streams, "streams")
        self._calls = _Counter("calls in flight", limits.calls_per_tenant,
                               limits.max_calls, "calls")

    @contextmanager
    def stream(self, tenant: str | None, method: str) -> Iterator[None]:
        """Hold a slot for a stream of ``tenant`` to ``method`` (e.g. "GetPages")."""
        with self._holding(self._streams, tenant, method):
            yield

    @contextmanager
    def call(self, tenant: str | None) -> Iterator[None]:
        """Hold a unary-call slot of ``tenant`` while the call runs."""
        with self._holding(self._calls, tenant, ""):
            yield

    def open_streams(self, tenant: str, method: str) -> int:
        return self._streams.held(tenant, method)

    @staticmethod
    @contextmanager
    def _holding(counter: _Counter, tenant: str | None, method: str) -> Iterator[None]:
        if tenant is None:
            yield
            return
        counter.acquire(tenant, method)
        try:
            yield
        finally:
            counter.release(tenant, method)
