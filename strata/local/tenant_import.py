"""Copy a running PostgreSQL cluster into a tenant's branch ``main`` logically: its roles
(never as superusers), then each of its databases by ``pg_dump`` and ``pg_restore``
through the proxy as the tenant's own role.

This is the fallback of ``strata tenant import`` when a base backup cannot be used
(``strata.local.physical_import``: another major version, a login without REPLICATION,
``pg_hba.conf`` refusing replication...), and what ``--method dump`` asks for. A dump
restored as the tenant's role owns every object as that role and works from any version
``pg_dump`` 15 reads. The source's roles are read from ``pg_roles``
(no passwords: that needs a superuser's ``pg_authid``) and made again with their login,
inherit, createdb, createrole and connection-limit settings and their memberships, but
never SUPERUSER, REPLICATION or BYPASSRLS; names the tenant's cluster keeps for itself
(``postgres``, the tenant's role, the read-only role, ``pg_*``) are not made. The tenant's
role is made a member of each, so the dumps' privileges (GRANTs, and default privileges
of imported roles) restore; default privileges of a kept name are left out, as only a
superuser could set them. Every database the source lets one connect to, templates
aside, lands under its own name (``postgres`` into ``postgres``), each restored in one
transaction from a dump in a temporary directory. The source URI's parts go to the
programs in their environment (libpq's ``PG*`` variables), never on a command line.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from common.errors import first_line
from common.names import READ_ONLY_ROLE
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
        raise LocalError(f"--from is not a PostgreSQL URI: {first_line(exc)}") from None
    unknown = sorted(set(parts) - set(_ENVIRONMENT))
    if unknown:
        raise LocalError(f"--from: unsupported connection parameter {', '.join(unknown)}")
    return {_ENVIRONMENT[key]: str(value) for key, value in parts.items()}


@dataclass(frozen=True)
class Role:
    """A source role as the tenant's cluster gets it (never a superuser)."""

    name: str
    login: bool
    inherit: bool
    createdb: bool
    createrole: bool
    connection_limit: int


@dataclass(frozen=True)
class Cluster:
    """What of a source cluster is imported: its databases, roles and memberships
    (granted role, member)."""

    databases: list[str]
    roles: list[Role]
    memberships: list[tuple[str, str]]


def read_cluster(source: dict[str, str]) -> Cluster:
    """The databases one may connect to (templates aside), roles and memberships of the
    cluster ``source`` (a libpq environment) reaches; LocalError if it cannot be read."""
    try:
        with psycopg.connect(conninfo(source), autocommit=True) as conn:
            databases = [row[0] for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
                "ORDER BY datname")]
            roles = [Role(*row) for row in conn.execute(
                "SELECT rolname, rolcanlogin, rolinherit, rolcreatedb, rolcreaterole, "
                "rolconnlimit FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY rolname")]
            memberships = [(row[0], row[1]) for row in conn.execute(
                "SELECT r.rolname, m.rolname FROM pg_auth_members a "
                "JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
                "ORDER BY 1, 2")]
    except psycopg.Error as exc:
        raise LocalError(f"cannot read the source cluster: {first_line(exc)}") from None
    return Cluster(databases, roles, memberships)


def conninfo(environ: dict[str, str]) -> str:
    """A libpq connection string from its environment variables."""
    names = {variable: key for key, variable in _ENVIRONMENT.items()}
    return make_conninfo(**{names[variable]: value for variable, value in environ.items()})


def program_environ(libpq: dict[str, str]) -> dict[str, str]:
    """The environment of a PostgreSQL program reaching what ``libpq`` (libpq's variables)
    names: this process's, without any other libpq setting (a service, a password file)."""
    return {**{k: v for k, v in os.environ.items() if k not in _CLEAR}, **libpq}


def imported_roles(cluster: Cluster, owner: str) -> list[Role]:
    """The source's roles a tenant whose role is ``owner`` gets: all but the names its
    cluster keeps (``postgres``, ``owner``, the read-only role, ``pg_*``)."""
    kept = {"postgres", owner, READ_ONLY_ROLE}
    return [role for role in cluster.roles
            if role.name not in kept and not role.name.startswith("pg_")]


