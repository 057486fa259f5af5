"""Whether this page server still serves a tenant: a fence, tripped once it is superseded.

Another page server that attaches the tenant claims a newer generation and then writes
the next chunk of the tenant's log and the next version of every manifest
(``pageserver/tenant_log.py``, ``pageserver/manifest_store.py``). Every write of ours
is a create-if-absent of such a next name, so the first one that finds the name taken
by another generation trips the fence: from then on the tenant acknowledges, publishes
and deletes nothing here (``docs/rfcs/0008-the-object-store-is-the-truth.md``).
"""

from __future__ import annotations

import threading

from common.errors import FailedPreconditionError


class SupersededError(FailedPreconditionError):
    """Another page server attached the tenant at a newer generation; this one lost it."""


class Fence:
    """One tenant's fence at one generation of this page server."""

    def __init__(self, tenant_id: str, generation: int) -> None:
        self.tenant_id = tenant_id
        self.generation = generation
        self._lock = threading.Lock()
        self._error: SupersededError | None = None

    @property
    def tripped(self) -> bool:
        return self._error is not None

    def trip(self, evidence: str) -> SupersededError:
        """Record that the tenant was taken over (``evidence`` says how we learnt it);
        returns the error every later call gets."""
        with self._lock:
            if self._error is None:
                self._error = SupersededError(
                    f"tenant {self.tenant_id!r} was attached by another page server "
                    f"({evidence}); this page server (generation {self.generation}) no "
                    "longer serves it")
            return self._error

    def check(self) -> None:
        """Raise SupersededError once the fence is tripped."""
        error = self._error
        if error is not None:
            raise error
