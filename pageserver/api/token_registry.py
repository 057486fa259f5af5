"""The record of every issued token, kept in the object store: their metadata, never their
secrets, shared by every page server on the store (rfcs/0014).

A token verifies only while its id is recorded and not revoked, so revoking is one object
create, and a registry that cannot be read refuses tokens (fail closed) instead of
honouring revoked ones. Each token is one object created once, ``auth/tokens/<id>``, before
the token is handed out; a revocation is another, ``auth/revoked/<id>``. No object is ever
rewritten, so page servers never race on one.

Every page server caches what it read. A token id it has not seen is read on first use.
The list of revocations is read again before a token is verified once ``REFRESH_S`` passed
since the last read, so a revocation made on one page server is honoured by every other
within ``REFRESH_S``. While the store cannot be read, the cached list is trusted for
``STALE_AFTER_S`` after the last good read, then every token is refused with
``RegistryUnavailableError`` (UNAVAILABLE: clients retry) until the store answers again.
Records of tokens expired for more than ``KEEP_EXPIRED_S`` are deleted once an hour.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Final

from common.errors import CorruptionError, NotFoundError, StrataError
from pageserver.remote import RemoteStorage
from pageserver.remote.retry import CALL_POLICY, create_once

log = logging.getLogger(__name__)

KEEP_EXPIRED_S: Final = 24 * 3600
REFRESH_S: Final = 5.0
STALE_AFTER_S: Final = 30.0
PRUNE_EVERY_S: Final = 3600.0
TOKENS_PREFIX: Final = "auth/tokens/"
# Token ids are hex (``secrets.token_hex``); an id that is not one word of these
# characters could name another object (``/``, ``..``, empty), so it is no token of ours.
_TOKEN_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
REVOKED_PREFIX: Final = "auth/revoked/"


class RegistryUnavailableError(StrataError):
    """The token registry could not be read for too long: tokens are refused, not trusted."""


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
    """Issued tokens by id, kept in ``storage`` (None: in memory only, for tests)."""

    def __init__(self, storage: RemoteStorage | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._storage = storage
        self._clock = clock
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._records: dict[str, TokenRecord] = {}  # without revoked_at
        self._revoked: dict[str, int] = {}
        self._refreshed_at = -STALE_AFTER_S
        self._pruned_at = clock()

    def get(self, token_id: str) -> TokenRecord | None:
        """The record of ``token_id`` as of at most ``REFRESH_S`` ago; None if unknown
        (also for what cannot be a token id, which is never looked up in the store)."""
        if not _TOKEN_ID.fullmatch(token_id):
            return None
        self._refresh_if_due()
        with self._lock:
            record = self._records.get(token_id)
        if record is None and self._storage is not None:
            record = self._read(token_id)
        return self._with_revocation(record) if record is not None else None

    def records(self) -> list[TokenRecord]:
        """Every kept record, oldest first."""
        self._refresh_if_due()
        if self._storage is not None:
            self._read_all()
        with self._lock:
            records = list(self._records.values())
        return sorted((self._with_revocation(r) for r in records),
                      key=lambda r: (r.created_at, r.token_id))

    def add(self, record: TokenRecord) -> None:
        """Record a token before it is handed out: durable when this returns."""
        record = replace(record, revoked_at=None)
        if self._storage is not None:
            body = json.dumps(record.to_json()).encode()
            if not create_once(self._storage, TOKENS_PREFIX + record.token_id, body,
                               CALL_POLICY):
                raise CorruptionError(f"token id {record.token_id} is recorded already")
        with self._lock:
            self._records[record.token_id] = record

    def revoke(self, token_id: str, at: int | None = None) -> TokenRecord:
        """Mark a token revoked, now or ``at`` (again: no change); NotFoundError for an
        unknown id."""
        record = self.get(token_id)
        if record is None:
            raise NotFoundError(f"no token {token_id!r} (or it expired long ago)")
        if record.revoked_at is not None:
            return record
        revoked_at = int(time.time()) if at is None else at
        if self._storage is not None:
            key = REVOKED_PREFIX + token_id
            body = json.dumps({"revoked_at": revoked_at}).encode()
            if not create_once(self._storage, key, body, CALL_POLICY):
                revoked_at = _revoked_at(self._storage.get(key))  # revoked elsewhere first
        with self._lock:
            self._revoked[token_id] = revoked_at
        return replace(record, revoked_at=revoked_at)

    def _with_revocation(self, record: TokenRecord) -> TokenRecord:
        with self._lock:
            return replace(record, revoked_at=self._revoked.get(record.token_id))

    def _read(self, token_id: str) -> TokenRecord | None:
        """A record not cached yet, and whether it was revoked, read from the store."""
        assert self._storage is not None
        try:
            record = TokenRecord.from_json(json.loads(self._storage.get(TOKENS_PREFIX + token_id)))
        except NotFoundError:
            return None
        except StrataError as exc:
            raise RegistryUnavailableError(
                f"the token registry cannot be read from the object store: {exc}") from exc
        with self._lock:
            self._records[token_id] = replace(record, revoked_at=None)
        return record

    def _read_all(self) -> None:
        assert self._storage is not None
        for key in self._storage.list(TOKENS_PREFIX):
            token_id = key.removeprefix(TOKENS_PREFIX)
            with self._lock:
                known = token_id in self._records
            if not known:
                self._read(token_id)

    def _refresh_if_due(self) -> None:
        """Read the revocations again once ``REFRESH_S`` passed; refuse once they could
        not be read for ``STALE_AFTER_S``."""
        if self._storage is None or self._clock() - self._refreshed_at < REFRESH_S:
            return
        with self._refresh_lock:
            if self._clock() - self._refreshed_at < REFRESH_S:
                return  # another thread just did
            try:
                self._read_revocations()
                self._refreshed_at = self._clock()
                if self._clock() - self._pruned_at >= PRUNE_EVERY_S:
                    self._prune()
            except StrataError as exc:
                stale = self._clock() - self._refreshed_at
                if stale >= STALE_AFTER_S:
                    raise RegistryUnavailableError(
                        f"the token registry could not be read from the object store for "
                        f"{stale:.0f} s ({exc}): refusing tokens until it can") from exc
                log.warning("could not read token revocations (trusting the list read "
                            "%.0f s ago): %s", stale, exc)

    def _read_revocations(self) -> None:
        assert self._storage is not None
        for key in self._storage.list(REVOKED_PREFIX):
            token_id = key.removeprefix(REVOKED_PREFIX)
            with self._lock:
                known = token_id in self._revoked
            if not known:
                revoked_at = _revoked_at(self._storage.get(key))
                with self._lock:
                    self._revoked[token_id] = revoked_at

    def _prune(self) -> None:
        """Delete the records (and revocations) of tokens expired for a day."""
        assert self._storage is not None
        self._pruned_at = self._clock()
        self._read_all()
        horizon = int(time.time()) - KEEP_EXPIRED_S
        with self._lock:
            gone = [i for i, r in self._records.items() if r.expires_at <= horizon]
        self._storage.delete_many([TOKENS_PREFIX + i for i in gone] +
                                  [REVOKED_PREFIX + i for i in gone])
        with self._lock:
            for token_id in gone:
                self._records.pop(token_id, None)
                self._revoked.pop(token_id, None)


def _revoked_at(body: bytes) -> int:
    value = json.loads(body)
    return int(value["revoked_at"]) if isinstance(value, dict) else 0


def move_local_registry(path: Path, registry: TokenRegistry) -> None:
    """Copy the records of a page server's old local registry (``auth/tokens.json``) into
    ``registry``, then rename the file ``tokens.json.moved``; again after a crash midway:
    records already there are left as they are."""
    if not path.exists():
        return
    moved = 0
    for body in json.loads(path.read_text())["tokens"]:
        record = TokenRecord.from_json(body)
        if registry.get(record.token_id) is None:
            registry.add(record)
            moved += 1
        if record.revoked_at is not None:
            registry.revoke(record.token_id, record.revoked_at)
    path.rename(path.with_name(path.name + ".moved"))
    log.info("moved %d token records from %s into the object store", moved, path)
