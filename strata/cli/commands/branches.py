"""``strata branch``: create (at an LSN, WAL position, time or checkpoint; N forks at
once; with a TTL or a lease), renew leases, list, show, delete and draw the lineage of
branches.

Subcommands that touch this machine's computes or the proxy import those modules
themselves: agents run ``strata branch list`` in loops, which needs neither.
"""

from __future__ import annotations

import difflib
import os
import subprocess
from collections.abc import Callable
from typing import Any

import click
import grpc

from common.client import NEWEST, ClientError, HistoryPoint, StrataClient
from common.durations import parse_duration_s
from common.postgres import pg_bin_dir
from proto import strata_pb2 as pb
from strata.cli.confirm import confirm
from strata.cli.errors import CliError, ExitCode
from strata.cli.params import DURATION, HISTORY, LSN, TIMESTAMP, WAL_LSN
from strata.cli.points import FORMS, parse_point
from strata.cli.render import (
    BRANCH_COLUMNS,
    BRANCH_NUMBERS,
    branch_dict,
    branch_fields,
    branch_row,
    emit_json,
    emit_text,
    lease_text,
    lineage,
    print_fields,
    print_lineage,
    print_table,
)
from strata.cli.session import Session, api_command
from strata.cli.units import human_size, local_time
from strata.local.forks import MAX_COUNT, create_forks, fork_names
from strata.local.forks import renew as renew_leases

HISTORY_HELP = ("How far back its history stays readable (branch, restore, time travel), "
                "e.g. 30m or 7d [default: the tenant's; forks at most the page server's fork "
                "default, 1h].")
TIME_HELP = ("ISO 8601 (no zone: local time), now, -10m or '10 minutes ago': the last LSN "
             "at or before it.")


@click.group()
def branch() -> None:
    """Create, list, show, delete and draw branches.

    A branch is a line of history cut from a parent at an LSN; creating one copies nothing.
    """


@branch.command("create")
@click.argument("name")
@click.option("--parent", default="main", show_default=True, help="Branch to fork.")
@click.option("--at-lsn", type=LSN, help="An LSN (the page server's) of the parent.")
@click.option("--at-wal-lsn", type=WAL_LSN,
              help="A WAL position (PostgreSQL's X/Y): the first LSN that reached it.")
@click.option("--at-time", type=TIMESTAMP, help=TIME_HELP)
@click.option("--at-checkpoint", metavar="NAME", help="A checkpoint's LSN (and timeline).")
@click.option("--ttl", type=DURATION, help="Delete the branch after this long, e.g. 2h.")
@click.option("--lease", type=DURATION,
              help="Delete it this long after its last renewal (strata branch renew), "
                   "e.g. 10m: forks of an agent that died go by themselves.")
@click.option("--count", type=click.IntRange(1, MAX_COUNT),
              help=f"Make N forks NAME-1 ... NAME-N at once (at most {MAX_COUNT}), all or "
                   "none.")
@click.option("--suspend-timeout", type=DURATION,
              help="Stop its compute after this long without clients [default: the proxy's].")
@click.option("--protected", is_flag=True, help="Never expires; delete needs --force.")
@click.option("--history", type=HISTORY, help=HISTORY_HELP)
@click.option("--no-undo", is_flag=True,
              help="The proxy takes no automatic checkpoints before its destructive "
                   "statements (strata undo).")
