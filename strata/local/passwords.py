"""One PostgreSQL password per tenant, for clients of the proxy.

Kept in ``$STRATA_HOME/passwords/TENANT`` (mode 0600, in a 0700 directory): ``strata
connect`` creates and prints it, the proxy derives its SCRAM verifier from it, and each
compute of the tenant gets the tenant role's verifier from it (``pg_verifier``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from common.durable import write_durably
from strata.local.home import Home


def _path(home: Home, tenant: str) -> Path:
    return home.root / "passwords" / tenant


def read(home: Home, tenant: str) -> str | None:
    """The tenant's password, or None if none was made yet (or the tenant is unknown)."""
    try:
        return _path(home, tenant).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def ensure(home: Home, tenant: str) -> str:
    """The tenant's password, made on first use."""
    existing = read(home, tenant)
    if existing is not None:
        return existing
    directory = _path(home, tenant).parent
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    password = secrets.token_urlsafe(24)
    write_durably(_path(home, tenant), password.encode(), mode=0o600)
    return password


def forget(home: Home, tenant: str) -> None:
    """Remove the tenant's password (the tenant was deleted)."""
    _path(home, tenant).unlink(missing_ok=True)


def pg_verifier(password: str, iterations: int = 4096) -> str:
    """``password`` as PostgreSQL stores a SCRAM-SHA-256 password (``rolpassword``).

    The salt is derived from the password (a random 32-character secret), so a tenant's
    verifier is the same at every compute start and its role is not rewritten each time.
    """
    salt = hmac.new(password.encode(), b"strata tenant role salt", hashlib.sha256).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return (f"SCRAM-SHA-256${iterations}:{b64(salt)}$"
            f"{b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}")
