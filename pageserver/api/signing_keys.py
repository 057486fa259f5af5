"""The keys tokens are signed with, kept in the object store so that every page server on
it signs and verifies alike (rfcs/0014).

``auth/keys/<kid>`` holds 32 random bytes, created once (``kid``: the first 16 hex digits
of the key's SHA-256); ``auth/signing-key`` names the kid new tokens are signed with,
created once by the first page server to start on the store (or to move its old local key
there). Keys are never replaced, so a token verifies on every page server of the store for
its whole life, also on one whose disk was lost.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from typing import Final

from common.errors import CorruptionError, NotFoundError
from pageserver.remote import RemoteStorage
from pageserver.remote.retry import CALL_POLICY, create_once

KEY_BYTES: Final = 32
KEYS_PREFIX: Final = "auth/keys/"
SIGNING_KEY: Final = "auth/signing-key"
LIST_EVERY_S: Final = 5.0
_KID: Final = re.compile("[0-9a-f]{16}")


def key_id(key: bytes) -> str:
    """The name of a key: stable, short, and revealing nothing usable of it."""
    return hashlib.sha256(key).hexdigest()[:16]


def _checked(key: bytes, where: str) -> bytes:
    if len(key) != KEY_BYTES:
        raise ValueError(f"{where} holds {len(key)} bytes, not a {KEY_BYTES}-byte key")
    return key


class KeyRing:
    """The key new tokens are signed with, and every key a token may name."""

    def __init__(self, signing_key: bytes, storage: RemoteStorage | None = None) -> None:
        if len(signing_key) < KEY_BYTES:
            raise ValueError(f"the signing key must have at least {KEY_BYTES} bytes")
        self.signing_key = signing_key
        self.signing_id = key_id(signing_key)
        self._storage = storage
        self._lock = threading.Lock()
        self._known = {self.signing_id: signing_key}
        self._listed_at = -LIST_EVERY_S

    @staticmethod
    def in_store(storage: RemoteStorage, moved_in: bytes | None = None) -> KeyRing:
        """The store's ring, made on first use; ``moved_in``, a key from a page server's
        state directory, is added to it (and becomes the signing key if there was none)."""
        if moved_in is not None:
            _add(storage, _checked(moved_in, "the local signing key"))
            storage.put_if_absent(SIGNING_KEY, key_id(moved_in).encode())
        try:
            chosen = storage.get(SIGNING_KEY).decode()
        except NotFoundError:
            fresh = secrets.token_bytes(KEY_BYTES)
            _add(storage, fresh)
            if storage.put_if_absent(SIGNING_KEY, key_id(fresh).encode()):
                return KeyRing(fresh, storage)
            storage.delete(KEYS_PREFIX + key_id(fresh))  # another page server chose first
            chosen = storage.get(SIGNING_KEY).decode()
        return KeyRing(_checked(storage.get(KEYS_PREFIX + chosen), KEYS_PREFIX + chosen),
                       storage)

    def key(self, kid: str) -> bytes | None:
        """The key named ``kid``, read from the store the first time; None if unknown.
        ``kid`` comes from a token not verified yet: only a well-formed one is looked up."""
        with self._lock:
            found = self._known.get(kid)
        if found is not None or self._storage is None or not _KID.fullmatch(kid):
            return found
        try:
            found = _checked(self._storage.get(KEYS_PREFIX + kid), KEYS_PREFIX + kid)
        except (NotFoundError, ValueError):
            return None  # a bad kid is a bad token, not a damaged store
        with self._lock:
            self._known[kid] = found
        return found

    def every_key(self) -> list[bytes]:
        """Every key, for tokens that name none (issued before keys had names); the store
        is listed again at most every ``LIST_EVERY_S``."""
        if self._storage is not None and time.monotonic() - self._listed_at >= LIST_EVERY_S:
            for name in self._storage.list(KEYS_PREFIX):
                self.key(name.removeprefix(KEYS_PREFIX))
            self._listed_at = time.monotonic()
        with self._lock:
            return [self.signing_key, *(k for i, k in self._known.items()
                                        if i != self.signing_id)]


def _add(storage: RemoteStorage, key: bytes) -> None:
    """Create the key's object (again: no change)."""
    if not create_once(storage, KEYS_PREFIX + key_id(key), key, CALL_POLICY):
        raise CorruptionError(f"{KEYS_PREFIX}{key_id(key)} holds another key than its name says")