@api_command
def create(session: Session, name: str, parent: str, at_lsn: int | None,
           at_wal_lsn: int | None, at_time: int | None, at_checkpoint: str | None,
           ttl: str | None, lease: str | None, count: int | None,
           suspend_timeout: str | None, protected: bool, history: int | None,
           no_undo: bool) -> None:
    """Create branch NAME, or with --count N forks NAME-1 ... NAME-N.

    It forks --parent at one of the --at-* points, by default at the parent's newest LSN.
    """
    at = _history_point(HistoryPoint(at_lsn, at_wal_lsn, at_time, at_checkpoint),
                       "--at-lsn, --at-wal-lsn, --at-time and --at-checkpoint", required=False)
    if ttl and lease:
        raise CliError("give --ttl or --lease, not both", ExitCode.USAGE)
    with session.client() as client:
        made = create_forks(
            client, session.tenant, fork_names(name, count), parent=parent, at=at,
            ttl_s=parse_duration_s(ttl) if ttl else 0,
            lease_s=parse_duration_s(lease) if lease else 0,
            suspend_timeout_s=parse_duration_s(suspend_timeout) if suspend_timeout else 0,
            protected=protected, history_s=history or 0, undo_off=no_undo)
    if session.json:
        emit_json(branch_dict(made[0]) if count is None else
                  {"branches": [branch_dict(info) for info in made]})
        return
    for info in made:
        expiry = ""
        if info.expires_at_us:
            expiry = (f"; lease {lease_text(info.lease_s)}, expires "
                      if info.lease_s else "; expires ") + local_time(info.expires_at_us)
        emit_text(f"created branch {info.name!r} {_origin(info, at_checkpoint)} at LSN "
                  f"{info.branch_lsn}{expiry}")


@branch.command("renew")
@click.argument("names", nargs=-1, required=True)
@api_command
def renew(session: Session, names: tuple[str, ...]) -> None:
    """Renew the lease of branches NAMES: each expires a lease from now again.

    A NAME no branch has renews the leased forks made under it (NAME-1 ... NAME-N).
    """
    with session.client() as client:
        renewed = renew_leases(client, session.tenant, list(names))
    if session.json:
        emit_json({"branches": [branch_dict(info) for info in renewed]})
        return
    for info in renewed:
        emit_text(f"renewed {info.name!r}: lease {lease_text(info.lease_s)}, expires "
                  f"{local_time(info.expires_at_us)}")


def _origin(info: pb.BranchInfo, checkpoint: str | None) -> str:
    """Where a new branch came from, by name: ``from 'main'``, ``from checkpoint 'c' of
    'try-1'``."""
    of = f" of {info.parent!r}" if info.parent else ""
    return f"from checkpoint {checkpoint!r}{of}" if checkpoint else f"from {info.parent!r}"


@branch.command("set")
@click.argument("name")
@click.option("--ttl", type=DURATION, help="Delete the branch this long from now.")
@click.option("--no-ttl", is_flag=True, help="The branch never expires.")
@click.option("--suspend-timeout", type=DURATION,
              help="Stop its compute after this long without clients.")
@click.option("--protected/--unprotected", default=None,
              help="Protected branches never expire and delete needs --force.")
@click.option("--history", type=HISTORY,
              help="Its history window, e.g. 30m or 7d; 'default': back to the default.")
@click.option("--undo/--no-undo", default=None,
              help="Whether the proxy takes automatic checkpoints before destructive "
                   "statements (strata undo).")
@api_command
def set_(session: Session, name: str, ttl: str | None, no_ttl: bool,
        suspend_timeout: str | None, protected: bool | None, history: int | None,
        undo: bool | None) -> None:
    """Change the TTL, suspend timeout, protection, history window or undo of branch NAME
    (a TTL replaces a lease)."""
    if ttl and no_ttl:
        raise CliError("give --ttl or --no-ttl, not both", ExitCode.USAGE)
    if not (ttl or no_ttl or suspend_timeout or protected is not None
            or history is not None or undo is not None):
        raise CliError("nothing to set: give --ttl, --no-ttl, --suspend-timeout, "
                       "--protected/--unprotected, --history or --undo/--no-undo",
                       ExitCode.USAGE)
    with session.client() as client:
        info = update_locked(
            session, client, name,
            ttl_s=0 if no_ttl else (parse_duration_s(ttl) if ttl else None),
            suspend_timeout_s=parse_duration_s(suspend_timeout) if suspend_timeout else None,
            protected=protected, history_s=history, undo_off=None if undo is None else not undo)
    _print_branch(session, info)


def update_locked(session: Session, client: StrataClient, name: str, *, ttl_s: int | None,
                  suspend_timeout_s: int | None = None,
                  protected: bool | None = None,
                  history_s: int | None = None,
                  undo_off: bool | None = None) -> pb.BranchInfo:
    """Change what is given of branch ``name`` under its compute's lock, so the TTL
    reaper, which reads the branch again under that lock, sees a TTL extended now."""
    from strata.local import computes

    with computes.branch_lock(computes.workdir(session.home, session.tenant, name)):
        return client.update_branch(session.tenant, name, ttl_s=ttl_s,
                                    suspend_timeout_s=suspend_timeout_s, protected=protected,
                                    history_s=history_s, undo_off=undo_off)


