"""Who connected to which branch through the proxy, and when: the connects part of the
audit log, beside the page server's (which holds branch, checkpoint, token and tenant
changes).

JSON lines in ``$STRATA_HOME/audit/connects.jsonl`` (0600 in a 0700 directory), in the
shape of the page server's entries (``at_us``, ``action``, ``tenant``, ``target``,
``token_id``, ``scope``, ``peer``, ``details``), so that ``strata audit`` shows both as
one log. The proxy appends from a thread of its own, so a session never waits for the
disk; lines queued together share one fsync.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from strata.local.home import Home


def path_of(home: Home) -> Path:
    return home.root / "audit" / "connects.jsonl"


class ConnectLog:
    """Appends connect entries to the home's file from a writer thread."""

    def __init__(self, home: Home) -> None:
        path = path_of(home)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "ab")
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="connect-log", daemon=True)
        self._writer.start()

    def record(self, tenant: str, branch: str, user: str, kind: str, peer: str,
               tls: bool) -> None:
        """Queue a connect: ``user`` logged in to ``tenant``/``branch`` from ``peer``;
        ``kind`` says with what (a branch credential, read-only, or a role's password)."""
        entry = {"at_us": time.time_ns() // 1000, "action": "connect", "tenant": tenant,
                 "target": branch, "token_id": "", "scope": kind, "peer": peer,
                 "details": json.dumps({"user": user, "tls": tls}, sort_keys=True)}
        self._queue.put(json.dumps(entry, sort_keys=True).encode() + b"\n")

    def close(self) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._writer.join()
        self._file.close()

    def _write(self) -> None:
        while True:
            lines = [self._queue.get()]
            while not self._queue.empty():
                lines.append(self._queue.get())
            self._file.write(b"".join(line for line in lines if line is not None))
            self._file.flush()
            os.fsync(self._file.fileno())
            if None in lines:
                return


def read(home: Home, since_us: int = 0) -> list[dict[str, Any]]:
    """The connects at or after ``since_us``, oldest first; none if there is no log (or
    this user may not read it)."""
    return read_entries(path_of(home), since_us)


def read_entries(path: Path, since_us: int = 0) -> list[dict[str, Any]]:
    """The entries of the JSON-lines log ``path`` at or after ``since_us``, oldest first;
    none if there is no log (or this user may not read it). A torn last line (a crash
    mid-append) is skipped."""
    try:
        lines = path.read_bytes().splitlines()
    except (FileNotFoundError, PermissionError):
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("at_us", 0) >= since_us:
            entries.append(entry)
    return entries
