"""One OS identity per tenant: the user its PostgreSQL and mount daemon run as.

Tenants share a host, so their computes must not reach each other's files, sockets or
processes. Each tenant gets a system user with a group of its own, made on the first start
of one of its computes and removed with the tenant. The name is ``strata-`` plus a
readable part of the tenant's name and a hash of all of it, within Linux's 32 characters
(tenant names may be longer and mixed-case; user names may not).
"""

from __future__ import annotations

import hashlib
import pwd
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "strata-"
_USERADD_EXISTS: Final = 9
_USERDEL_ABSENT: Final = 6


class IdentityError(Exception):
    """An OS identity could not be made or removed; the message says why."""


@dataclass(frozen=True)
class Identity:
    """A tenant's OS user: its name, uid and (private) gid."""

    name: str
    uid: int
    gid: int


def user_name(tenant: str) -> str:
    """The OS user of ``tenant``: ``strata-<readable part>-<8 hex digits>``."""
    readable = re.sub(r"[^a-z0-9_-]", "-", tenant.lower())[:15]
    digest = hashlib.sha256(tenant.encode()).hexdigest()[:8]
    return f"{PREFIX}{readable}-{digest}"


def find(tenant: str) -> Identity | None:
    """The tenant's OS identity if it exists."""
    try:
        entry = pwd.getpwnam(user_name(tenant))
    except KeyError:
        return None
    return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid)


def ensure(tenant: str) -> Identity:
    """The tenant's OS identity, made now if it does not exist (needs root)."""
    for attempt in range(50):
        existing = find(tenant)
        if existing is not None:
            return existing
        result = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
             "--comment", f"Strata tenant {tenant}", user_name(tenant)],
            capture_output=True, text=True, check=False)
        if result.returncode in (0, _USERADD_EXISTS):
            continue  # made, by us or by a start of another of its computes
        if not _locked(result.stderr):
            raise IdentityError(f"cannot create the OS user of tenant {tenant!r}: "
                                f"{result.stderr.strip()}")
        time.sleep(0.05 * (attempt + 1))  # another useradd holds /etc/passwd's lock
    raise IdentityError(f"cannot create the OS user of tenant {tenant!r}: /etc/passwd "
                        "stayed locked")


def remove(tenant: str) -> None:
    """Remove the tenant's OS user and group, if any (its computes must be stopped)."""
    for attempt in range(50):
        if find(tenant) is None:
            return
        result = subprocess.run(["userdel", user_name(tenant)], capture_output=True,
                                text=True, check=False)
        if result.returncode in (0, _USERDEL_ABSENT):
            return
        if not _locked(result.stderr):
            raise IdentityError(f"cannot remove the OS user of tenant {tenant!r}: "
                                f"{result.stderr.strip()}")
        time.sleep(0.05 * (attempt + 1))
    raise IdentityError(f"cannot remove the OS user of tenant {tenant!r}: /etc/passwd "
                        "stayed locked")


def _locked(stderr: str) -> bool:
    """Whether useradd or userdel failed only because another one held the lock of
    /etc/passwd or /etc/group ("cannot lock ...; try again later")."""
    return "lock" in stderr
