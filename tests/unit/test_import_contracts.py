"""The import contracts in pyproject.toml hold, and they do catch an upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("proto", "common", "pageserver", "compute", "strata", "bench")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``tree``, with this repository's contracts."""
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
               "lint_imports_command()", "--config", str(ROOT / "pyproject.toml"),
               "--no-cache"]
    return subprocess.run(command, cwd=tree, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(tree)})


def test_the_tree_keeps_every_contract() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout or "broken" not in done.stdout.lower()


def _copy_packages(tree: Path) -> None:
    """The packages the contracts name, without caches and benchmark results."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__", "results"))


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    _copy_packages(tmp_path)
    keys = tmp_path / "common" / "keys.py"
    keys.write_text(keys.read_text() + "\nimport strata.cli.main  # noqa: E402\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0
    assert "common.keys -> strata.cli.main" in done.stdout


def test_a_suite_importing_another_suite_breaks_their_independence(tmp_path: Path) -> None:
    _copy_packages(tmp_path)
    proxy = tmp_path / "bench" / "proxy_bench.py"
    proxy.write_text(proxy.read_text() + "\nimport bench.compute_bench  # noqa: E402\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0
    assert "bench.proxy_bench -> bench.compute_bench" in done.stdout
