"""What every command shares: its options (--tenant, --json, --server, --token), resolved
into a ``Session`` that knows the home directory, the output mode and how to reach the server.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from common.client import ClientError, StrataClient
from strata.cli.client_errors import from_client_error
from strata.local.home import Home

_Result = TypeVar("_Result")


@dataclass(frozen=True)
class Session:
    """The resolved settings of one command."""

    home: Home
    tenant: str
    json: bool
    server: str | None = None  # --server / $STRATA_SERVER
    token: str | None = None  # --token / $STRATA_TOKEN

    @property
    def interactive(self) -> bool:
        """Whether to show spinners and prompts: human output and a terminal on stderr."""
        return not self.json and sys.stderr.isatty()

    def address(self) -> str:
        """--server, else where the local page server listens."""
        return self.server or self.home.server_address()

    @contextmanager
    def client(self) -> Iterator[StrataClient]:
        """A client authenticated with --token, $STRATA_TOKEN or the local admin token.

        Client errors raised inside become CLI errors.
        """
        token = self.token or self.home.admin_token()
        try:
            with StrataClient(self.address(), token) as client:
                yield client
        except ClientError as exc:
            raise from_client_error(exc, have_token=token is not None) from None


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
    @click.option("--token", envvar="STRATA_TOKEN",
                  help="Bearer token [env: STRATA_TOKEN, which unlike an argument other users "
                       "cannot see; default: the local admin token].")
    @functools.wraps(func)
    def wrapper(tenant: str, json_output: bool, server: str | None, token: str | None,
                **kwargs: Any) -> _Result:
        return func(Session(Home.from_environ(), tenant, json_output, server, token), **kwargs)

    return wrapper
