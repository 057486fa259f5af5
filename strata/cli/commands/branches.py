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

import click

from common.client import NEWEST, HistoryPoint
from common.durations import parse_duration_s
from common.postgres import pg_bin_dir
from proto import strata_pb2 as pb
from strata.cli.confirm import confirm
from strata.cli.errors import CliError, ExitCode
from strata.cli.params import DURATION, LSN, TIMESTAMP, WAL_LSN
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
@click.option("--no-undo", is_flag=True,
              help="The proxy takes no automatic checkpoints before its destructive "
                   "statements (strata undo).")
@api_command
def create(session: Session, name: str, parent: str, at_lsn: int | None,
           at_wal_lsn: int | None, at_time: int | None, at_checkpoint: str | None,
           ttl: str | None, lease: str | None, count: int | None,
           suspend_timeout: str | None, protected: bool, no_undo: bool) -> None:
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
            protected=protected, undo_off=no_undo)
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
@click.option("--undo/--no-undo", default=None,
              help="Whether the proxy takes automatic checkpoints before destructive "
                   "statements (strata undo).")
@api_command
def set_(session: Session, name: str, ttl: str | None, no_ttl: bool,
        suspend_timeout: str | None, protected: bool | None, undo: bool | None) -> None:
    """Change the TTL, suspend timeout, protection or undo of branch NAME (a TTL replaces
    a lease)."""
    if ttl and no_ttl:
        raise CliError("give --ttl or --no-ttl, not both", ExitCode.USAGE)
    if not (ttl or no_ttl or suspend_timeout or protected is not None or undo is not None):
        raise CliError("nothing to set: give --ttl, --no-ttl, --suspend-timeout, "
                       "--protected/--unprotected or --undo/--no-undo", ExitCode.USAGE)
    from strata.local import computes

    with session.client() as client, computes.branch_lock(
            computes.workdir(session.home, session.tenant, name)):  # the reaper waits
        info = client.update_branch(
            session.tenant, name,
            ttl_s=0 if no_ttl else (parse_duration_s(ttl) if ttl else None),
            suspend_timeout_s=parse_duration_s(suspend_timeout) if suspend_timeout else None,
            protected=protected, undo_off=None if undo is None else not undo)
    _print_branch(session, info)


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


def _restore(session: Session, name: str, preserve_as: str | None, to: HistoryPoint) -> None:
    from strata.local import computes

    with session.client() as client, computes.paused(
            session.home, client, session.address(), session.tenant, name) as restarted:
        response = client.restore_branch(session.tenant, name, to=to,
                                         preserve_as=preserve_as or "")
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
@api_command
def list_(session: Session, limit: int | None) -> None:
    """List the tenant's branches."""
    with session.client() as client:
        branches = client.list_branches(session.tenant, limit=limit)
    if session.json:
        emit_json({"branches": [branch_dict(b) for b in branches]})
        return
    print_table(BRANCH_COLUMNS, [branch_row(b) for b in branches], right=BRANCH_NUMBERS)


@branch.command("show")
@click.argument("name")
@api_command
def show(session: Session, name: str) -> None:
    """Show every field of branch NAME."""
    with session.client() as client:
        info = client.get_branch(session.tenant, name)
    _print_branch(session, info)


def _print_branch(session: Session, info: pb.BranchInfo) -> None:
    """Every field of a branch: JSON, or a key/value list."""
    if session.json:
        emit_json(branch_dict(info))
    else:
        print_fields(branch_fields(info))


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
    from strata.local import computes

    with session.client() as client, computes.branch_lock(
            computes.workdir(session.home, session.tenant, name)):  # nobody wakes it now
        info = client.get_branch(session.tenant, name)
        if info.protected or info.children:
            # The server refuses here what it would refuse (no --cascade or --force, main),
            # before anything stops; otherwise it says what would go, to confirm.
            plan = client.delete_branch(session.tenant, name, cascade=cascade, force=force,
                                        dry_run=True)
            below = len(plan.deleted) - 1
            confirm(f"delete branch {name!r}" + (f" and the {below} below it" if below else ""),
                    lambda: _plan_lines(plan), yes=yes)
        computes.forget(session.home, session.tenant, [name])
        done = client.delete_branch(session.tenant, name, cascade=cascade, force=force)
    computes.forget_deleted(session.home, session.tenant, list(done.deleted))
    if session.json:
        emit_json({"deleted": list(done.deleted), "checkpoints": list(done.checkpoints),
                   "freed_bytes": done.freed_bytes})
        return
    checkpoints = ", ".join(repr(c) for c in done.checkpoints)
    emit_text(f"deleted {_names(done)}" + (f", checkpoints {checkpoints}" if checkpoints else "")
              + f" ({human_size(done.freed_bytes)} of layers freed)")


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


@branch.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--database", default="postgres", show_default=True,
              help="Database inside the branches' cluster.")
@api_command
def diff(session: Session, old: str, new: str, database: str) -> None:
    """Print the schema difference from branch OLD to branch NEW (unified diff).

    Both are dumped with `pg_dump --schema-only` through the proxy, which starts their
    computes if needed. Empty output: the schemas are the same.
    """
    with session.client() as client:
        for name in (old, new):
            client.get_branch(session.tenant, name)
    dumps = [schema_dump(session, name, database) for name in (old, new)]
    lines = list(difflib.unified_diff(dumps[0].splitlines(), dumps[1].splitlines(),
                                      fromfile=old, tofile=new, lineterm=""))
    if session.json:
        emit_json({"old": old, "new": new, "same": not lines, "diff": lines})
    elif lines:
        emit_text("\n".join(lines))


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
