"""Which PGDATA paths are versioned, and what a WAL write says about PostgreSQL's position."""

from __future__ import annotations

import re

WAL_SEGMENT_BYTES = 16 * 1024 * 1024
_SEGMENTS_PER_XLOGID = 0x1_0000_0000 // WAL_SEGMENT_BYTES
_WAL_FILE = re.compile(r"^pg_wal/([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")

# Top-level entries that belong to one running postmaster, never to the database.
_EPHEMERAL_TOP = frozenset({"postmaster.pid", "postmaster.opts", "pg_stat_tmp", "log",
                            "current_logfiles"})


def is_ephemeral(path: str) -> bool:
    """Paths kept in local scratch space and never versioned (pid files, temp files, logs)."""
    if not path:
        return False
    parts = path.split("/")
    return parts[0] in _EPHEMERAL_TOP or any(part.startswith("pgsql_tmp") for part in parts)


def wal_position(path: str, end_offset: int) -> int | None:
    """PostgreSQL's WAL position after a write ending at ``end_offset`` of a WAL segment.

    A segment's name gives its number; the end of the latest write into it gives the
    position (default 16 MB segments). None for any other file.
    """
    match = _WAL_FILE.match(path)
    if match is None:
        return None
    segno = int(match.group(2), 16) * _SEGMENTS_PER_XLOGID + int(match.group(3), 16)
    return segno * WAL_SEGMENT_BYTES + end_offset