def list_tables(source: dict[str, str]) -> list[str]:
    """``schema.table`` of every ordinary table of the database ``source`` names, system
    schemas aside, sorted; LocalError if it cannot be read."""
    try:
        with psycopg.connect(conninfo(source), autocommit=True) as conn:
            return [row[0] for row in conn.execute(
                "SELECT schemaname || '.' || tablename FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")]
    except psycopg.Error as exc:
        raise LocalError(f"cannot read the source cluster: {first_line(exc)}") from None


def make_roles(cluster: Cluster, target: dict[str, str]) -> list[str]:
    """Make the source's roles in the cluster ``target`` names (as the tenant's role, one
    transaction), none a superuser; the names made."""
    owner = target["PGUSER"]
    made = imported_roles(cluster, owner)
    names = {role.name for role in made}
    with psycopg.connect(conninfo(target)) as conn:
        for role in made:
            conn.execute(sql.SQL(
                "CREATE ROLE {} NOSUPERUSER NOREPLICATION NOBYPASSRLS {} {} {} {} "
                "CONNECTION LIMIT {}").format(
                sql.Identifier(role.name),
                sql.SQL("LOGIN" if role.login else "NOLOGIN"),
                sql.SQL("INHERIT" if role.inherit else "NOINHERIT"),
                sql.SQL("CREATEDB" if role.createdb else "NOCREATEDB"),
                sql.SQL("CREATEROLE" if role.createrole else "NOCREATEROLE"),
                sql.Literal(role.connection_limit)))
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role.name),
                                                          sql.Identifier(owner)))
        for granted, member in cluster.memberships:
            if granted in names and member in names:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(granted),
                                                              sql.Identifier(member)))
    return [role.name for role in made]


def create_database(target: dict[str, str], name: str) -> None:
    """``CREATE DATABASE name`` in the cluster ``target`` names, owned by its user."""
    with psycopg.connect(conninfo(target), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def restore(source: dict[str, str], target: dict[str, str],
            progress: Callable[[str], None]) -> list[str]:
    """Dump the database ``source`` names into the one ``target`` names (libpq
    environments), privileges included; the tables whose rows were loaded. ``progress``
    gets each table."""
    base = program_environ({})
    bin_dir = pg_bin_dir()
    kept = {"postgres", target["PGUSER"], READ_ONLY_ROLE}
    with tempfile.TemporaryDirectory(prefix="strata-import-") as scratch:
        dump_file, listing = Path(scratch) / "dump", Path(scratch) / "list"
        dumped = subprocess.run(
            [str(bin_dir / "pg_dump"), "--format=custom", "--no-owner", "--file",
             str(dump_file)], env={**base, **source}, capture_output=True, text=True)
        if dumped.returncode != 0:
            said = dumped.stderr.strip()
            raise LocalError(f"pg_dump of the source failed: "
                             f"{said.splitlines()[-1] if said else dumped.returncode}")
        entries = subprocess.run([str(bin_dir / "pg_restore"), "--list", str(dump_file)],
                                 env=base, capture_output=True, text=True, check=True)
        listing.write_text("".join(
            line + "\n" for line in entries.stdout.splitlines()
            if not (" DEFAULT ACL " in line and line.split()[-1] in kept)))
        load = subprocess.Popen(
            [str(bin_dir / "pg_restore"), "--no-owner", "--exit-on-error",
             "--single-transaction", "--verbose", "--use-list", str(listing),
             "--dbname", target["PGDATABASE"], str(dump_file)],
            env={**base, **target}, stderr=subprocess.PIPE, text=True)
        assert load.stderr is not None
        tables: list[str] = []
        lines: list[str] = []
        for line in load.stderr:
            lines.append(line.rstrip())
            if "processing data for table" in line:
                table = line.rsplit("table", 1)[1].strip().strip('"')
                tables.append(table)
                progress(table)
        load.wait()
    if load.returncode != 0:
        errors = [line for line in lines if "error" in line.lower()] or lines[-1:]
        raise LocalError("pg_restore into the tenant failed (nothing was kept: one "
                         f"transaction): {errors[0] if errors else load.returncode}")
    return tables
