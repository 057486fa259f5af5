"""Who holds a timeline's writer slot right now: a lease renewed by the writer's heartbeats.

The writer epoch (persisted in the manifest) fences a stale writer; the lease (kept in
memory) lets a second compute be *refused* politely instead of silently fencing the
first. A holder names its compute slot (host and directory), so the same compute
restarting after a crash takes its slot back at once, while a different one must wait
until the lease lapses or pass ``force``. After a page server restart nobody holds a
lease until the running writer's next heartbeat re-establishes it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from common.errors import FailedPreconditionError


@dataclass
class WriterLease:
    """The holder of a writer epoch and when it last proved it is alive."""

    holder: str = ""
    epoch: int = 0
    renewed_at: float = 0.0  # time.monotonic()

    def active(self, lease_s: float, now: float) -> bool:
        return bool(self.holder) and now - self.renewed_at < lease_s


class WriterLeases:
    """The lease of one timeline; thread-safe."""

    def __init__(self, lease_s: float) -> None:
        self.lease_s = lease_s
        self._lease = WriterLease()
        self._lock = threading.Lock()

    def check_free(self, holder: str, force: bool) -> None:
        """Refuse a new writer while another holder's lease is live (unless ``force``)."""
        with self._lock:
            now = time.monotonic()
            lease = self._lease
            if force or not lease.active(self.lease_s, now) or lease.holder == holder:
                return
            raise FailedPreconditionError(
                f"the branch already has a writer ({lease.holder}, epoch {lease.epoch}, "
                f"alive {now - lease.renewed_at:.1f} s ago); stop that compute first, or "
                f"force a takeover (`strata compute start --force`), which fences it")

    def grant(self, holder: str, epoch: int) -> None:
        with self._lock:
            self._lease = WriterLease(holder, epoch, time.monotonic())

    def renew(self, holder: str, epoch: int) -> None:
        """A heartbeat of the current writer (also after a restart, which forgot leases)."""
        with self._lock:
            self._lease = WriterLease(holder, epoch, time.monotonic())

    def release(self, epoch: int) -> None:
        with self._lock:
            if self._lease.epoch == epoch:
                self._lease = WriterLease()

    def current(self) -> WriterLease | None:
        """The live lease, if any."""
        with self._lock:
            live = self._lease.active(self.lease_s, time.monotonic())
            return WriterLease(**vars(self._lease)) if live else None
