"""How a failed call to the page server becomes a CLI error and exit code.

Apart from ``strata.cli.errors`` so that commands which never call the server (and
``--help``) do not import grpc.
"""

from __future__ import annotations

import grpc

from common.client import ClientError, ServerUnreachable
from strata.cli.errors import CliError, ExitCode

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
        message += ("; no token found: pass --token-file, set $STRATA_TOKEN, or run "
                    "`strata up` to create the local admin token")
    return CliError(message, _EXIT_OF_STATUS.get(error.code, ExitCode.GENERAL))
