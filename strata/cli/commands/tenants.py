"""``strata tenant``: create (initdb + import on the server), list, attach, detach and delete
tenants."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from common.durability import LOCAL, MODES, STORE
from common.durations import parse_duration, parse_duration_s
from proto import strata_pb2 as pb
from strata.cli.confirm import confirm
from strata.cli.errors import CliError, ExitCode
from strata.cli.params import DURATION, HISTORY, SIZE
from strata.cli.progress import working
from strata.cli.render import (
    emit_json,
    emit_text,
    print_fields,
    print_table,
    storage_history_dict,
    tenant_dict,
)
from strata.cli.session import Session, api_command
from strata.cli.units import human_duration, human_size, local_time
from strata.local import computes

if TYPE_CHECKING:
    from strata.local.physical_import import Prepared
    from strata.local.tenant_import import Cluster

IMPORT_METHODS = ("auto", "base-backup", "dump")


@click.group()
def tenant() -> None:
    """Create, list, attach, detach and delete tenants.

    A tenant is one PostgreSQL cluster with many branches.
    """


DURABILITY_HELP = ("When commits are acknowledged: 'store' (default), once in the object "
                   "store; 'local', once fsynced on the page server's disk, the store at "
                   "most --max-lag behind (what losing that disk can lose).")
MAX_LAG_HELP = "With --durability local: how far the object store may lag (default 5s)."
HISTORY_HELP = ("How far back the history of its branches without a window of their own "
                "stays readable, e.g. 1h or 7d; forks keep at most the page server's fork "
                "default (1h). 'default': the page server's (24h).")


def _durability(mode: str | None, max_lag: str | None,
                current: pb.Durability | None = None) -> pb.Durability:
    """The setting the options ask for, on top of ``current``; the server checks ranges."""
    chosen = mode or (current.mode if current is not None else "") or STORE
    if max_lag is not None and chosen != LOCAL:
        raise CliError("--max-lag applies to --durability local only", ExitCode.USAGE)
    lag = parse_duration(max_lag) if max_lag is not None else (
        current.max_lag_s if current is not None and mode in (None, LOCAL) else 0.0)
    return pb.Durability(mode=chosen, max_lag_s=lag)


def durability_dict(durability: pb.Durability) -> dict[str, object]:
    return {"durability": durability.mode,
            "max_lag_s": durability.max_lag_s if durability.mode == LOCAL else None,
            "rpo": durability.description}


def tenant_usage(session: Session, name: str, response: pb.GetTenantResponse
                 ) -> dict[str, Any]:
    """Tenant ``name``'s usage against its quotas, computes counted on this machine."""
    quotas = response.quotas
    return {
        "tenant": name, "generation": response.tenant.generation,
        "branches": response.tenant.branches, "max_branches": quotas.max_branches or None,
        "computes_running": computes.running_count(session.home, name),
        "compute_cache_disk_bytes": computes.cache_disk_bytes(session.home, name),
        "max_computes": quotas.max_computes or None,
        "max_ttl_s": quotas.max_ttl_s or None, "owned_bytes": response.owned_bytes,
        "logical_bytes": response.logical_bytes, "stored_bytes": response.stored_bytes,
        "max_storage": quotas.max_storage or None, **durability_dict(response.durability),
        "history_bytes": response.history_bytes, "reclaim_bytes": response.reclaim_bytes,
        **_history_dict(response),
    }


@tenant.command("create")
@click.argument("name")
@click.option("--empty", is_flag=True, help="Skip initdb: an empty main branch.")
@click.option("--durability", type=click.Choice(MODES), help=DURABILITY_HELP)
@click.option("--max-lag", type=DURATION, help=MAX_LAG_HELP)
@click.option("--history", type=HISTORY, help=HISTORY_HELP)
@api_command
def create(session: Session, name: str, empty: bool, durability: str | None,
           max_lag: str | None, history: int | None) -> None:
    """Create tenant NAME.

    Its branch main holds a fresh initdb cluster, unless --empty.
    """
    setting = _durability(durability, max_lag)
    started = time.monotonic()
    what = f"creating tenant {name}" + ("" if empty else " (initdb + import)")
    with session.client() as client, working(what, session.interactive):
        response = client.create_tenant(name, empty=empty, durability=setting,
                                        history_s=history or 0)
    if session.json:
        emit_json({"tenant": tenant_dict(response.tenant), "main_lsn": response.main_lsn})
        return
    emit_text(f"created tenant {name!r}: branch main at LSN {response.main_lsn} "
              f"({time.monotonic() - started:.1f} s)")


