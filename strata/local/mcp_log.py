"""Which token called which MCP tool, on what, and how it ended: the MCP part of the audit
log, beside the page server's (changes) and the proxy's (connects).

JSON lines in ``$STRATA_HOME/audit/mcp.jsonl`` (0600 in a 0700 directory), in the shape of
the page server's entries (``at_us``, ``action``, ``tenant``, ``target``, ``token_id``,
``scope``, ``peer``, ``details``), so that ``strata audit`` shows all three as one log.
Each call is written and fsynced before its answer goes back to the agent: tool calls are
few next to page traffic, and a call the agent saw answered is on record.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from strata.local.connect_log import read_entries
from strata.local.home import Home


def path_of(home: Home) -> Path:
    return home.root / "audit" / "mcp.jsonl"


class McpLog:
    """Appends tool-call entries to the home's file, one durable line each."""

    def __init__(self, home: Home) -> None:
        path = path_of(home)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "ab")
        self._lock = threading.Lock()

    def record(self, *, tool: str, tenant: str, target: str, token_id: str, scope: str,
               peer: str, details: dict[str, Any]) -> None:
        """Append one call of ``tool``: on disk when this returns."""
        entry = {"at_us": time.time_ns() // 1000, "action": f"mcp.{tool}", "tenant": tenant,
                 "target": target, "token_id": token_id, "scope": scope, "peer": peer,
                 "details": json.dumps(details, sort_keys=True, default=str)}
        line = json.dumps(entry, sort_keys=True).encode() + b"\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read(home: Home, since_us: int = 0) -> list[dict[str, Any]]:
    """The tool calls at or after ``since_us``, oldest first; none if there is no log (or
    this user may not read it)."""
    return read_entries(path_of(home), since_us)
