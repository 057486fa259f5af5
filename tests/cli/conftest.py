"""Fixtures for the CLI tests: the ``strata`` CLI run as a subprocess against a page server
it starts itself under a temporary $STRATA_HOME, always stopped afterwards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from strata.local.lifecycle import process_alive
from tests.servers import free_port as free_port  # the CLI tests' servers' ports too

REPO = Path(__file__).resolve().parents[2]
# Longer than any wait of the CLI's own (a compute start waits up to 120 s for each of
# the mount and PostgreSQL, a stop 60 s for each), so that a command that gives up says
# why in its one-line error, instead of being cut off by the harness; shorter than a
# test's own limit (pytest-timeout, 300 s in pyproject.toml).
CLI_TIMEOUT_S = 240


@dataclass(frozen=True)
class Result:
    """What one CLI run printed and returned."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Strata:
    """Runs the CLI with one $STRATA_HOME and remembers every page server pid it saw.

    With ``explicit_home`` False, $STRATA_HOME is unset: ``home`` must then be where the
    CLI finds it by default (``env`` sets $HOME for that).
    """

    home: Path
    port: int
    env: Mapping[str, str] = field(default_factory=dict)
    pids: set[int] = field(default_factory=set)
    cwd: Path = REPO
    explicit_home: bool = True

    def run(self, *args: str, expect: int | None = 0,
            env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Result:
        """Run ``strata *args`` (in ``cwd``, default ``self.cwd``) with no terminal (stdin
        from /dev/null); check the exit code unless ``expect`` is None."""
        done = subprocess.run([sys.executable, "-m", "strata.cli", *args], cwd=cwd or self.cwd,
                              env=self.environ(env), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
        result = Result(done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        if expect is not None:
            assert result.code == expect, result
        return result

    def environ(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a CLI run: this home, no token, server or tenant from ours."""
        environ = {**os.environ, **self.env, **(env or {}), "STRATA_HOME": str(self.home)}
        if not self.explicit_home:
            del environ["STRATA_HOME"]
        for name in ("STRATA_TOKEN", "STRATA_SERVER", "STRATA_TENANT"):
            environ.pop(name, None)
        return environ

    def json(self, *args: str) -> Any:
        """Run ``strata *args --json``, check it succeeded and printed only JSON."""
        return self.run(*args, "--json").json()

    def fail(self, expect: int, *args: str) -> str:
        """Run a command that must fail with ``expect``; its one-line error message."""
        result = self.run(*args, expect=expect)
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("strata: "), result.stderr
        return lines[0].removeprefix("strata: ")

    def status(self) -> dict[str, Any]:
        """``strata status --json``, which exits 0 only while the page server serves."""
        result = self.run("status", "--json", expect=None)
        status: dict[str, Any] = result.json()
        assert result.code == (0 if status["components"][0]["healthy"] else 5), result
        return status

    def pageserver_pid(self) -> int | None:
        pid: int | None = self.status()["components"][0]["pid"]
        if pid is not None:
            self.pids.add(pid)
        return pid

    def up(self, *args: str) -> dict[str, Any]:
        state: dict[str, Any] = self.json("up", "--port", str(self.port),
                                          "--metrics-port", "0", "--proxy-port", "0",
                                          "--console-port", "0", *args)
        self.pids.add(state["pid"])
        return state

    def stop_everything(self) -> None:
        """`strata down`, then SIGKILL whatever page server survived it."""
        self.run("down", "--timeout", "10", expect=None)
        for pid in self.pids:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)


@contextmanager
def strata_home() -> Iterator[Path]:
    """A new $STRATA_HOME the ``postgres`` user can traverse.

    The page server runs initdb as ``postgres`` (when root) in scratch space under its
    state directory, so every ancestor must be searchable by it; pytest's own temporary
    directories (mode 0700) are not.
    """
    parent = Path(tempfile.mkdtemp(prefix="strata-cli-test-"))
    try:
        parent.chmod(0o755)
        yield parent / "home"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def strata() -> Iterator[Strata]:
    """The CLI with a running page server and a tenant "default" made by a real initdb."""
    with strata_home() as home:
        cli = Strata(home, free_port())
        try:
            cli.up()
            created = cli.json("tenant", "create", "default")
            assert created["main_lsn"] > 0
            yield cli
        finally:
            cli.stop_everything()


@pytest.fixture
def idle_strata() -> Iterator[Strata]:
    """The CLI with a home of its own where no page server runs yet."""
    with strata_home() as home:
        cli = Strata(home, free_port())
        try:
            yield cli
        finally:
            cli.stop_everything()