@tenant.command("import")
@click.argument("name")
@click.option("--from", "source", required=True, metavar="URI",
              help="The database to copy: postgresql://USER:PASSWORD@HOST:PORT/DB?...")
@click.option("--method", type=click.Choice(IMPORT_METHODS), default="auto",
              show_default=True,
              help="base-backup: only pg_basebackup; dump: only pg_dump; auto: a base "
                   "backup where it can be used, else pg_dump.")
@api_command
def import_(session: Session, name: str, source: str, method: str) -> None:
    """Create tenant NAME with a copy of a running PostgreSQL cluster as branch main.

    Every database of the source (templates aside) lands under its own name; the URI
    says where the cluster is (its database is only the one first connected to).

    From a PostgreSQL 15 server whose login may replicate, the copy is a base backup
    (pg_basebackup), started once in single-user mode before anyone can log in: every
    role but Strata's own postgres loses SUPERUSER, REPLICATION and BYPASSRLS, no role
    keeps a password, and what the source's bootstrap superuser owned becomes the
    tenant's role's. Otherwise (another version, no REPLICATION, pg_hba refusing
    replication...) each database is dumped with pg_dump and restored through the proxy
    as the tenant's role, in one transaction, its roles made again without superuser or
    password; the line on stderr says which path was taken and why. The URI's password
    goes to the programs in their environment only. A failed import deletes the tenant.
    """
    import dataclasses
    import sys
    import tempfile
    from pathlib import Path

    from strata.local import tenant_import
    from strata.local.physical_import import Refused, prepare

    def say(line: str) -> None:
        if not session.json:
            print(line, file=sys.stderr, flush=True)

    _refuse_taken_name(session, name)  # before anything is copied
    from_env = tenant_import.source_environ(source)  # a bad URI fails before the tenant
    cluster = tenant_import.read_cluster(from_env)  # so does a source that cannot be read
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="strata-import-") as scratch:
        copy: Prepared | None = None
        why_not = ""
        if method != "dump":
            say("copying the source with pg_basebackup")
            try:
                copy = prepare(from_env, name, cluster.databases, Path(scratch),
                               lambda done, total: say(f"  base backup: {done}/{total} kB"))
            except Refused as exc:
                if method == "base-backup":
                    computes.forget_tenant(session.home, name)  # its OS user, if made
                    raise CliError(f"a base backup cannot be used: {exc}") from None
                why_not = str(exc)
                say(f"not by base backup ({why_not}): copying with pg_dump")
        with session.client() as client, working(f"creating tenant {name}",
                                                  session.interactive):
            client.create_tenant(name, empty=copy is not None)
        try:
            if copy is not None:
                databases = _ingest_copy(session, name, copy, from_env, cluster.databases, say)
                roles = [role.name for role in tenant_import.imported_roles(cluster, name)]
            else:
                databases, roles = _restore_dumps(dataclasses.replace(session, tenant=name),
                                                  cluster, from_env, say)
        except BaseException:
            computes.stop_tenant(session.home, name)  # a failed import leaves no tenant
            with session.client() as client:
                client.delete_tenant(name)
            computes.forget_tenant(session.home, name)
            raise
    done_by = "base backup" if copy is not None else "dump"
    if session.json:
        emit_json({"tenant": name, "branch": "main", "method": done_by,
                   "fallback_reason": why_not or None, "databases": databases,
                   "roles": roles, "seconds": round(time.monotonic() - started, 1)})
        return
    tables = sum(len(found) for found in databases.values())
    emit_text(f"imported {len(databases)} databases ({tables} tables) and {len(roles)} "
              f"roles into tenant {name!r}, branch main, by {done_by} "
              f"({time.monotonic() - started:.1f} s)")


