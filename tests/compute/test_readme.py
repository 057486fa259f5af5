"""The README is a test: its Quick start session runs, line by line, as a new user would.

Every ``sh`` block of the README's "Quick start" section is run verbatim in a fresh
``$STRATA_HOME``, with ``.venv/bin`` first on ``PATH`` as the README says, each line in
its own ``bash`` whose exit status must be 0. Two things differ from a user's first
hour, and only these: ``./dev test`` is not run (this test is part of it), and the
fresh home holds a ``config.json`` that puts every port on a free one, as a user
would have done with ``strata up --port 0 --metrics-port 0 --proxy-port 0
--console-port 0`` (tests never take fixed ports). When the README and the CLI drift
apart, this fails and names the line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_RUN = {"./dev test": "this test is part of ./dev test"}
LINE_TIMEOUT_S = 300


@dataclass(frozen=True)
class Line:
    """One command of the session and where it stands in the README."""

    number: int
    text: str

    @property
    def command(self) -> str:
        """The command without its trailing comment (bash would ignore it too)."""
        return re.sub(r"\s+#.*$", "", self.text).strip()


def quick_start_lines(readme: str) -> list[Line]:
    """The commands of every ``sh`` block in the README's "Quick start" section, in order;
    a line that continues a comment of the line before is not a command."""
    section = re.search(r"^## Quick start\n(.*?)^## ", readme, re.S | re.M)
    assert section is not None, "the README has no Quick start section"
    first_line = readme[:section.start(1)].count("\n") + 1
    lines: list[Line] = []
    in_block = False
    for offset, text in enumerate(section.group(1).splitlines()):
        if text.startswith("```"):
            in_block = text.strip() == "```sh" if not in_block else False
            continue
        if in_block and text.strip() and not text.lstrip().startswith("#"):
            lines.append(Line(first_line + offset, text))
    return lines


def test_quick_start_lines_are_found() -> None:
    """The parser sees the session the README shows (guards the test below)."""
    lines = [line.command for line in quick_start_lines((ROOT / "README.md").read_text())]
    assert "./dev up" in lines and "./dev test" in lines
    assert any(command.startswith("strata branch create") for command in lines)
    assert lines[-1] == "strata down"


@pytest.fixture
def fresh_home(compute_host: None) -> Iterator[Path]:
    """An empty home whose saved options put every port on a free one."""
    parent = Path(tempfile.mkdtemp(prefix="strata-readme-"))
    os.chmod(parent, 0o755)  # computes live below it; postgres must get through
    home = parent / "home"
    home.mkdir()
    (home / "config.json").write_text(json.dumps(
        {"port": 0, "metrics_port": 0, "proxy_port": 0, "console_port": 0}))
    environ = _environ(home)
    try:
        yield home
    finally:
        subprocess.run([str(Path(sys.executable).parent / "strata"), "down"], env=environ,
                       cwd=ROOT, capture_output=True, check=False, timeout=LINE_TIMEOUT_S)
        shutil.rmtree(parent, ignore_errors=True)


def _environ(home: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "STRATA_HOME": str(home),
            "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")])}


def test_the_readme_session_runs(fresh_home: Path) -> None:
    environ = _environ(fresh_home)
    for line in quick_start_lines((ROOT / "README.md").read_text()):
        if line.command in NOT_RUN:
            continue
        done = subprocess.run(["bash", "-o", "pipefail", "-c", line.command], cwd=ROOT,
                              env=environ, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=LINE_TIMEOUT_S, check=False)
        assert done.returncode == 0, (
            f"README.md:{line.number}: `{line.command}` exited {done.returncode}\n"
            f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}")
        if line.command == "./dev up":  # issue 15: it tells where the web console is
            assert re.search(r"^web console: http://127\.0\.0\.1:\d+/ \(log in with the "
                             r"admin token: cat .*/pageserver/auth/admin\.token\)$",
                             done.stdout, re.MULTILINE), done.stdout[-2000:]