@branch.command("restore")
@click.argument("name")
@click.option("--to-checkpoint", metavar="CHECKPOINT", help="A checkpoint's state.")
@click.option("--to-lsn", type=LSN, help="An LSN (the page server's) of the branch's history.")
@click.option("--to-wal-lsn", type=WAL_LSN,
              help="A WAL position (PostgreSQL's X/Y): the first LSN that reached it.")
@click.option("--to-time", type=TIMESTAMP, help=TIME_HELP)
@click.option("--preserve-as", metavar="NAME",
              help="Keep the state the branch has now as branch NAME.")
@api_command
def restore(session: Session, name: str, to_checkpoint: str | None, to_lsn: int | None,
            to_wal_lsn: int | None, to_time: int | None, preserve_as: str | None) -> None:
    """Put branch NAME back to an earlier state: same name, same connection URI.

    Its compute, if running here, is stopped first and started again after. The state it
    had is kept with --preserve-as, and always when branches were forked from it. Its
    checkpoints stay usable (--to-checkpoint, create --at-checkpoint), also after a later
    reset; `strata branch delete` deletes them with the branch.
    """
    to = _history_point(HistoryPoint(to_lsn, to_wal_lsn, to_time, to_checkpoint),
                       "--to-checkpoint, --to-lsn, --to-wal-lsn and --to-time", required=True)
    _restore(session, name, preserve_as, to)


@branch.command("reset")
@click.argument("name")
@click.option("--preserve-as", metavar="NAME",
              help="Keep the state the branch has now as branch NAME.")
@api_command
def reset(session: Session, name: str, preserve_as: str | None) -> None:
    """Reset branch NAME to its parent's newest state (its own changes are dropped).

    Its compute, if running here, is stopped first and started again after. Its
    checkpoints stay: `restore --to-checkpoint` and `create --at-checkpoint` still reach
    the state they pinned, which is kept until they or the branch are deleted.
    """
    _restore(session, name, preserve_as, NEWEST)


def _history_point(point: HistoryPoint, options: str, *, required: bool) -> HistoryPoint:
    """``point``, built from the command's ``options``, if it gives at most one way (and
    one, if ``required``)."""
    if point.ways_given > 1 or (required and point.ways_given == 0):
        raise CliError(f"give {'exactly' if required else 'at most'} one of {options}",
                       ExitCode.USAGE)
    return point


def restore_paused(session: Session, client: StrataClient, name: str, to: HistoryPoint,
                   preserve_as: str | None) -> tuple[pb.RestoreBranchResponse, bool]:
    """Restore (or, to NEWEST, reset) branch ``name`` with its compute on this machine
    stopped around it; the answer and whether the compute was started again."""
    from strata.local import computes

    with computes.paused(session.home, client, session.address(), session.tenant,
                         name) as restarted:
        response = client.restore_branch(session.tenant, name, to=to,
                                         preserve_as=preserve_as or "")
    return response, restarted


def _restore(session: Session, name: str, preserve_as: str | None, to: HistoryPoint) -> None:
    with session.client() as client:
        response, restarted = restore_paused(session, client, name, to, preserve_as)
    info = response.branch
    if session.json:
        emit_json({**branch_dict(info), "preserved_as": response.preserved_as or None,
                   "compute_restarted": restarted})
        return
    kept = f"; its previous state is branch {response.preserved_as!r}" \
        if response.preserved_as else ""
    again = "; compute restarted" if restarted else ""
    emit_text(f"branch {name!r} now at LSN {info.branch_lsn} of its history{kept}{again}")


@branch.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Show only the first N branches by name.")
@click.option("--all", "show_all", is_flag=True,
              help="Also the hidden branches of time-travel endpoints (connect BRANCH@POINT).")