def _refuse_taken_name(session: Session, name: str) -> None:
    """Fail at once if tenant NAME exists: an import would copy the whole source first."""
    import grpc

    from common.client import ClientError

    with session.client() as client:
        try:
            client.get_tenant(name)
        except ClientError as exc:
            if exc.code is not grpc.StatusCode.NOT_FOUND:
                raise
            return
    raise CliError(f"tenant {name!r} already exists; import into a new name")


def _ingest_copy(session: Session, name: str, copy: Prepared, from_env: dict[str, str],
                 databases: list[str], say: Callable[[str], None]) -> dict[str, list[str]]:
    """Put a prepared base backup into the new tenant's main; its databases' tables."""
    from strata.local import tenant_import
    from strata.local.directory_ingest import ingest_directory

    def progress(done: int, total: int) -> None:
        say(f"  ingesting: {done // 2**20}/{total // 2**20} MB")

    with session.client() as client:
        ingest_directory(client, name, "main", copy.data_dir, copy.wal_lsn, progress)
    return {database: tenant_import.list_tables({**from_env, "PGDATABASE": database})
            for database in databases}


def _restore_dumps(session: Session, cluster: Cluster, from_env: dict[str, str],
                   say: Callable[[str], None]) -> tuple[dict[str, list[str]], list[str]]:
    """pg_dump each database of the source and restore it through the proxy into the
    tenant ``session`` names; (its databases' tables, the roles made)."""
    from strata.cli.commands.connect import proxy_target
    from strata.local import tenant_import

    target = proxy_target(session, "main").environ()

    def progress_of(database: str) -> Callable[[str], None]:
        return lambda table: say(f"  restoring {database}: {table}")

    roles = tenant_import.make_roles(cluster, target)
    databases: dict[str, list[str]] = {}
    for database in cluster.databases:
        if database != target["PGDATABASE"]:
            tenant_import.create_database(target, database)
        databases[database] = tenant_import.restore(
            {**from_env, "PGDATABASE": database}, {**target, "PGDATABASE": database},
            progress_of(database))
    return databases, roles


@tenant.command("list")
@click.option("--all", "all_in_store", is_flag=True,
              help="Every tenant in the object store, also those attached to other page "
                   "servers or detached.")
@api_command
def list_(session: Session, all_in_store: bool) -> None:
    """List the tenants this page server serves that the token may see, with their
    generation and where they are attached."""
    with session.client() as client:
        tenants = client.list_tenants(all_in_store=all_in_store)
    if session.json:
        emit_json({"tenants": [tenant_dict(t) for t in tenants]})
        return
    print_table(("tenant", "generation", "branches", "attached to"),
                [(t.tenant, str(t.generation), str(t.branches) if t.here else "-",
                  _where(t)) for t in tenants],
                right=("generation", "branches"))


def _where(tenant: pb.TenantInfo) -> str:
    """Where a tenant is attached, for people."""
    if tenant.detached:
        return "nowhere (detached)"
    if not tenant.pageserver_id:
        return "unknown"
    place = f"{tenant.pageserver_id} at {tenant.address or 'unknown address'}"
    return f"{place} (this page server)" if tenant.here else place


@tenant.command("attach")
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Take the tenant although the page server holding it never stopped or "
                   "detached it: only for a page server that is gone for good.")
@api_command
def attach(session: Session, name: str, force: bool) -> None:
    """Serve tenant NAME from the object store here (needs an admin token).

    Detach it from the page server that serves it first; see `strata tenant list --all`.
    """
    with session.client() as client, working(f"attaching tenant {name}", session.interactive):
        info = client.attach_tenant(name, force=force)
    if session.json:
        emit_json({"tenant": tenant_dict(info)})
        return
    emit_text(f"attached tenant {name!r} at generation {info.generation} "
              f"({info.branches} branch{'' if info.branches == 1 else 'es'}) to {_where(info)}")


@tenant.command("detach")
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Detach although computes write to it: they are fenced (their next write "
                   "fails).")
