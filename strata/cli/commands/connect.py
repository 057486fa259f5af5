"""``strata connect`` and ``strata psql``: how to reach a branch through the proxy."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import click

from common.client import HistoryPoint
from common.durations import parse_duration_s
from common.errors import FailedPreconditionError
from common.names import READ_ONLY_ROLE
from common.postgres import pg_bin_dir
from strata.cli.errors import CliError, ExitCode
from strata.cli.params import DURATION
from strata.cli.points import parse_point
from strata.cli.render import emit_json, emit_text
from strata.cli.session import Session, api_command
from strata.local import computes, passwords, proxy_lifecycle, travel
from strata.local.home import UpOptions

if TYPE_CHECKING:
    from proto import strata_pb2 as pb


@dataclass(frozen=True)
class ProxyTarget:
    """How a client of the session's tenant reaches a branch through the proxy: as the
    tenant's owner role (or the read-only role) with the branch's credential, to a
    database of the branch's cluster."""

    host: str
    port: int
    tenant: str
    branch: str
    read_only: bool
    password: str
    dbname: str
    sslmode: str  # disable on a loopback proxy that does not require TLS (faster relay)
    sslrootcert: str | None  # the CA of the proxy's certificate, when strata made it

    @property
    def user(self) -> str:
        return READ_ONLY_ROLE if self.read_only else self.tenant  # the owner's is the tenant's

    @property
    def options(self) -> str:
        return f"-c strata.branch={self.tenant}/{self.branch}"

    def _query(self) -> dict[str, str]:
        query = {"options": self.options, "sslmode": self.sslmode}
        if self.sslrootcert and self.sslmode != "disable":
            query["sslrootcert"] = self.sslrootcert
        return query

    @property
    def uri(self) -> str:
        return (f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{quote(self.host, safe='')}:{self.port}/{quote(self.dbname, safe='')}?"
                + urlencode(self._query(), quote_via=quote, safe=""))

    def environ(self) -> dict[str, str]:
        """libpq's environment variables for it, password included: the way to hand it
        to a client program without putting the password on its command line."""
        names = {"options": "PGOPTIONS", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT"}
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
                "PGDATABASE": self.dbname, "PGPASSWORD": self.password,
                **{names[key]: value for key, value in self._query().items()}}


def proxy_target(session: Session, branch: str, database: str = "postgres",
                 read_only: bool = False, local_socket: bool = False) -> ProxyTarget:
    """The proxy's address (with ``local_socket``, its unix socket's directory), the
    branch's credential (made on first use) and what names ``branch``; a one-line error
    if the proxy does not run."""
    host, _, port = _proxy_address(session).rpartition(":")
    ca_file = proxy_lifecycle.ca_file(session.home)
    if local_socket:
        socket_dir = proxy_lifecycle.socket_dir(session.home)
        if socket_dir is None:
            raise CliError("the running proxy has no unix socket; restart it with "
                           "`strata down && strata up`", ExitCode.UNREACHABLE)
        host, sslmode = socket_dir, "disable"  # a local socket: no network to protect
    elif not UpOptions.load(session.home).require_tls:
        sslmode = "disable"
    else:
        sslmode = "verify-full" if ca_file else "require"
    password = passwords.ensure_credential(session.home, session.tenant, branch, read_only)
    return ProxyTarget(host, int(port), session.tenant, branch, read_only, password, database,
                       sslmode, str(ca_file) if ca_file else None)


def _proxy_address(session: Session) -> str:
    """Where the proxy listens; a one-line error if it does not run."""
    listen = proxy_lifecycle.address(session.home)
    if listen is None:
        raise CliError("the proxy is not running; run `strata up` (as root)",
                       ExitCode.UNREACHABLE)
    return listen


def _reach(session: Session, spec: str, idle: str) -> tuple[pb.BranchInfo, HistoryPoint | None]:
    """The branch ``spec`` names, BRANCH or BRANCH@POINT (then a new read-only endpoint
    there that goes after ``idle``), and the point; one-line errors for a URI, a point
    that is none, a branch that is not, or no proxy."""
    if "://" in spec:  # said without echoing it: a URI carries the password
        raise CliError("give a branch name, not a URI (`psql URI` takes a URI)",
                       ExitCode.USAGE)
    branch, _, typed = spec.partition("@")
    at: HistoryPoint | None = None
    if typed:
        try:
            at = parse_point(typed)
        except ValueError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None
    with session.client() as client:
        info = client.get_branch(session.tenant, branch)  # a clear error if there is none
        if at is not None:
            _proxy_address(session)  # no endpoint that no client could reach
            info = travel.open_endpoint(client, session.tenant, branch, at,
                                        parse_duration_s(idle))
    return info, at


_READ_ONLY_HELP = "Log in as the read-only role: reads every table, writes none."
_IDLE_HELP = "With @POINT: the endpoint goes after this long without clients."


@click.command()
@click.argument("branch", metavar="BRANCH[@POINT]")
@click.option("--database", default="postgres", show_default=True,
              help="Database inside the branch's cluster.")
