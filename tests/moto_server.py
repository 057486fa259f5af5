"""A throwaway moto S3 server on loopback, for tests that talk to a real HTTP endpoint.

Tests run the S3 backend against ``moto_server`` in a subprocess rather than moto's
in-process mock so the real botocore HTTP stack (retries, ranges, pagination,
conditional writes) is exercised exactly as it is against S3.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from types import TracebackType

from common import supervisor
from tests.servers import free_port

# Fake keys and region for boto3 clients pointed at moto. Setting them also stops the
# credential chain before it reaches a real profile or the EC2 metadata endpoint.
DUMMY_AWS_ENV: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "strata-test",
    "AWS_SECRET_ACCESS_KEY": "strata-test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}

# Variables that would make a client use other credentials or another endpoint.
_AWS_ENV_TO_CLEAR = (
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


@contextlib.contextmanager
def dummy_aws_credentials() -> Iterator[None]:
    """Point this process's AWS credential chain at fake keys, restoring it afterwards.

    Only clients need this: the server accepts any signature.
    """
    names = [*DUMMY_AWS_ENV, *_AWS_ENV_TO_CLEAR]
    saved = {name: os.environ.get(name) for name in names}
    for name in _AWS_ENV_TO_CLEAR:
        os.environ.pop(name, None)
    os.environ.update(DUMMY_AWS_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def find_moto_server() -> str:
    """The ``moto_server`` script of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "moto_server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("moto_server")
    if found is None:
        raise FileNotFoundError("moto_server not found; install moto[server]")
    return found


def _answers(port: int) -> bool:
    """Whether an HTTP server on 127.0.0.1:port responds to a request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
    except OSError:
        return False
    finally:
        conn.close()
    return True


class MotoServer:
    """``moto_server`` on 127.0.0.1 and a free port for the duration of a ``with`` block.

    ``with MotoServer() as endpoint_url:`` yields e.g. ``http://127.0.0.1:41234``.
    The subprocess is stopped on exit and also when start-up fails.
    """

    def __init__(self, startup_timeout: float = 30.0, port_attempts: int = 3) -> None:
        self._startup_timeout = startup_timeout
        self._port_attempts = port_attempts
        self._cleanup = contextlib.ExitStack()
        self.endpoint_url = ""

    def __enter__(self) -> str:
        with contextlib.ExitStack() as stack:
            # The server logs every request; a file (unlike a pipe) can never fill up
            # and block it, and its tail explains a failed start.
            logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="moto-")))
            self.endpoint_url = self._start(stack, logs / "moto_server.log")
            self._cleanup = stack.pop_all()
        return self.endpoint_url

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup.close()

    def _start(self, stack: contextlib.ExitStack, log_file: Path) -> str:
        """Start the server, registering its stop on ``stack``; its URL."""
        executable = find_moto_server()
        for _ in range(self._port_attempts):
            port = free_port()
            child = supervisor.spawn([executable, "-H", "127.0.0.1", "-p", str(port)],
                                     marker=b"moto_server", log_file=log_file,
                                     cwd=log_file.parent, label="moto_server")
            stack.callback(supervisor.stop, child, 5.0, what="moto_server")
            try:
                supervisor.wait_ready(child, partial(_answers, port), self._startup_timeout,
                                      what="moto_server", poll_s=0.1)
                return f"http://127.0.0.1:{port}"
            except supervisor.ExitedEarly:
                continue  # most likely something else took the port first: try another
        raise RuntimeError("moto_server did not start:\n" +
                           "\n".join(supervisor.log_tail(log_file, 40)))
