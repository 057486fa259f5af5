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
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

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


def _free_port() -> int:
    """A loopback port nobody listens on right now (the server may still lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    The subprocess is killed on exit and also when start-up fails.
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
            log = stack.enter_context(tempfile.TemporaryFile())
            self.endpoint_url = self._start(stack, log)
            self._cleanup = stack.pop_all()
        return self.endpoint_url

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup.close()

    def _start(self, stack: contextlib.ExitStack, log: IO[bytes]) -> str:
        """Start the server, registering its termination on ``stack``; its URL."""
        executable = find_moto_server()
        for _ in range(self._port_attempts):
            port = _free_port()
            proc = subprocess.Popen(
                [executable, "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(_terminate, proc)
            if self._wait_until_ready(proc, port, log):
                return f"http://127.0.0.1:{port}"
            # It exited: most likely something else took the port first. Try another.
        raise RuntimeError(f"moto_server did not start:\n{_tail(log)}")

    def _wait_until_ready(self, proc: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> bool:
        """True once the server answers; False if it exits; raises after the timeout."""
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if _answers(port):
                return True
            time.sleep(0.1)
        raise TimeoutError(
            f"moto_server did not answer within {self._startup_timeout} s:\n{_tail(log)}"
        )


def _tail(log: IO[bytes], limit: int = 4000) -> str:
    """The end of the server's output, for error messages."""
    log.seek(0)
    return log.read().decode(errors="replace")[-limit:]


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server politely, forcibly if it does not exit within 5 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