@api_command
def list_(session: Session, limit: int | None, show_all: bool) -> None:
    """List the tenant's branches."""
    with session.client() as client:
        branches = [b for b in client.list_branches(session.tenant, limit=limit,
                                                    history_bytes=session.json)
                    if show_all or not b.ephemeral]
    if session.json:
        emit_json({"branches": [branch_dict(b) for b in branches]})
        return
    print_table(BRANCH_COLUMNS, [branch_row(b) for b in branches], right=BRANCH_NUMBERS)


@branch.command("show")
@click.argument("name")
@api_command
def show(session: Session, name: str) -> None:
    """Show every field of branch NAME, with its sizes: logical (its relations, as
    PostgreSQL counts them), owned, history, and what deleting it would reclaim (see
    OPERATIONS, "Sizes and history")."""
    with session.client() as client:
        info = client.get_branch(session.tenant, name)
    _print_branch(session, info, reclaim=True)


def _print_branch(session: Session, info: pb.BranchInfo, *, reclaim: bool = False) -> None:
    """Every field of a branch: JSON, or a key/value list; with ``reclaim``, also what
    deleting it would free (only ``get_branch`` answers that)."""
    reclaimed = {"reclaim_bytes": info.reclaim_bytes} if reclaim else {}
    if session.json:
        emit_json({**branch_dict(info), **reclaimed})
        return
    fields = branch_fields(info)
    if reclaim:
        fields.append(("a delete would reclaim",
                       f"{human_size(info.reclaim_bytes)} ({info.reclaim_bytes} bytes)"))
    print_fields(fields)


@branch.command("delete")
@click.argument("name")
@click.option("--cascade", is_flag=True, help="Also delete the branches forked from it.")
@click.option("--force", is_flag=True, help="Also protected branches (never main).")
@click.option("--yes", is_flag=True,
              help="Do not ask before deleting a protected branch or one with children.")
@api_command
def delete(session: Session, name: str, cascade: bool, force: bool, yes: bool) -> None:
    """Delete branch NAME with its checkpoints.

    Refused while it has children, unless --cascade, and for protected branches, unless
    --force; main is never deleted (delete the tenant). Such a delete first says what
    goes (branches, checkpoints, bytes) and asks; --yes skips that. Its compute on this
    machine is stopped first. Its checkpoints are deleted too, also those taken before a
    restore or reset; history another branch still reads through stays.
    """
    def ask(plan: pb.DeleteBranchResponse) -> None:
        below = len(plan.deleted) - 1
        confirm(f"delete branch {name!r}" + (f" and the {below} below it" if below else ""),
                lambda: _plan_lines(plan), yes=yes)

    with session.client() as client:
        try:
            done = delete_stopping(session, client, name, cascade=cascade, force=force,
                                   confirm_plan=ask)
        except ClientError as error:
            raise _with_flag_hint(error, cascade=cascade, force=force) from None
    if session.json:
        emit_json({"deleted": list(done.deleted), "checkpoints": list(done.checkpoints),
                   "freed_bytes": done.freed_bytes})
        return
    checkpoints = ", ".join(repr(c) for c in done.checkpoints)
    emit_text(f"deleted {_names(done)}" + (f", checkpoints {checkpoints}" if checkpoints else "")
              + f" ({human_size(done.freed_bytes)} of layers freed)")


_FLAG_OF_REFUSAL = (("a cascading delete", "--cascade"), ("needs force", "--force"))


def _with_flag_hint(error: ClientError, *, cascade: bool, force: bool) -> ClientError | CliError:
    """The server's refusal of a delete, naming the flag that asks for it (the server
    speaks to every client, so it says "cascading delete" and "force", not options)."""
    given = {"--cascade": cascade, "--force": force}
    if error.code is grpc.StatusCode.FAILED_PRECONDITION:
        for phrase, flag in _FLAG_OF_REFUSAL:
            if phrase in error.message and not given[flag]:
                return CliError(f"{error.message} ({flag})", ExitCode.GENERAL)
    return error


