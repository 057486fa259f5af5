"""Copy a running PostgreSQL database into a tenant's branch ``main``: ``pg_dump`` of the
source piped into ``pg_restore`` through the proxy as the tenant's own role.

Logical, not physical: a base backup would bring the source's roles, superusers among
them, into a cluster whose tenants must never be superusers, and needs the same major
version; a dump restored as the tenant's role owns every object as that role and works
from any version ``pg_dump`` 15 reads. The source URI's parts go to the programs in
their environment (libpq's ``PG*`` variables), never on a command line.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

from psycopg.conninfo import conninfo_to_dict

from common.postgres import pg_bin_dir
from strata.local.errors import LocalError

_ENVIRONMENT = {"host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT",
                "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE",
                "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
                "options": "PGOPTIONS", "connect_timeout": "PGCONNECT_TIMEOUT",
                "application_name": "PGAPPNAME"}
_CLEAR = ("PGSERVICE", "PGSERVICEFILE", "PGPASSFILE", *_ENVIRONMENT.values())


def source_environ(uri: str) -> dict[str, str]:
    """libpq's environment variables for ``uri``; LocalError for what cannot be one."""
    try:
        parts = conninfo_to_dict(uri)
    except Exception as exc:  # psycopg's ProgrammingError: not a connection string
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LocalError(f"--from is not a PostgreSQL URI: {why}") from None
    unknown = sorted(set(parts) - set(_ENVIRONMENT))
    if unknown:
        raise LocalError(f"--from: unsupported connection parameter {', '.join(unknown)}")
    return {_ENVIRONMENT[key]: str(value) for key, value in parts.items()}


def restore(source: dict[str, str], target: dict[str, str],
            progress: Callable[[str], None]) -> list[str]:
    """Dump the database ``source`` names into the one ``target`` names (libpq
    environments); the tables whose rows were loaded. ``progress`` gets each table."""
    base = {k: v for k, v in os.environ.items() if k not in _CLEAR}
    bin_dir = pg_bin_dir()
    dump = subprocess.Popen(
        [str(bin_dir / "pg_dump"), "--format=custom", "--no-owner", "--no-privileges"],
        env={**base, **source}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert dump.stdout is not None and dump.stderr is not None
    load = subprocess.Popen(
        [str(bin_dir / "pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
         "--single-transaction", "--verbose", "--dbname", target["PGDATABASE"]],
        env={**base, **target}, stdin=dump.stdout, stderr=subprocess.PIPE, text=True)
    dump.stdout.close()  # pg_restore holds it; pg_dump sees a broken pipe if it quits
    assert load.stderr is not None
    tables, lines = [], []
    for line in load.stderr:
        lines.append(line.rstrip())
        if "processing data for table" in line:
            table = line.rsplit("table", 1)[1].strip().strip('"')
            tables.append(table)
            progress(table)
    load.wait()
    dump_errors = dump.stderr.read().decode(errors="replace").strip()
    dump.wait()
    if dump.returncode != 0:
        raise LocalError(f"pg_dump of the source failed: "
                         f"{dump_errors.splitlines()[-1] if dump_errors else dump.returncode}")
    if load.returncode != 0:
        errors = [line for line in lines if "error" in line.lower()] or lines[-1:]
        raise LocalError("pg_restore into the tenant failed (nothing was kept: one "
                         f"transaction): {errors[0] if errors else load.returncode}")
    return tables