@api_command
def detach(session: Session, name: str, force: bool) -> None:
    """Stop serving tenant NAME here (needs an admin token).

    Its memtables are flushed to the object store and every object is kept, so another
    page server on the same store can `strata tenant attach` it. Refused while computes
    write to it, unless --force.
    """
    with session.client() as client, working(f"detaching tenant {name}", session.interactive):
        info = client.detach_tenant(name, force=force)
    if session.json:
        emit_json({"tenant": tenant_dict(info)})
        return
    emit_text(f"detached tenant {name!r} (generation {info.generation}): flushed to the "
              "object store, attached to no page server")


@tenant.command("show")
@click.argument("name", required=False)
@api_command
def show(session: Session, name: str | None) -> None:
    """Show tenant NAME (default: the --tenant one): its usage against its quotas, its
    sizes and history window (see OPERATIONS, "Sizes and history")."""
    name = name or session.tenant
    with session.client() as client:
        response = client.get_tenant(name)
    usage = tenant_usage(session, name, response)
    quotas, running = response.quotas, usage["computes_running"]
    if session.json:
        emit_json(usage)
        return

    def of(value: int, limit: int) -> str:
        return f"{value} of {limit}" if limit else f"{value} (no quota)"

    print_fields([
        ("tenant", name),
        ("branches", of(response.tenant.branches, quotas.max_branches)),
        ("computes running here", of(running, quotas.max_computes)),
        ("longest TTL", f"{quotas.max_ttl_s} s" if quotas.max_ttl_s else "no quota"),
        ("stored (owned layers)", human_size(response.owned_bytes)),
        ("storage", f"{human_size(response.stored_bytes)} of {human_size(quotas.max_storage)}"
         if quotas.max_storage else f"{human_size(response.stored_bytes)} (no quota)"),
        ("logical size of branches", human_size(response.logical_bytes)),
        ("history bytes", human_size(response.history_bytes)),
        ("a delete would reclaim", human_size(response.reclaim_bytes)),
        ("computes' page caches here", f"{human_size(usage['compute_cache_disk_bytes'])} on "
                                       "disk (running: what they hold; stopped: what "
                                       "--cache-keep-mb kept)"),
        ("history window", f"{human_duration(response.history_window_s)} "
                           f"({response.history_window_from})"),
        ("durability", response.durability.mode),
        ("RPO", response.durability.description),
    ])


@tenant.command("storage")
@click.argument("name", required=False)
@click.option("--since", type=DURATION, help="Only samples this recent, e.g. 1h or 7d.")
@api_command
def storage(session: Session, name: str | None, since: str | None) -> None:
    """Show tenant NAME's (default: the --tenant one) storage over time: each branch's
    owned and history bytes and each checkpoint's cost, as the page server sampled them
    (every 5 minutes by default, and after each `strata gc` and `strata compact`; it
    keeps a week's worth)."""
    name = name or session.tenant
    since_us = time.time_ns() // 1000 - parse_duration_s(since) * 1_000_000 if since else 0
    with session.client() as client:
        history = client.storage_history(name, since_us)
    if session.json:
        emit_json(storage_history_dict(name, history))
        return
    if not history.samples:
        emit_text(f"tenant {name!r}: no storage samples yet")
        return
    print_table(("taken", "stored", "branch or checkpoint", "owned or held", "history"), [
        row for taken in history.samples for row in (
            (local_time(taken.at_us), human_size(taken.stored_bytes), "", "", ""),
            *(("", "", f"branch {b.name}", human_size(b.owned_bytes),
               human_size(b.history_bytes)) for b in taken.branches),
            *(("", "", f"checkpoint {c.name}", human_size(c.held_bytes), "")
              for c in taken.checkpoints))],
        right=("stored", "owned or held", "history"))


@tenant.command("set")
@click.argument("name")
@click.option("--max-branches", type=click.IntRange(min=0), help="0: unlimited.")
@click.option("--max-computes", type=click.IntRange(min=0),
              help="Computes running at once; 0: unlimited.")
@click.option("--max-ttl", type=DURATION,
              help="Longest branch TTL, also given to branches created without one; 0: none.")
