"""write_durably: the mode it creates files with, and keeping an existing file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from common.durable import write_durably


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_replace_writes_with_the_mode_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    old = os.umask(0)
    try:
        assert write_durably(path, b"one", 0o600)
        assert write_durably(path, b"two", 0o600)
    finally:
        os.umask(old)
    assert path.read_bytes() == b"two" and _mode(path) == 0o600
    assert os.listdir(tmp_path) == ["secret"]


def test_without_replace_an_existing_file_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "key"
    old = os.umask(0)
    try:
        assert write_durably(path, b"first", 0o600, replace=False)
        assert not write_durably(path, b"second", 0o600, replace=False)
    finally:
        os.umask(old)
    assert path.read_bytes() == b"first" and _mode(path) == 0o600
    assert os.listdir(tmp_path) == ["key"]
