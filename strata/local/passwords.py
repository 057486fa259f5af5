"""One PostgreSQL password per tenant, for clients of the proxy.

Kept in ``$STRATA_HOME/passwords/TENANT`` (mode 0600, in a 0700 directory): ``strata
connect`` creates and prints it, the proxy derives its SCRAM verifier from it.
"""

from __future__ import annotations

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