@click.option("--max-storage", type=SIZE,
              help="Bytes stored (e.g. 10GB); past it, writes that grow files are refused. "
                   "0: unlimited.")
@click.option("--durability", type=click.Choice(MODES), help=DURABILITY_HELP)
@click.option("--max-lag", type=DURATION, help=MAX_LAG_HELP)
@click.option("--history", type=HISTORY, help=HISTORY_HELP)
@api_command
def set_(session: Session, name: str, max_branches: int | None, max_computes: int | None,
         max_ttl: str | None, max_storage: int | None, durability: str | None,
         max_lag: str | None, history: int | None) -> None:
    """Set the quotas, the durability or the history window of tenant NAME (needs an
    admin token); others stay as they are."""
    quota_given = not (max_branches is None and max_computes is None and max_ttl is None
                       and max_storage is None)
    if not quota_given and durability is None and max_lag is None and history is None:
        raise CliError("nothing to set: give --max-branches, --max-computes, --max-ttl, "
                       "--max-storage, --durability, --max-lag or --history", ExitCode.USAGE)
    if history is not None and (quota_given or durability is not None or max_lag is not None):
        raise CliError("set --history on its own", ExitCode.USAGE)
    with session.client() as client:
        if history is not None:
            _emit_history(session, name, client.set_history(name, history))
            return
        current = client.get_tenant(name)
        if durability is not None or max_lag is not None:
            setting = client.set_durability(
                name, _durability(durability, max_lag, current.durability))
            if not quota_given:
                _emit_durability(session, name, setting)
                return
        quotas = current.quotas
        if max_branches is not None:
            quotas.max_branches = max_branches
        if max_computes is not None:
            quotas.max_computes = max_computes
        if max_ttl is not None:
            quotas.max_ttl_s = 0 if max_ttl.strip() in ("0", "0s") else parse_duration_s(max_ttl)
        if max_storage is not None:
            quotas.max_storage = max_storage
        quotas = client.set_quotas(name, quotas)
    document = {"tenant": name, "max_branches": quotas.max_branches or None,
                "max_computes": quotas.max_computes or None,
                "max_ttl_s": quotas.max_ttl_s or None, "max_storage": quotas.max_storage or None}
    if session.json:
        emit_json(document)
    else:
        emit_text(f"quotas of tenant {name!r}: " + ", ".join(
            f"{key} {value if value is not None else 'unlimited'}"
            for key, value in document.items() if key != "tenant"))


def _history_dict(
        answer: pb.GetTenantResponse | pb.SetHistoryResponse) -> dict[str, object]:
    return {"history_s": answer.history_s or None, "history_window_s": answer.history_window_s,
            "history_window_from": answer.history_window_from}


def _emit_history(session: Session, name: str, answer: pb.SetHistoryResponse) -> None:
    if session.json:
        emit_json({"tenant": name, **_history_dict(answer)})
    else:
        emit_text(f"tenant {name!r}: history window {human_duration(answer.history_window_s)}"
                  f" ({answer.history_window_from}) for branches without their own; forks "
                  "keep at most the fork default")


def _emit_durability(session: Session, name: str, setting: pb.Durability) -> None:
    if session.json:
        emit_json({"tenant": name, **durability_dict(setting)})
    else:
        emit_text(f"tenant {name!r}: {setting.description}")


@tenant.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@api_command
def delete(session: Session, name: str, yes: bool) -> None:
    """Delete tenant NAME with all its branches and checkpoints."""
    with session.client() as client:
        def details() -> list[str]:
            held = client.get_tenant(name)
            count = held.tenant.branches
            return [f"tenant {name!r}: {count} branch{'' if count == 1 else 'es'} with their "
                    f"checkpoints, {human_size(held.owned_bytes)} stored"]

        confirm(f"delete tenant {name!r}", details, yes=yes)
        computes.stop_tenant(session.home, name)  # their last changes land before it goes
        client.delete_tenant(name)
    computes.forget_tenant(session.home, name)
    if session.json:
        emit_json({"deleted": name})
    else:
        emit_text(f"deleted tenant {name!r}")