def delete_stopping(session: Session, client: StrataClient, name: str, *, cascade: bool,
                    force: bool, confirm_plan: Callable[[pb.DeleteBranchResponse], None]
                    ) -> pb.DeleteBranchResponse:
    """Delete branch ``name`` (``cascade``: with its descendants; ``force``: also when
    protected) after stopping its compute on this machine; what went.

    A protected branch or one with children is first shown to ``confirm_plan`` as the
    server's dry run, which raises to stop the delete.
    """
    from strata.local import computes

    with computes.branch_lock(
            computes.workdir(session.home, session.tenant, name)):  # nobody wakes it now
        info = client.get_branch(session.tenant, name)
        if info.protected or info.children:
            # The server refuses here what it would refuse (no --cascade or --force, main),
            # before anything stops; otherwise it says what would go, to confirm.
            confirm_plan(client.delete_branch(session.tenant, name, cascade=cascade,
                                              force=force, dry_run=True))
        computes.forget(session.home, session.tenant, [name])
        done = client.delete_branch(session.tenant, name, cascade=cascade, force=force)
    computes.forget_deleted(session.home, session.tenant, list(done.deleted))
    return done


def _names(deletion: pb.DeleteBranchResponse) -> str:
    return (f"{'branch' if len(deletion.deleted) == 1 else 'branches'} "
            + ", ".join(repr(d) for d in deletion.deleted))


def _plan_lines(plan: pb.DeleteBranchResponse) -> list[str]:
    """What a branch delete will remove, for the person asked to confirm it."""
    return ["This deletes, and nothing brings back:",
            f"  {_names(plan)}",
            "  checkpoints " + (", ".join(repr(c) for c in plan.checkpoints) or "none"),
            f"  {human_size(plan.freed_bytes)} of layers that only these branches hold"]


@branch.command("tree")
@api_command
def tree(session: Session) -> None:
    """Draw the branches' lineage.

    Each node shows a branch's name and the LSN it was cut at.
    """
    with session.client() as client:
        nodes = lineage(client.list_branches(session.tenant))
    if session.json:
        emit_json({"tenant": session.tenant, "branches": nodes})
    else:
        print_lineage(session.tenant, nodes)


@branch.command("changes")
@click.argument("name")
@click.option("--since", "since", default="fork", show_default=True, metavar="POINT",
              help="fork (the branch point), or " + FORMS + ".")
@api_command
def changes(session: Session, name: str, since: str) -> None:
    """What branch NAME wrote after a point, by relation, from the page server's layers.

    Tables and indexes are named through the branch's own catalog, read from its pages:
    no compute starts. A compute of NAME running on this machine is checkpointed first
    (as root), so that pages its clients changed and PostgreSQL still holds in memory
    are counted; otherwise the figures are what the page server holds.
    """
    from strata.local.flush import checkpoint_compute

    try:
        point = NEWEST if since == "fork" else parse_point(since)
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    with session.client() as client:
        client.get_branch(session.tenant, name)
        flushed = checkpoint_compute(session.home, session.tenant, name)
        found = client.branch_changes(session.tenant, name, point)
    document = changes_dict(found, name, since, flushed)
    if session.json:
        emit_json(document)
        return
    print_table(["change", "relation", "kind", "of table", "pages", "bytes"],
                [(r["change"], r["relation"], r["kind"], r["table"] or "", str(r["pages"]),
                  human_size(r["bytes"])) for r in document["relations"]],
                right=["pages", "bytes"])
    emit_text(f"{found.pages} pages ({human_size(found.bytes)}) in {len(found.relations)} "
              f"relations after LSN {found.since_lsn}, up to {found.upto_lsn}"
              + ("" if found.complete else "; GC removed part of that history"))


def changes_dict(found: pb.BranchChangesResponse, branch: str, since: str,
                 flushed: bool) -> dict[str, Any]:
    """``branch changes --json``: each relation named ``database.schema.name``."""
    relations = []
    for r in found.relations:
        named = ".".join(part for part in (r.schema, r.name) if part) or \
            f"relfilenode {r.relation.rel_number}"
        relations.append({"relation": f"{r.database}.{named}" if r.database else named,
                          "database": r.database or None, "schema": r.schema or None,
                          "name": r.name or None, "kind": _KINDS.get(r.kind, r.kind or None),
                          "table": r.table or None, "change": r.change, "pages": r.pages,
                          "writes": r.writes, "bytes": r.bytes, "oid": r.oid or None,
                          "relfilenode": r.relation.rel_number})
    return {"branch": branch, "since": since, "since_lsn": found.since_lsn,
            "upto_lsn": found.upto_lsn, "pages": found.pages, "bytes": found.bytes,
            "other_pages": found.other_pages, "layers_read": found.layers_read,
            "complete": found.complete, "compute_checkpointed": flushed,
            "relations": relations}


