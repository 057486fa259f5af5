"""The passwords of the proxy's logins, kept under ``$STRATA_HOME`` (files 0600 in
directories 0700).

- Branch credentials, what clients get (``strata connect``): a password per branch for
  the tenant's role and one for the read-only role, in ``credentials/TENANT/BRANCH`` and
  ``credentials/TENANT/BRANCH@read-only`` ('@' is in no name). The proxy checks a
  client's proof against the credential of the branch the client names, so a credential
  opens that branch only.
- The tenant's password, which no client gets (``passwords/TENANT``): the proxy logs in
  to the tenant's computes with it, as the tenant's role, and with a password derived
  from it as the read-only role; each compute's roles get their verifiers from them
  (``pg_verifier``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shutil
from pathlib import Path

from common.durable import write_durably
from common.scram import Verifier
from strata.local.home import Home


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def _ensure(path: Path, *directories: Path) -> str:
    """The password in ``path``, made now if there is none, in ``directories`` (made
    0700, outermost first)."""
    existing = _read(path)
    if existing is not None:
        return existing
    for directory in directories:
        directory.mkdir(exist_ok=True)
        os.chmod(directory, 0o700)
    password = secrets.token_urlsafe(24)
    if not write_durably(path, password.encode(), mode=0o600, replace=False):
        return _read(path) or password  # another process made it first: theirs holds
    return password


def _tenant_path(home: Home, tenant: str) -> Path:
    return home.root / "passwords" / tenant


def _credential_path(home: Home, tenant: str, branch: str, read_only: bool) -> Path:
    return home.root / "credentials" / tenant / (f"{branch}@read-only" if read_only
                                                  else branch)


def read(home: Home, tenant: str) -> str | None:
    """The tenant's password, or None if none was made yet (or the tenant is unknown)."""
    return _read(_tenant_path(home, tenant))


def ensure(home: Home, tenant: str) -> str:
    """The tenant's password, made on first use."""
    path = _tenant_path(home, tenant)
    return _ensure(path, path.parent)


def read_only_password(tenant_password: str) -> str:
    """The read-only role's password in the tenant's computes, derived from the tenant's."""
    return hmac.new(tenant_password.encode(), b"strata read-only role",
                    hashlib.sha256).hexdigest()


def read_credential(home: Home, tenant: str, branch: str, read_only: bool = False
                    ) -> str | None:
    """The branch's credential for clients (of the read-only role with ``read_only``), or
    None if none was made yet."""
    return _read(_credential_path(home, tenant, branch, read_only))


def ensure_credential(home: Home, tenant: str, branch: str, read_only: bool = False) -> str:
    """The branch's credential for clients, made on first use."""
    path = _credential_path(home, tenant, branch, read_only)
    return _ensure(path, path.parent.parent, path.parent)


def forget_branch(home: Home, tenant: str, branch: str) -> None:
    """Remove the branch's credentials (the branch was deleted)."""
    for read_only in (False, True):
        _credential_path(home, tenant, branch, read_only).unlink(missing_ok=True)


def forget(home: Home, tenant: str) -> None:
    """Remove the tenant's password and credentials (the tenant was deleted)."""
    _tenant_path(home, tenant).unlink(missing_ok=True)
    shutil.rmtree(home.root / "credentials" / tenant, ignore_errors=True)


def pg_verifier(password: str) -> str:
    """``password`` as PostgreSQL stores a SCRAM-SHA-256 password (``rolpassword``).

    The salt is derived from the password (a random 32-character secret), so a tenant's
    verifier is the same at every compute start and its role is not rewritten each time.
    """
    salt = hmac.new(password.encode(), b"strata tenant role salt", hashlib.sha256).digest()[:16]
    return Verifier.from_password(password, salt).pg_text()
