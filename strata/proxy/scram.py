"""SCRAM-SHA-256 (RFC 5802 / 7677) as a PostgreSQL server speaks it, for the proxy.

The proxy keeps, per tenant, only a verifier (salt, iterations, StoredKey, ServerKey), the
same thing PostgreSQL keeps in pg_authid; the password itself is shown once by
``strata connect`` and kept in a 0600 file for it. Channel binding is not offered (no TLS).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

MECHANISM: Final = "SCRAM-SHA-256"
ITERATIONS: Final = 4096


class ScramError(Exception):
    """The client's SCRAM messages are malformed or its proof is wrong."""


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


@dataclass(frozen=True)
class Verifier:
    """What the server needs to check a password without knowing it."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(cls, password: str, salt: bytes | None = None,
                      iterations: int = ITERATIONS) -> Verifier:
        salt = salt or secrets.token_bytes(16)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        return cls(salt, iterations, hashlib.sha256(_hmac(salted, b"Client Key")).digest(),
                   _hmac(salted, b"Server Key"))


def _attributes(message: str) -> dict[str, str]:
    pairs = {}
    for part in message.split(","):
        name, sep, value = part.partition("=")
        if not sep or len(name) != 1:
            raise ScramError(f"malformed SCRAM attribute {part!r}")
        pairs[name] = value
    return pairs


class ScramExchange:
    """One server side of a SCRAM-SHA-256 exchange: first and final client messages in,
    server messages out."""

    def __init__(self, verifier: Verifier) -> None:
        self._verifier = verifier
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    def server_first(self, client_first: str) -> str:
        gs2, sep, bare = client_first.partition(",,")  # "n,," : no channel binding, no authzid
        if not sep or gs2 not in ("n", "y"):
            raise ScramError("channel binding is not supported; use sslmode=disable")
        client_nonce = _attributes(bare).get("r")
        if not client_nonce:
            raise ScramError("the client sent no nonce")
        self._client_first_bare = bare
        self._nonce = client_nonce + base64.b64encode(secrets.token_bytes(18)).decode()
        salt = base64.b64encode(self._verifier.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={self._verifier.iterations}"
        return self._server_first

    def server_final(self, client_final: str) -> str:
        """The server's signature if the client's proof holds; else ``ScramError``."""
        without_proof, sep, proof_part = client_final.rpartition(",p=")
        if not sep:
            raise ScramError("the client sent no proof")
        attributes = _attributes(without_proof)
        if attributes.get("r") != self._nonce:
            raise ScramError("the nonce does not match")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}"
        signature = _hmac(self._verifier.stored_key, auth_message.encode())
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError as exc:
            raise ScramError("the proof is not base64") from exc
        if len(proof) != len(signature):
            raise ScramError("the proof has the wrong length")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(),
                                   self._verifier.stored_key):
            raise ScramError("password authentication failed")
        server_signature = _hmac(self._verifier.server_key, auth_message.encode())
        return "v=" + base64.b64encode(server_signature).decode()
