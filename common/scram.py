"""The SCRAM-SHA-256 verifier (RFC 5802 / 7677): what checks a password without knowing it.

Shared by the proxy, which checks clients' proofs against one, and the local
orchestration, which gives each compute's roles theirs in PostgreSQL's own text form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

ITERATIONS: Final = 4096


def scram_hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


@dataclass(frozen=True)
class Verifier:
    """Salt, iterations, StoredKey and ServerKey of a password."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(cls, password: str, salt: bytes | None = None,
                      iterations: int = ITERATIONS) -> Verifier:
        salt = salt or secrets.token_bytes(16)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        return cls(salt, iterations, hashlib.sha256(scram_hmac(salted, b"Client Key")).digest(),
                   scram_hmac(salted, b"Server Key"))

    def pg_text(self) -> str:
        """As PostgreSQL stores it in ``rolpassword``."""
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        return (f"SCRAM-SHA-256${self.iterations}:{b64(self.salt)}$"
                f"{b64(self.stored_key)}:{b64(self.server_key)}")
