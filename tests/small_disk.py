"""A small disk that really fills up (ENOSPC): a tmpfs mounted for a test, and a file
that takes its last free byte."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` at ``path`` (made if missing), unmounted on exit; the
    test is skipped where it cannot be mounted (not root, no mount privilege)."""
    if os.geteuid() != 0:
        pytest.skip("a small disk is a tmpfs mount, which needs root")
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "strata-small-disk",
         str(path)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path}: {result.stderr.strip()}")
    try:
        yield path
    finally:
        # Lazily: a server that failed to stop may still hold files open in it.
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until its disk has no byte left; the file."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        while len(chunk) > 0:
            try:
                f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                chunk = chunk[: len(chunk) // 2]
    return filler
