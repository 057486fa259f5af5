"""The CLI's error type and exit codes, and how local errors map onto them (client errors:
``strata.cli.client_errors``)."""

from __future__ import annotations

from enum import IntEnum

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


def from_local_error(error: LocalError) -> CliError:
    """The CLI error for a failed local operation."""
    code = ExitCode.USAGE if isinstance(error, InvalidNameError) else ExitCode.GENERAL
    return CliError(error.message, code, error.details)
