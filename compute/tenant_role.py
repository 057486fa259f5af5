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

Read-only logins use a second role, ``strata_readonly``: a member of ``pg_read_all_data``
and of nothing else, owning nothing, its transactions read-only by default; a tenant may
grant it more on its own tables, never membership in another role (that is revoked here).

Applied on every start of a compute, as ``postgres`` over the unix socket, changing only
what differs, so that branches made before a change (and a tenant that dropped or altered
its roles) are brought back in line.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from common.names import READ_ONLY_ROLE, is_reserved_tenant_name, is_valid_name
from common.postgres import pg_bin_dir

SERVER_FILE_ROLES: Final = ("pg_read_server_files", "pg_write_server_files",
                            "pg_execute_server_program")
_BASE64: Final = "[A-Za-z0-9+/=]+"
_VERIFIER: Final = re.compile(rf"SCRAM-SHA-256\$\d+:{_BASE64}\${_BASE64}:{_BASE64}")


class TenantRoleError(Exception):
    """The tenant role could not be set up; the message says why."""


@dataclass(frozen=True)
class Logins:
    """SCRAM-SHA-256 verifiers of the tenant's role and of the read-only role ("" for
    none: that role cannot log in with a password)."""

    owner: str = ""
    read_only: str = ""


def _password(verifier: str) -> str:
    """``verifier`` as an SQL literal, once checked to hold nothing but a verifier."""
    if verifier and not _VERIFIER.fullmatch(verifier):
        raise TenantRoleError("a role's password is not a SCRAM-SHA-256 verifier")
    return f"'{verifier}'" if verifier else "NULL"


def setup_sql(tenant: str, logins: Logins) -> str:
    """The statements that make the cluster's roles what this module says (every value
    is checked before it is placed in the SQL)."""
    if not is_valid_name(tenant) or is_reserved_tenant_name(tenant):
        raise TenantRoleError(f"{tenant!r} cannot name a tenant's role")
    role = f'"{tenant}"'
    literal = f"'{tenant}'"
    password = _password(logins.owner)
    reader = f"'{READ_ONLY_ROLE}'"
    reader_password = _password(logins.read_only)
    server_file_roles = ", ".join(f"'{name}'" for name in SERVER_FILE_ROLES)
    return f"""
DO $strata$
DECLARE
    granted record;
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
    IF NOT EXISTS (SELECT FROM pg_authid WHERE rolname = {reader}) THEN
        CREATE ROLE {READ_ONLY_ROLE} LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_authid WHERE rolname = {reader} AND rolcanlogin
                   AND NOT rolcreatedb AND NOT rolcreaterole AND NOT rolsuper
                   AND NOT rolreplication AND NOT rolbypassrls
                   AND rolpassword IS NOT DISTINCT FROM {reader_password}) THEN
        ALTER ROLE {READ_ONLY_ROLE} LOGIN NOCREATEDB NOCREATEROLE NOSUPERUSER NOREPLICATION
            NOBYPASSRLS PASSWORD {reader_password};
    END IF;
    IF NOT EXISTS (SELECT FROM pg_db_role_setting WHERE setdatabase = 0
                   AND setrole = {reader}::regrole
                   AND 'default_transaction_read_only=on' = ANY (setconfig)) THEN
        ALTER ROLE {READ_ONLY_ROLE} SET default_transaction_read_only = on;
    END IF;
    FOR granted IN SELECT roleid::regrole AS name FROM pg_auth_members
                    WHERE member = {reader}::regrole
                      AND roleid <> 'pg_read_all_data'::regrole LOOP
        EXECUTE format('REVOKE %s FROM {READ_ONLY_ROLE}', granted.name);
    END LOOP;
    IF NOT pg_has_role({reader}, 'pg_read_all_data', 'MEMBER') THEN
        GRANT pg_read_all_data TO {READ_ONLY_ROLE};
    END IF;
END
$strata$;
"""


def apply(socket_dir: Path, port: int, tenant: str, logins: Logins) -> None:
    """Run ``setup_sql`` on the compute listening in ``socket_dir`` (as root: peer login as
    ``postgres``, to ``template1``, which the tenant cannot drop). The SQL goes on stdin,
    so the verifier is on no command line."""
    result = subprocess.run(
        [str(pg_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
         str(socket_dir), "-p", str(port), "-U", "postgres", "-d", "template1", "-f", "-"],
        input=setup_sql(tenant, logins), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise TenantRoleError(f"cannot set up the role of tenant {tenant!r}: "
                              f"{result.stderr.strip()[-500:]}")