@click.option("--read-only", is_flag=True, help=_READ_ONLY_HELP)
@click.option("--idle", type=DURATION, default="10m", show_default=True, help=_IDLE_HELP)
@click.option("--socket", "local_socket", is_flag=True,
              help="For a client on this machine: the proxy's unix socket, not TCP.")
@api_command
def connect(session: Session, branch: str, database: str, read_only: bool,
            idle: str, local_socket: bool) -> None:
    """Print the connection URI of BRANCH through the proxy, password included.

    The user is the tenant's owner role (or, with --read-only, strata_readonly) and the
    password a credential of BRANCH alone, made on first use and kept in
    $STRATA_HOME/credentials; the database is one of the branch's cluster, and the
    branch is named in options (-c strata.branch=TENANT/BRANCH). The proxy starts the
    branch's compute on the first connect.

    BRANCH@POINT opens a read-only endpoint on BRANCH as it was at POINT: an LSN
    (digits), a WAL position (X/Y), a time (ISO 8601, -10m, '10 minutes ago') or a
    checkpoint. It is a hidden branch (`branch list --all` shows it) whose compute
    takes read-only logins only; it goes by itself once idle for --idle.

    --socket gives the proxy's unix socket (host=DIRECTORY), for clients on this
    machine: the same login, without TCP's cost on every query.
    """
    info, at = _reach(session, branch, idle)
    branch = branch.partition("@")[0]
    read_only = read_only or info.ephemeral
    target = proxy_target(session, info.name, database, read_only, local_socket)
    if not session.json:
        emit_text(target.uri)
        return
    node = computes.find(session.home, session.tenant, info.name)
    emit_json({"tenant": session.tenant, "branch": info.name, "host": target.host,
               "port": target.port, "user": target.user, "password": target.password,
               "dbname": target.dbname, "options": target.options,
               "sslmode": target.sslmode, "sslrootcert": target.sslrootcert,
               "uri": target.uri, "compute": node.status().value if node else "stopped",
               "ephemeral": info.ephemeral,
               **({"of_branch": branch, "at_lsn": info.branch_lsn,
                   "idle_timeout_s": info.suspend_timeout_s} if at is not None else {})})


@click.command(context_settings={"ignore_unknown_options": True,
                                 "allow_interspersed_args": False})
@click.option("--database", default="postgres", show_default=True,
              help="Database inside the branch's cluster.")
@click.option("--read-only", is_flag=True, help=_READ_ONLY_HELP)
@click.option("--idle", type=DURATION, default="10m", show_default=True, help=_IDLE_HELP)
@api_command
@click.argument("branch", metavar="BRANCH[@POINT]")
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED, metavar="[PSQL_ARGS]...")
def psql(session: Session, branch: str, database: str, read_only: bool, idle: str,
         psql_args: tuple[str, ...]) -> None:
    """Run psql on BRANCH through the proxy; the password stays off the command line.

    Arguments after BRANCH go to psql (`strata psql main -c 'select 1'`, or after a
    `--`: `strata psql main -- -c 'select 1'`); strata's own options come before it.
    psql gets the branch's credential in its environment (PGPASSWORD), never in its
    arguments, and is not run at all when the branch cannot be reached: that fails with
    one line, like every strata error. BRANCH@POINT reads BRANCH as it was at POINT,
    on a read-only endpoint as `strata connect BRANCH@POINT` makes.
    """
    if session.json:
        raise CliError("--json: psql prints its own output", ExitCode.USAGE)
    info, _ = _reach(session, branch, idle)
    target = proxy_target(session, info.name, database, read_only or info.ephemeral)
    try:
        program = str(pg_bin_dir() / "psql")
    except FailedPreconditionError as exc:
        raise CliError(str(exc)) from None
    if psql_args[:1] == ("--",):
        psql_args = psql_args[1:]  # the separator is strata's, not an argument for psql
    environ = {**os.environ, **target.environ()}
    sys.stdout.flush()
    _exec_quietly(program, psql_args, environ)  # psql's exit status is strata's


def _exec_quietly(program: str, args: tuple[str, ...], environ: dict[str, str]) -> None:
    """Become ``program`` with ``args``, its stderr ours, but none of what this process's
    gRPC threads write while the exec ends them.

    The page-server client leaves gRPC's threads behind (closing a channel does not end
    them); the exec kills them, and one caught starting a thread then logs
    ``pthread_create failed`` to stderr, which psql would have inherited (seen on a loaded
    machine). So stderr is /dev/null across the exec, and ``sh`` gives the real one back
    before it execs the program: the same process, psql's own stderr.
    """
    stderr = os.dup(2)
    os.set_inheritable(stderr, True)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 2)
    script = f'exec 2>&{stderr} {stderr}>&-; exec "$0" "$@"'
    try:
        os.execve("/bin/sh", ["sh", "-c", script, program, *args], environ)
    finally:  # the exec failed: this process goes on, with its stderr
        os.dup2(stderr, 2)
        os.close(stderr)
        os.close(quiet)
