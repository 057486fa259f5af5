"""The first start of a physically copied cluster: in PostgreSQL's single-user mode, which
no client can reach, so that no role of the source is a superuser by the time anyone can
log in.

``postgres --single`` runs the crash recovery the copy's ``backup_label`` asks for, then
the statements here, then stops with a shutdown checkpoint. Event triggers do not fire in
single-user mode. The statements, in one transaction:

- the cluster's bootstrap superuser (OID 10), the one role Strata keeps for itself
  (computes log in as it by peer to set up the tenant's role), is named ``postgres``;
  a source whose bootstrap superuser has another name while another role is named
  ``postgres`` is refused;
- every other role loses SUPERUSER, REPLICATION and BYPASSRLS; no role keeps a password
  (the tenant's role and the read-only role get Strata's at each compute start);
- role and database settings (``ALTER ROLE/DATABASE ... SET``, which could preload
  libraries into every session) are dropped, and subscriptions disabled;
- the tenant's role and the read-only role are set up by the same SQL every compute start
  runs (``compute.tenant_role``), the tenant's role is made a member of every imported
  role, and owns the databases the bootstrap superuser owned, templates aside;

then, in each database, what the bootstrap superuser owned outside the system schemas
(schemas, tables, views, materialized views, foreign tables, free-standing sequences,
routines, domains, enums, ranges and composite types; extension members aside) is given
to the tenant's role, as ``pg_dump --no-owner`` would have made it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

from common.names import READ_ONLY_ROLE
from common.postgres import pg_bin_dir
from compute.tenant_role import Logins, TenantRoleError, setup_sql

_SYSTEM: Final = ("ARRAY['pg_catalog'::regnamespace, 'information_schema'::regnamespace, "
                  "'pg_toast'::regnamespace]::oid[]")


class FirstStartError(Exception):
    """The single-user start failed or refused the copy; the message says why."""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def cluster_sql(tenant: str) -> list[str]:
    """The statements run once, in ``template1`` (module docstring); FirstStartError if
    ``tenant`` cannot name a tenant's role."""
    try:
        tenant_setup = setup_sql(tenant, Logins()).strip().rstrip(";")
    except TenantRoleError as exc:
        raise FirstStartError(str(exc)) from None
    role, reader = _literal(tenant), _literal(READ_ONLY_ROLE)
    return [
        "BEGIN",
        "DO $strata$ BEGIN IF EXISTS (SELECT FROM pg_authid WHERE rolname = 'postgres' "
        "AND oid <> 10) THEN RAISE EXCEPTION 'the source''s bootstrap superuser is %, and "
        "another role is named postgres', (SELECT rolname FROM pg_authid WHERE oid = 10); "
        "END IF; END $strata$",
        "UPDATE pg_authid SET rolname = 'postgres' WHERE oid = 10 AND rolname <> 'postgres'",
        "UPDATE pg_authid SET rolsuper = false, rolreplication = false, rolbypassrls = false "
        "WHERE oid <> 10 AND (rolsuper OR rolreplication OR rolbypassrls)",
        "UPDATE pg_authid SET rolpassword = NULL, rolvaliduntil = NULL "
        "WHERE rolpassword IS NOT NULL OR rolvaliduntil IS NOT NULL",
        "DELETE FROM pg_db_role_setting",
        "UPDATE pg_subscription SET subenabled = false WHERE subenabled",
        tenant_setup,
        "DO $strata$ DECLARE r record; BEGIN "
        f"FOR r IN SELECT oid, rolname FROM pg_authid WHERE oid <> 10 AND rolname !~ '^pg_' "
        f"AND rolname NOT IN ({role}, {reader}) "
        f"AND NOT pg_has_role(oid, {role}::regrole, 'MEMBER') "
        f"AND NOT pg_has_role({role}::regrole, oid, 'MEMBER') LOOP "
        f"EXECUTE format('GRANT %I TO %I', r.rolname, {role}); END LOOP; "
        "FOR r IN SELECT datname FROM pg_database WHERE datdba = 10 AND NOT datistemplate "
        f"LOOP EXECUTE format('ALTER DATABASE %I OWNER TO %I', r.datname, {role}); "
        "END LOOP; END $strata$",
        "COMMIT",
    ]


