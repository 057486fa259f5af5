"""Undo for destructive SQL: an automatic checkpoint before each statement that destroys
data, taken by the proxy while the statement waits (``strata undo`` restores the last).

The relay's C pump holds back a Query or Parse message its pre-filter flags and calls the
session's watch in its client-to-server thread; the statement reaches PostgreSQL only
when that returns. A named prepared statement that destroys data gets its checkpoint at
each Bind instead (the pump holds those Binds too), as drivers re-run prepared
statements without a new Parse. ``strata.proxy.destructive`` decides; for a destructive statement
the branch is read from the page server (one short read RPC: its durable LSN, and whether
undo is off for it) and the statement goes on. That LSN covers everything committed
before the statement (an acknowledged commit is durable on the page server) and nothing
of the statement, which PostgreSQL has not seen yet. The checkpoint itself (a manifest
write, milliseconds on a local store, more on S3) is made at that LSN by one background
thread per proxy, in order, while PostgreSQL runs the statement. A flagged message over
64 KiB (the pump shows only the start of one over 16 MiB) gets a checkpoint unread.

Automatic checkpoints are named ``auto-<UTC time>-<kind>``, carry the statement (cut to
``STATEMENT_CHARS``), expire after the retention (the reaper deletes them) and count
against no quota. If the page server cannot be read in time, the statement goes on
without one (logged): undo never blocks a statement for long or refuses it.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Final

from common.client import ClientError, StrataClient
from strata.proxy.destructive import STATEMENT_CHARS, Finding, findings
from strata.proxy.relay import Watch

log = logging.getLogger("strata.proxy.undo")
DEFAULT_RETENTION_S: Final = 24 * 3600
LOOKUP_TIMEOUT_S: Final = 2.0  # the longest a statement waits for its branch to be read
# A flagged query longer than this gets a checkpoint without the careful look, which
# takes ~0.7 µs a character in Python: a statement is held ~50 ms at most for it.
CAREFUL_LOOK_BYTES: Final = 64 * 1024
AUTOMATIC_PREFIX: Final = "auto-"
_KIND_CHARS: Final = 30


def query_of(message: bytes) -> str:
    """The SQL text of a Query ('Q') or Parse ('P') message (name, NUL, query, NUL...)."""
    body = message[5:]
    if message[:1] == b"P":
        body = body.partition(b"\0")[2]
    return body.partition(b"\0")[0].decode("utf-8", "replace")


def checkpoint_name(at_us: int, kind: str) -> str:
    """``auto-20261130-191203.123456-drop-table``: when, and what kind of statement."""
    at = datetime.fromtimestamp(at_us / 1e6, UTC)
    return f"{AUTOMATIC_PREFIX}{at:%Y%m%d-%H%M%S}.{at_us % 1_000_000:06d}-{kind[:_KIND_CHARS]}"


class Undo:
    """Takes the automatic checkpoints of every session it watches."""

    def __init__(self, client: StrataClient, retention_s: int = DEFAULT_RETENTION_S) -> None:
        self._client = client
        self.retention_s = retention_s
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="undo")

    def watch(self, tenant: str, branch: str) -> Watch:
        """What the relay calls with each held message of a session on the branch."""
        return _Session(self, tenant, branch)

    def look(self, message: bytes, whole: bool) -> list[Finding]:
        """What the query of a held Query or Parse message destroys."""
        sql = query_of(message)
        if whole and len(message) <= CAREFUL_LOOK_BYTES:
            return findings(sql)
        return [Finding("long-statement", " ".join(sql[:STATEMENT_CHARS].split()))]

    def take(self, tenant: str, branch: str, found: list[Finding]) -> None:
        """Before the statement goes on: fix the checkpoint's LSN and have the checkpoint
        written. Never raises: a failure costs the undo, logged."""
        started = time.perf_counter()
        try:
            info = self._client.get_branch(tenant, branch, timeout_s=LOOKUP_TIMEOUT_S)
        except ClientError as exc:
            log.warning("no undo for a %s on %s/%s: %s", found[0].kind, tenant, branch,
                        exc.message)
            return
        if info.undo_off:
            return
        lookup_s = time.perf_counter() - started
        name = checkpoint_name(time.time_ns() // 1000, found[0].kind)
        statement = "; ".join(f.statement for f in found)[:STATEMENT_CHARS]
        self._writer.submit(self._write, tenant, branch, name, info.last_lsn, statement,
                            lookup_s)

    def _write(self, tenant: str, branch: str, name: str, lsn: int, statement: str,
               lookup_s: float) -> None:
        started = time.perf_counter()
        try:
            self._client.create_checkpoint(tenant, branch, name, lsn, statement=statement,
                                           ttl_s=self.retention_s)
        except ClientError as exc:
            log.warning("automatic checkpoint %s of %s/%s failed: %s", name, tenant, branch,
                        exc.message)
            return
        log.info("automatic checkpoint %s of %s/%s at LSN %d (statement held %.2f ms, "
                 "checkpoint written in %.2f ms): %s", name, tenant, branch, lsn,
                 lookup_s * 1000, (time.perf_counter() - started) * 1000, statement)

    def close(self) -> None:
        """Write the checkpoints still queued, then stop."""
        self._writer.shutdown(wait=True)


class _Session:
    """The watch of one session: a Query or unnamed Parse that destroys data gets its
    checkpoint at once; a named Parse that does is remembered, and each Bind of it gets
    one (drivers prepare a statement run often, e.g. psycopg from its 5th run)."""

    def __init__(self, undo: Undo, tenant: str, branch: str) -> None:
        self._undo = undo
        self._tenant = tenant
        self._branch = branch
        self._prepared: dict[bytes, list[Finding]] = {}

    def __call__(self, message: bytes, whole: bool) -> bytes:
        kind, body = message[:1], message[5:]
        if kind == b"B":
            name = body.split(b"\0", 2)[1] if body.count(b"\0") >= 2 else b""
            if name in self._prepared:
                self._undo.take(self._tenant, self._branch, self._prepared[name])
        else:
            found = self._undo.look(message, whole)
            name = body.partition(b"\0")[0] if kind == b"P" else b""
            if name:
                self._prepared.pop(name, None)
                if found:
                    self._prepared[name] = found
            elif found:
                self._undo.take(self._tenant, self._branch, found)
        return b"".join(b"\0" + name for name in self._prepared) + b"\0" \
            if self._prepared else b""
