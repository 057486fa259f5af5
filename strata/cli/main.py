"""``strata``: the command line of Strata, branchable storage for PostgreSQL.

Errors never show a traceback: they are one line ``strata: <message>`` on stderr and an
exit code from ``strata.cli.errors.ExitCode`` (1 general, 2 usage, 3 not found, 4 auth,
5 page server unreachable, which ``strata status`` also returns when it does not serve).
``STRATA_DEBUG=1`` lets an unexpected error raise.
"""

from __future__ import annotations

import os
import sys

import click

from strata.cli.errors import CliError, ExitCode, from_local_error
from strata.cli.lazy import LazyCommand
from strata.local.errors import LocalError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="strata", message="%(prog)s %(version)s",
                      help="Show the installed version and exit.")
def cli() -> None:
    """Strata: branchable storage for PostgreSQL.

    State lives in $STRATA_HOME (default ~/.strata). Every command takes --tenant
    (default $STRATA_TENANT, else "default") and --json.
    """


_COMMANDS = "strata.cli.commands."
for command in (
    LazyCommand("up", _COMMANDS + "local:up",
                "Start the local page server and, as root, the proxy (idempotent)."),
    LazyCommand("down", _COMMANDS + "local:down",
                "Stop the proxy, the computes of this machine, then the page server "
                "(idempotent)."),
    LazyCommand("status", _COMMANDS + "local:status", "Show what runs locally."),
    LazyCommand("tenant", _COMMANDS + "tenants:tenant",
                "Create, list, attach, detach and delete tenants."),
    LazyCommand("branch", _COMMANDS + "branches:branch",
                "Create, list, show, delete and draw branches."),
    LazyCommand("checkpoint", _COMMANDS + "checkpoints:checkpoint",
                "Create, list and delete checkpoints."),
    LazyCommand("undo", _COMMANDS + "checkpoints:undo",
                "Undo BRANCH's last destructive statement (back to its automatic checkpoint)."),
    LazyCommand("compute", _COMMANDS + "computes:compute",
                "Start, stop and list computes: PostgreSQL 15 on a branch, its disk on the "
                "page server."),
    LazyCommand("connect", _COMMANDS + "connect:connect",
                "Print the connection URI of BRANCH through the proxy, password included."),
    LazyCommand("psql", _COMMANDS + "connect:psql",
                "Run psql on BRANCH through the proxy; the password stays off the command "
                "line."),
    LazyCommand("gc", _COMMANDS + "maintenance:gc",
                "Remove layers nothing needs any more, and say what keeps the rest."),
    LazyCommand("compact", _COMMANDS + "maintenance:compact",
                "Flush and compact the tenant's layers."),
    LazyCommand("token", _COMMANDS + "tokens:token",
                "Create, list and revoke bearer tokens for the page server's API."),
    LazyCommand("mcp", "strata.mcp.command:mcp",
                "Serve Strata's tools to agents over the Model Context Protocol."),
    LazyCommand("console", "strata.console.command:console",
                "Serve the web console: branch tree, computes, storage, page server, audit."),
    LazyCommand("audit", _COMMANDS + "audit:audit",
                "Show the audit log: who (token id, scope, address) changed what, and when."),
):
    cli.add_command(command)


def _fail(message: str, code: int, details: list[str] | None = None) -> int:
    click.echo(f"strata: {message}", err=True)
    for line in details or []:
        click.echo(f"  {line}", err=True)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv``; the exit code."""
    try:
        result = cli.main(args=argv, prog_name="strata", standalone_mode=False)
        return result if isinstance(result, int) else ExitCode.OK
    except CliError as exc:
        return _fail(exc.message, exc.code, exc.details)
    except LocalError as exc:
        failure = from_local_error(exc)
        return _fail(failure.message, failure.code, failure.details)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)  # a group without a command: its help
        return exc.exit_code
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "strata"
        return _fail(f"{exc.format_message()} (see `{where} --help`)", exc.exit_code)
    except click.ClickException as exc:
        return _fail(exc.format_message(), exc.exit_code)
    except click.Abort as exc:
        interrupted = isinstance(exc.__context__, KeyboardInterrupt)
        return _fail("interrupted" if interrupted else "aborted",
                     130 if interrupted else ExitCode.GENERAL)
    except BrokenPipeError:
        return _reader_gone()
    except OSError as exc:
        return _fail(str(exc), ExitCode.GENERAL)
    except Exception as exc:
        if os.environ.get("STRATA_DEBUG"):
            raise
        return _fail(f"unexpected {type(exc).__name__}: {exc} (STRATA_DEBUG=1 shows where)",
                     ExitCode.GENERAL)


def _reader_gone() -> int:
    """The reader of stdout went away (`strata branch list | head -1`): stop quietly."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return ExitCode.GENERAL


def main() -> None:
    """Console-script entry point."""
    code = run()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _reader_gone()
    sys.exit(code)


if __name__ == "__main__":
    main()
