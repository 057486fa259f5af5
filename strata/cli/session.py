"""What every command shares: its options (--tenant, --json, --server, --token-file), resolved
into a ``Session`` that knows the home directory, the output mode and how to reach the server.

A token never goes on a command line, where other users see it (``ps``): it comes from
``--token-file``, ``$STRATA_TOKEN`` or the local admin token, and ``--token`` is refused.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from common.client import ClientError, StrataClient
from strata.cli.client_errors import from_client_error
from strata.cli.errors import CliError, ExitCode
from strata.local.home import Home

_Result = TypeVar("_Result")


@dataclass(frozen=True)
class Session:
    """The resolved settings of one command."""

    home: Home
    tenant: str
    json: bool
    server: str | None = None  # --server / $STRATA_SERVER
    token: str | None = None  # --token-file / $STRATA_TOKEN

    @property
    def interactive(self) -> bool:
        """Whether to show spinners and prompts: human output and a terminal on stderr."""
        return not self.json and sys.stderr.isatty()

    def address(self) -> str:
        """--server, else where the local page server listens."""
        return self.server or self.home.server_address()

    @contextmanager
    def client(self) -> Iterator[StrataClient]:
        """A client authenticated with --token-file, $STRATA_TOKEN or the local admin token.

        Client errors raised inside become CLI errors.
        """
        token = self.token or self.home.admin_token()
        try:
            with StrataClient(self.address(), token) as client:
                yield client
        except ClientError as exc:
            raise from_client_error(exc, have_token=token is not None) from None


def tenant_given() -> bool:
    """Whether the running command's --tenant was given (or $STRATA_TENANT set), rather
    than defaulted: listings across tenants then keep to it."""
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source("tenant") in (
        ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _tenant_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --tenant and --json, which every command takes."""
    func = click.option("--json", "json_output", is_flag=True,
                        help="Print exactly one JSON document on stdout.")(func)
    return click.option("--tenant", envvar="STRATA_TENANT", default="default", show_default=True,
                        help="Tenant to act on [env: STRATA_TENANT].")(func)


def local_command(func: Callable[..., _Result]) -> Callable[..., _Result]:
    """Give a command about the local deployment the common options and a ``Session``."""

    @_tenant_options
    @functools.wraps(func)
    def wrapper(tenant: str, json_output: bool, **kwargs: Any) -> _Result:
        return func(Session(Home.from_environ(), tenant, json_output), **kwargs)

    return wrapper


def api_command(func: Callable[..., _Result]) -> Callable[..., _Result]:
    """Give a command that calls the page server the common and connection options."""

    @_tenant_options
    @click.option("--server", envvar="STRATA_SERVER", metavar="HOST:PORT",
                  help="Page server address [env: STRATA_SERVER; default: the local one].")
    @click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
                  help="File holding the bearer token [default: $STRATA_TOKEN, else the local "
                       "admin token].")
    @click.option("--token", hidden=True, expose_value=False, callback=_refuse_token_argument)
    @functools.wraps(func)
    def wrapper(tenant: str, json_output: bool, server: str | None, token_file: Path | None,
                **kwargs: Any) -> _Result:
        return func(Session(Home.from_environ(), tenant, json_output, server,
                            _token(token_file)), **kwargs)

    return wrapper


def _refuse_token_argument(ctx: click.Context, param: click.Parameter,
                           value: str | None) -> None:
    """Refuse --token: other users see command lines."""
    if value is not None:
        raise CliError("--token puts the secret where other users see it (ps): set "
                       "$STRATA_TOKEN or pass --token-file FILE instead", ExitCode.USAGE)


def _token(token_file: Path | None) -> str | None:
    """The token of --token-file, else of $STRATA_TOKEN; None: use the local admin token."""
    if token_file is None:
        return os.environ.get("STRATA_TOKEN") or None
    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        raise CliError(f"cannot read token file {token_file}: {exc.strerror}",
                       ExitCode.USAGE) from None
    if not token:
        raise CliError(f"token file {token_file} is empty", ExitCode.USAGE)
    return token
