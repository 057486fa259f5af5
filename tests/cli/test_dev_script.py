"""`./dev`, the README's entry point: asking it for help starts nothing.

These run ``./dev`` in the repository, which reinstalls ``.venv`` when its stamp is not
current; so they run only where ``./dev`` made the environment (``./dev test`` does).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.cli.conftest import REPO

_STAMP_OF_SOURCES = "cat pyproject.toml strata/proxy/*.c strata/proxy/*.h | sha256sum"


def _environment_is_current() -> bool:
    stamp = REPO / ".venv" / ".strata-installed"
    wanted = subprocess.run(["bash", "-c", _STAMP_OF_SOURCES], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.split()[0]
    return stamp.is_file() and stamp.read_text().strip() == wanted


pytestmark = pytest.mark.skipif(not _environment_is_current(),
                                reason=".venv was not made by ./dev (it would reinstall it)")


def _dev(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "dev"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "STRATA_HOME": str(home)})


def test_dev_up_help_shows_the_options_and_starts_nothing() -> None:
    """It used to print the help, then try to create tenant default on port 6400 and
    fail with `page server not running`."""
    with tempfile.TemporaryDirectory() as parent:
        home = Path(parent) / "home"
        for flag in ("--help", "-h"):
            done = _dev("up", "--port", "0", flag, home=home)
            assert done.returncode == 0, done.stderr
            assert "--proxy-port" in done.stdout and "./dev up [OPTIONS]" in done.stdout
            assert done.stderr == "" and not home.exists()


def test_dev_help_is_the_usage() -> None:
    with tempfile.TemporaryDirectory() as parent:
        done = _dev("--help", home=Path(parent) / "home")
    assert done.returncode == 0 and done.stdout.startswith("usage: ./dev up")
