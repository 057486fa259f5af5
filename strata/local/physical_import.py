"""Prepare a tenant's first state from a base backup of a running PostgreSQL 15 cluster:
copy it (``strata.local.base_backup``), strip its server configuration, start it once in
single-user mode to recover it and demote its roles (``strata.local.first_start``), and
say from which WAL position a compute starts it; the caller ingests the directory into
the new tenant's branch ``main`` (``strata.local.directory_ingest``).

The single-user start runs as the tenant's own OS user when the CLI runs as root (as
computes do: the data is the tenant's), never as another tenant's or as root.
Anything that makes the copy unusable raises ``Refused`` with the reason, before any
tenant exists, so the caller can copy logically instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.postgres import checkpoint_location, pg_bin_dir
from compute import identity
from compute.identity import IdentityError
from strata.local import base_backup, first_start
from strata.local.tenant_import import conninfo, program_environ


class Refused(Exception):
    """A base backup cannot make this tenant's first state; the message says why."""


@dataclass(frozen=True)
class Prepared:
    """A recovered, demoted copy ready to ingest, and the WAL position it starts from."""

    data_dir: Path
    wal_lsn: int


def prepare(source: dict[str, str], tenant: str, databases: list[str], scratch: Path,
            progress: Callable[[int, int], None]) -> Prepared:
    """Copy the cluster libpq's ``source`` names into ``scratch`` and make it tenant
    ``tenant``'s (``databases``: those whose objects the bootstrap superuser may own);
    ``progress`` gets (kB copied, kB total) of the copy. Refused with the reason."""
    try:
        first_start.cluster_sql(tenant)  # a name no tenant's role can have: before anything
        base_backup.check_source(conninfo(source))
        data_dir = scratch / "pgdata"
        base_backup.take(program_environ(source), data_dir, progress)
        base_backup.sanitise(data_dir)
        run_as = _run_as(tenant, scratch, data_dir)
        first_start.demote(data_dir, tenant, _with_template(databases), run_as)
        return Prepared(data_dir, checkpoint_lsn(data_dir, run_as))
    except (base_backup.BaseBackupRefused, first_start.FirstStartError) as exc:
        raise Refused(str(exc)) from None


def _with_template(databases: list[str]) -> list[str]:
    return ["template1", *(name for name in databases if name != "template1")]


def _run_as(tenant: str, scratch: Path, data_dir: Path) -> list[str]:
    """The command prefix that runs PostgreSQL as the tenant's OS user (root only), with
    ``data_dir`` given to that user; [] when not root."""
    if os.geteuid() != 0:
        return []
    try:
        user = identity.ensure(tenant)
    except IdentityError as exc:
        raise first_start.FirstStartError(str(exc)) from None
    os.chmod(scratch, 0o711)
    for root, dirs, files in os.walk(data_dir):
        for name in (*dirs, *files):
            os.lchown(os.path.join(root, name), user.uid, user.gid)
    shutil.chown(data_dir, user.uid, user.gid)
    os.chmod(data_dir, 0o700)
    return ["runuser", "-u", user.name, "--"]


def checkpoint_lsn(data_dir: Path, run_as: list[str]) -> int:
    """The latest checkpoint of the stopped cluster in ``data_dir``, from pg_control."""
    shown = subprocess.run([*run_as, str(pg_bin_dir() / "pg_controldata"), str(data_dir)],
                           capture_output=True, text=True, check=False)
    location = checkpoint_location(shown.stdout)
    state = re.search(r"Database cluster state:\s+(.+)", shown.stdout)
    if location is None or state is None or state.group(1).strip() != "shut down":
        raise first_start.FirstStartError(
            f"the copy did not stop cleanly: {shown.stderr.strip() or shown.stdout[-200:]}")
    return location