def _not_extension_member(catalog: str, alias: str) -> str:
    return (f"NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = '{catalog}'::regclass "
            f"AND d.objid = {alias}.oid AND d.deptype = 'e')")


def database_sql(tenant: str) -> list[str]:
    """The statement run in each database: the bootstrap superuser's objects outside the
    system schemas become the tenant's (module docstring)."""
    role = _literal(tenant)
    owned_sequence = ("EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
                      "AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass "
                      "AND d.deptype IN ('a', 'i'))")
    return [
        f"DO $strata$ DECLARE r record; system oid[] := {_SYSTEM}; BEGIN "
        "FOR r IN SELECT n.nspname FROM pg_namespace n WHERE n.nspowner = 10 "
        "AND n.oid <> ALL (system) AND n.nspname !~ '^pg_' "
        f"AND {_not_extension_member('pg_namespace', 'n')} LOOP "
        f"EXECUTE format('ALTER SCHEMA %I OWNER TO %I', r.nspname, {role}); END LOOP; "
        "FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c "
        "WHERE c.relowner = 10 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
        f"AND c.relnamespace <> ALL (system) AND {_not_extension_member('pg_class', 'c')} "
        f"AND NOT (c.relkind = 'S' AND {owned_sequence}) LOOP "
        "EXECUTE format('ALTER %s %s OWNER TO %I', CASE r.relkind WHEN 'v' THEN 'VIEW' "
        "WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' "
        f"WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.name, {role}); END LOOP; "
        "FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p WHERE p.proowner = 10 "
        f"AND p.pronamespace <> ALL (system) AND {_not_extension_member('pg_proc', 'p')} "
        f"LOOP EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.name, {role}); END LOOP; "
        "FOR r IN SELECT t.oid::regtype AS name, t.typtype FROM pg_type t "
        "WHERE t.typowner = 10 AND t.typnamespace <> ALL (system) "
        "AND (t.typtype IN ('d', 'e', 'r') OR (t.typtype = 'c' AND "
        "(SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')) "
        f"AND {_not_extension_member('pg_type', 't')} LOOP "
        "EXECUTE format('ALTER %s %s OWNER TO %I', CASE r.typtype WHEN 'd' THEN 'DOMAIN' "
        f"ELSE 'TYPE' END, r.name, {role}); END LOOP; END $strata$",
    ]


def run_single(data_dir: Path, database: str, statements: list[str],
               run_as: list[str]) -> None:
    """``statements`` in single-user mode on ``database`` of ``data_dir`` (as the user
    ``run_as`` switches to); FirstStartError with PostgreSQL's first error."""
    script = "".join(statement + ";\n\n" for statement in statements)
    result = subprocess.run(
        [*run_as, str(pg_bin_dir() / "postgres"), "--single", "-j", "-D", str(data_dir),
         "-c", "listen_addresses=", "-c", "shared_preload_libraries=",
         "-c", "wal_recycle=off", database],  # old WAL segments removed, not ingested
        input=script, capture_output=True, text=True, check=False)
    errors = [line.split(":  ", 1)[-1] for line in result.stderr.splitlines()
              if " ERROR:  " in line or " FATAL:  " in line or " PANIC:  " in line]
    if errors or result.returncode != 0:
        said = errors[0] if errors else result.stderr.strip()[-300:]
        raise FirstStartError(f"the single-user first start failed: {said}")


def demote(data_dir: Path, tenant: str, databases: list[str], run_as: list[str]) -> None:
    """Recover the copy in ``data_dir`` and make it a tenant's cluster (module docstring);
    ``databases`` are those to hand over objects in (template1 among them)."""
    run_single(data_dir, "template1", cluster_sql(tenant), run_as)
    for database in databases:
        run_single(data_dir, database, database_sql(tenant), run_as)
