"""The audit log: who (token id, scope, peer address) changed what, and when.

One JSON object a line in ``audit.jsonl`` (0600) in the page server's state directory,
appended, flushed and fsynced before the change's reply goes out, so an acknowledged
change is on record even if the machine fails right after. Read whole by ``ReadAudit``:
management changes are rare next to page traffic, and ``strata audit --since`` bounds
what it shows. Connections through the proxy are not logged here yet (see
docs/rfcs/0007-token-lifecycle-and-audit.md).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class AuditEntry:
    """One change, as a line of the log."""

    at_us: int
    token_id: str  # "": the page server itself (its admin token at start)
    scope: str
    peer: str
    action: str  # e.g. "branch.create"
    tenant: str  # acted on; "*": all tenants
    target: str  # the branch, checkpoint or token acted on; "" for a tenant's own
    details: str  # JSON of the request's other settings


class AuditLog:
    """Appends entries to ``path`` durably; reads them back."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "ab")

    def append(self, entry: AuditEntry) -> None:
        """Add ``entry``: on disk when this returns."""
        line = json.dumps(asdict(entry), sort_keys=True).encode() + b"\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def record(self, action: str, tenant: str, target: str = "", *, token_id: str = "",
               scope: str = "", peer: str = "", **details: object) -> None:
        """Append an entry stamped now."""
        self.append(AuditEntry(time.time_ns() // 1000, token_id, scope, peer, action, tenant,
                               target, json.dumps(details, sort_keys=True) if details else ""))

    def entries(self, since_us: int = 0) -> Iterator[AuditEntry]:
        """The entries at or after ``since_us``, oldest first; a torn last line (a crash
        in the middle of an append) is skipped."""
        with self._lock, open(self._path, "rb") as log:
            lines = log.readlines()
        for line in lines:
            try:
                entry = AuditEntry(**json.loads(line))
            except (ValueError, TypeError):
                continue
            if entry.at_us >= since_us:
                yield entry

    def close(self) -> None:
        with self._lock:
            self._file.close()
