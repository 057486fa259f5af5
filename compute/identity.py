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
    _run_until_locked_out(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
         "/nonexistent", "--shell", "/usr/sbin/nologin", "--comment",
         f"Strata tenant {tenant}", user_name(tenant)],
        done={0, _USERADD_EXISTS},  # made, by us or by a start of another of its computes
        what=f"create the OS user of tenant {tenant!r}")
    made = find(tenant)
    if made is None:
        raise IdentityError(f"cannot create the OS user of tenant {tenant!r}: useradd "
                            "reported success but there is no such user")
    return made


def remove(tenant: str) -> None:
    """Remove the tenant's OS user and group, if any (its computes must be stopped)."""
    if find(tenant) is not None:
        _run_until_locked_out(["userdel", user_name(tenant)], done={0, _USERDEL_ABSENT},
                              what=f"remove the OS user of tenant {tenant!r}")


def _run_until_locked_out(command: list[str], done: set[int], what: str) -> None:
    """Run useradd or userdel until it exits with a status in ``done``, waiting a little
    longer each time another one holds the lock of /etc/passwd or /etc/group ("cannot
    lock ...; try again later"); IdentityError for any other failure."""
    for attempt in range(50):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode in done:
            return
        if "lock" not in result.stderr:
            raise IdentityError(f"cannot {what}: {result.stderr.strip()}")
        time.sleep(0.05 * (attempt + 1))
    raise IdentityError(f"cannot {what}: /etc/passwd stayed locked")
