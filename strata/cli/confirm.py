"""The one confirmation before what cannot be undone (deleting a tenant, or branches with
others below them or marked protected): asked on a terminal, skipped with ``--yes``,
refused without either so that a script never deletes more than it says.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from strata.cli.errors import CliError, ExitCode


def confirm(action: str, details: Callable[[], list[str]], *, yes: bool) -> None:
    """Go ahead with ``action`` (e.g. "delete tenant 'acme'") if ``yes`` or the user
    agrees on the terminal after reading the lines ``details()`` (called only then, as it
    may ask the server); else raise ``CliError``.

    Without a terminal on stdin and stderr and without ``--yes`` it is a usage error (exit
    2), naming ``--yes``; a "no" on the terminal exits 1 with nothing done.
    """
    if yes:
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise CliError(f"refusing to {action} without --yes (no terminal to confirm on)",
                       ExitCode.USAGE)
    for line in details():
        click.echo(line, err=True)
    if not click.confirm(f"{action[0].upper()}{action[1:]}?", default=False, err=True):
        raise CliError(f"did not {action}: not confirmed")
