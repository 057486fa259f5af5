"""What a tenant's session tries against the host and other tenants: every statement must
be refused with insufficient_privilege (42501). ``{me}`` is the session's role and
``{other_workdir}`` another tenant's compute directory; a table ``loot (line text)``
exists."""

from __future__ import annotations

ATTACKS = [
    "SELECT pg_read_binary_file('/etc/passwd')",
    "SELECT pg_ls_dir('{other_workdir}')",
    "SELECT lo_import('/etc/passwd')",
    "COPY (SELECT 1) TO PROGRAM 'id'",
    "COPY loot FROM PROGRAM 'cat /etc/passwd'",
    "COPY loot FROM '/etc/passwd'",
    "CREATE EXTENSION dblink",
    "CREATE EXTENSION postgres_fdw",
    "CREATE EXTENSION file_fdw",
    "CREATE FUNCTION evil() RETURNS int LANGUAGE c AS '/lib/x86_64-linux-gnu/libc.so.6', 'getpid'",
    "CREATE FUNCTION evil() RETURNS int LANGUAGE internal AS 'int4in'",
    "ALTER SYSTEM SET work_mem = '1MB'",
    "SET ROLE postgres",
    "SET SESSION AUTHORIZATION postgres",
    "ALTER ROLE {me} SUPERUSER",
    "CREATE ROLE boss SUPERUSER",
    "GRANT pg_execute_server_program TO {me}",
    "GRANT pg_read_server_files TO {me}",
    "CREATE ROLE sneaky IN ROLE pg_write_server_files",
]
