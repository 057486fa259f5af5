"""What the CLI imports: agents call ``strata`` in loops, so ``--help`` loads neither
grpc nor rich, and ``branch list --json`` no rich and no local orchestration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from importlib.metadata import version

from strata.cli.lazy import LazyCommand
from strata.cli.main import cli
from tests.cli.conftest import REPO, Strata

# Runs the CLI in-process, then reports every module it loaded as the last stderr line.
_RUN_AND_REPORT = """
import json, sys
from strata.cli.main import run
code = run(sys.argv[1:])
sys.stdout.flush()
sys.stderr.write("\\n" + json.dumps(sorted(sys.modules)) + "\\n")
sys.exit(code)
"""


def imported_by(*args: str, env: Mapping[str, str] | None = None) -> tuple[str, set[str]]:
    """The output of ``strata *args`` and the modules it imported."""
    done = subprocess.run([sys.executable, "-c", _RUN_AND_REPORT, *args], cwd=REPO,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout, set(json.loads(done.stderr.splitlines()[-1]))


def _within(modules: set[str], *packages: str) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)}


def test_help_imports_neither_grpc_nor_rich() -> None:
    output, modules = imported_by("--help")
    assert "Commands:" in output and "branch" in output
    assert not _within(modules, "grpc", "rich", "google.protobuf", "proto")
    assert not _within(modules, "strata.cli.commands")


def test_branch_list_json_imports_no_rich(idle_strata: Strata) -> None:
    idle_strata.up()
    idle_strata.json("tenant", "create", "default", "--empty")
    output, modules = imported_by("branch", "list", "--json",
                                  env={"STRATA_HOME": str(idle_strata.home)})
    assert [b["name"] for b in json.loads(output)["branches"]] == ["main"]
    assert not _within(modules, "rich", "strata.local.computes", "strata.local.lifecycle",
                       "compute")


def test_each_command_is_listed_with_its_own_summary() -> None:
    """``strata --help`` lists the commands unloaded: as if they were loaded."""
    for name, listed in cli.commands.items():
        assert isinstance(listed, LazyCommand)
        real = listed.load()
        assert real.name == name
        for limit in (20, 45, 200):
            assert listed.get_short_help_str(limit) == real.get_short_help_str(limit), name


def test_version_comes_from_the_package_and_imports_nothing_heavy() -> None:
    output, modules = imported_by("--version")
    assert output == f"strata {version('strata')}\n"
    assert not _within(modules, "grpc", "rich", "google.protobuf", "strata.cli.commands")


def test_mcp_help_loads_no_mcp_sdk() -> None:
    """Loading the SDK takes about 2 s; the help needs none of it."""
    output, modules = imported_by("mcp", "--help")
    assert "--max-result-bytes" in output
    assert not _within(modules, "mcp", "strata.mcp.serve", "psycopg")
