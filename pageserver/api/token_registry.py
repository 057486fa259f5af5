"""The page server's record of the tokens it issued: their metadata, never their secrets.

A token verifies only while its id is in this registry and not revoked, so revoking is
one durable write, and a registry that was lost refuses every token (fail closed) instead
of honouring revoked ones. Kept as one JSON file (``auth/tokens.json``, 0600), rewritten
atomically on each change; records of tokens expired for more than ``KEEP_EXPIRED_S`` are
dropped then, as no signature can bring them back.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Final

from common.durable import write_durably
from common.errors import NotFoundError

KEEP_EXPIRED_S: Final = 24 * 3600


@dataclass(frozen=True)
class TokenRecord:
    """What ``strata token list`` shows of one token."""

    token_id: str
    tenant: str
    scope: str
    branches: tuple[str, ...] | None  # None: every branch of the tenant
    read_only: bool
    created_at: int  # unix seconds
    expires_at: int
    revoked_at: int | None = None
    renewed_from: str | None = None

    def to_json(self) -> dict[str, object]:
        body = asdict(self)
        body["branches"] = list(self.branches) if self.branches is not None else None
        return body

    @staticmethod
    def from_json(body: dict[str, object]) -> TokenRecord:
        branches = body.get("branches")
        return TokenRecord(**{**body, "branches": tuple(branches)  # type: ignore[arg-type]
                              if isinstance(branches, list) else None})


class TokenRegistry:
    """Issued tokens by id, persisted in ``path`` (None: in memory only, for tests)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._records: dict[str, TokenRecord] = {}
        if path is not None and path.exists():
            for body in json.loads(path.read_text())["tokens"]:
                record = TokenRecord.from_json(body)
                self._records[record.token_id] = record

    def get(self, token_id: str) -> TokenRecord | None:
        with self._lock:
            return self._records.get(token_id)

    def records(self) -> list[TokenRecord]:
        """Every kept record, oldest first."""
        with self._lock:
            return sorted(self._records.values(), key=lambda r: (r.created_at, r.token_id))

    def add(self, record: TokenRecord) -> None:
        """Record a token before it is handed out: durable when this returns."""
        with self._lock:
            self._records[record.token_id] = record
            self._persist()

    def revoke(self, token_id: str) -> TokenRecord:
        """Mark a token revoked (again: no change); NotFoundError for an unknown id."""
        with self._lock:
            record = self._records.get(token_id)
            if record is None:
                raise NotFoundError(f"no token {token_id!r} (or it expired long ago)")
            if record.revoked_at is None:
                record = replace(record, revoked_at=int(time.time()))
                self._records[token_id] = record
                self._persist()
            return record

    def _persist(self) -> None:
        horizon = int(time.time()) - KEEP_EXPIRED_S
        self._records = {i: r for i, r in self._records.items() if r.expires_at > horizon}
        if self._path is None:
            return
        body = {"tokens": [r.to_json() for r in self._records.values()]}
        write_durably(self._path, json.dumps(body, indent=1).encode(), 0o600)
