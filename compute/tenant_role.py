"""The tenant's role in its cluster: a database owner, never a superuser.

Clients of a branch log in as a role named like the tenant. It owns database
``postgres``, may create databases and roles, and may create the extensions PostgreSQL
marks trusted (pgcrypto, pg_trgm, hstore, citext, uuid-ossp, btree_gin, btree_gist,
...); it cannot read or write server files, run programs, load C code or untrusted
languages, change server settings or become ``postgres``, which is kept for Strata.

PostgreSQL 15 lets any CREATEROLE role grant membership in every non-superuser role,
including ``pg_read_server_files``, ``pg_write_server_files`` and
``pg_execute_server_program`` (16 closed that). Those three are therefore marked
superuser in the catalog: no one can log in as them, members do not inherit the
attribute, and only a superuser may grant a superuser role, so a tenant cannot hand them
to itself.

Applied on every start of a compute, as ``postgres`` over the unix socket, changing only
what differs, so that branches made before a change (and a tenant that dropped or altered
its role) are brought back in line.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Final

from common.names import is_reserved_tenant_name, is_valid_name
from common.postgres import pg_bin_dir

SERVER_FILE_ROLES: Final = ("pg_read_server_files", "pg_write_server_files",
                            "pg_execute_server_program")
_BASE64: Final = "[A-Za-z0-9+/=]+"
_VERIFIER: Final = re.compile(rf"SCRAM-SHA-256\$\d+:{_BASE64}\${_BASE64}:{_BASE64}")


class TenantRoleError(Exception):
    """The tenant role could not be set up; the message says why."""


def setup_sql(tenant: str, verifier: str) -> str:
    """The statements that make the cluster's roles what this module says.

    ``verifier`` is the role's SCRAM-SHA-256 verifier ("" for none: no password login).
    Both values are checked before they are placed in the SQL.
    """
    if not is_valid_name(tenant) or is_reserved_tenant_name(tenant):
        raise TenantRoleError(f"{tenant!r} cannot name a tenant's role")
    if verifier and not _VERIFIER.fullmatch(verifier):
        raise TenantRoleError("the tenant role's password is not a SCRAM-SHA-256 verifier")
    role = f'"{tenant}"'
    literal = f"'{tenant}'"
    password = f"'{verifier}'" if verifier else "NULL"
    server_file_roles = ", ".join(f"'{name}'" for name in SERVER_FILE_ROLES)
    return f"""
DO $strata$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_authid WHERE rolname = {literal}) THEN
        CREATE ROLE {role} LOGIN CREATEDB CREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_authid WHERE rolname = {literal} AND rolcanlogin
                   AND rolcreatedb AND rolcreaterole AND NOT rolsuper AND NOT rolreplication
                   AND NOT rolbypassrls AND rolpassword IS NOT DISTINCT FROM {password}) THEN
        ALTER ROLE {role} LOGIN CREATEDB CREATEROLE NOSUPERUSER NOREPLICATION NOBYPASSRLS
            PASSWORD {password};
    END IF;
    IF (SELECT datdba FROM pg_database WHERE datname = 'postgres') <> {literal}::regrole THEN
        ALTER DATABASE postgres OWNER TO {role};  -- no row (the tenant dropped it): NULL
    END IF;
    UPDATE pg_authid SET rolsuper = true
     WHERE rolname IN ({server_file_roles}) AND NOT rolsuper;
END
$strata$;
"""


def apply(socket_dir: Path, port: int, tenant: str, verifier: str) -> None:
    """Run ``setup_sql`` on the compute listening in ``socket_dir`` (as root: peer login as
    ``postgres``, to ``template1``, which the tenant cannot drop). The SQL goes on stdin,
    so the verifier is on no command line."""
    result = subprocess.run(
        [str(pg_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
         str(socket_dir), "-p", str(port), "-U", "postgres", "-d", "template1", "-f", "-"],
        input=setup_sql(tenant, verifier), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise TenantRoleError(f"cannot set up the role of tenant {tenant!r}: "
                              f"{result.stderr.strip()[-500:]}")