_KINDS = {"r": "table", "i": "index", "t": "toast", "S": "sequence", "m": "matview",
          "p": "partitioned table", "I": "partitioned index", "v": "view", "c": "type",
          "f": "foreign table"}


@branch.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--database", default="postgres", show_default=True,
              help="Database inside the branches' cluster.")
@click.option("--data", is_flag=True,
              help="Row differences by primary key instead of the schema's.")
@click.option("--sample", type=click.IntRange(min=0, max=1000), default=5, show_default=True,
              help="With --data: rows shown per table and kind of change.")
@api_command
def diff(session: Session, old: str, new: str, database: str, data: bool,
         sample: int) -> None:
    """Print the schema difference from branch OLD to branch NEW (unified diff).

    Both are dumped with `pg_dump --schema-only` through the proxy, which starts their
    computes if needed. Empty output: the schemas are the same.

    With --data: for each table both have with the same primary key, the rows NEW
    inserted, deleted and updated (counts, and a sample of each), read through the
    proxy as the read-only role.
    """
    with session.client() as client:
        for name in (old, new):
            client.get_branch(session.tenant, name)
    if data:
        _data_diff(session, old, new, database, sample)
        return
    dumps = [schema_dump(session, name, database) for name in (old, new)]
    lines = list(difflib.unified_diff(dumps[0].splitlines(), dumps[1].splitlines(),
                                      fromfile=old, tofile=new, lineterm=""))
    if session.json:
        emit_json({"old": old, "new": new, "same": not lines, "diff": lines})
    elif lines:
        emit_text("\n".join(lines))


def _data_diff(session: Session, old: str, new: str, database: str, sample: int) -> None:
    import psycopg

    from strata.cli.commands.connect import proxy_target
    from strata.local.data_diff import data_diff

    uris = [proxy_target(session, name, database, read_only=True).uri for name in (old, new)]
    try:
        found = data_diff(uris[0], uris[1], sample)
    except psycopg.Error as exc:
        raise CliError(f"data diff failed: {str(exc).strip().splitlines()[0]}") from None
    if session.json:
        emit_json({"old": old, "new": new, **found})
        return
    print_table(["table", "inserted", "deleted", "updated"],
                [(t["table"], str(t["inserted"]), str(t["deleted"]), str(t["updated"]))
                 for t in found["tables"]], right=["inserted", "deleted", "updated"])
    for table in found["tables"]:
        for kind, rows in table["samples"].items():
            for row in rows:
                shown = (f"{row['old']} -> {row['new']}" if kind == "updated"
                         else str(row["row"]))
                emit_text(f"{kind[0].upper()} {table['table']} {row['key']}: {shown}")
    for item in found["skipped"]:
        emit_text(f"not compared: {item['table']} ({item['why']})")
    for side, key in ((old, "only_old"), (new, "only_new")):
        if found[key]:
            emit_text(f"only in {side}: {', '.join(found[key])}")


def schema_dump(session: Session, branch_name: str, database: str) -> str:
    """``pg_dump --schema-only`` of a branch, reached through the proxy as the read-only
    role, which reads every table whoever owns it."""
    from strata.cli.commands.connect import proxy_target

    target = proxy_target(session, branch_name, database, read_only=True)  # reads only
    done = subprocess.run(
        [str(pg_bin_dir() / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges"],
        capture_output=True, text=True, env={**os.environ, **target.environ()}, check=False,
        timeout=300)
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode
        raise CliError(f"pg_dump of branch {branch_name!r} failed: {why}")
    # Version banners and pg_dump's per-run random \restrict keys would differ every time.
    noise = ("-- Dumped", "\\restrict", "\\unrestrict")
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith(noise))
