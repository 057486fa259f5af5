"""The CLI's error type and exit codes, and how client and local errors map onto them."""

from __future__ import annotations

from enum import IntEnum

import grpc

from common.client import ClientError, ServerUnreachable
from strata.local.errors import InvalidNameError, LocalError


class ExitCode(IntEnum):
    """Process exit codes, distinct per kind of failure so scripts can branch on them."""

    OK = 0
    GENERAL = 1
    USAGE = 2  # also click's own code for bad options
    NOT_FOUND = 3
    AUTH = 4
    UNREACHABLE = 5


class CliError(Exception):
    """A failure reported as one line ``strata: <message>`` on stderr and an exit code.

    ``details`` are extra lines printed below it (such as the tail of a log file).
    """

    def __init__(self, message: str, code: ExitCode = ExitCode.GENERAL,
                 details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or []


_EXIT_OF_STATUS = {
    grpc.StatusCode.NOT_FOUND: ExitCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: ExitCode.AUTH,
    grpc.StatusCode.PERMISSION_DENIED: ExitCode.AUTH,
    grpc.StatusCode.INVALID_ARGUMENT: ExitCode.USAGE,
}


def from_client_error(error: ClientError, *, have_token: bool) -> CliError:
    """The CLI error for a failed call, with a hint where the fix is obvious."""
    if isinstance(error, ServerUnreachable):
        return CliError(f"page server not running at {error.address}; run `strata up`",
                        ExitCode.UNREACHABLE)
    message = error.message
    if error.code is grpc.StatusCode.UNAUTHENTICATED and not have_token:
        message += ("; no token found: pass --token, set $STRATA_TOKEN, or run `strata up` "
                    "to create the local admin token")
    return CliError(message, _EXIT_OF_STATUS.get(error.code, ExitCode.GENERAL))


def from_local_error(error: LocalError) -> CliError:
    """The CLI error for a failed local operation."""
    code = ExitCode.USAGE if isinstance(error, InvalidNameError) else ExitCode.GENERAL
    return CliError(error.message, code, error.details)
