"""Where PostgreSQL 15's programs are: the importer runs initdb, computes run postgres, the CLI
runs pg_dump; and what ``pg_controldata`` says of a stopped cluster's last checkpoint."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Final

from common.errors import FailedPreconditionError

PG_BIN_CANDIDATES: Final = ("/usr/lib/postgresql/15/bin",)
_CHECKPOINT: Final = re.compile(r"Latest checkpoint location:\s+([0-9A-F]+)/([0-9A-F]+)")


def pg_bin_dir(configured: str | None = None) -> Path:
    """The directory holding PostgreSQL 15's initdb, postgres and pg_controldata."""
    for candidate in ([configured] if configured else []) + list(PG_BIN_CANDIDATES):
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise FailedPreconditionError(
        "PostgreSQL 15 is not installed (no initdb found); install the postgresql-15 package"
    )


def checkpoint_location(controldata: str) -> int | None:
    """The WAL position of the latest checkpoint in ``pg_controldata``'s output; None if
    it names none."""
    match = _CHECKPOINT.search(controldata)
    if match is None:
        return None
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)
