"""Which PGDATA paths are versioned: one list for the importer and the compute shim."""

from __future__ import annotations

# Top-level entries that belong to one running postmaster, never to the database.
_EPHEMERAL_TOP = frozenset({"postmaster.pid", "postmaster.opts", "pg_stat_tmp", "log",
                            "current_logfiles"})


def is_ephemeral(path: str) -> bool:
    """Paths kept in local scratch space and never versioned (pid files, temp files, logs)."""
    if not path:
        return False
    parts = path.split("/")
    return parts[0] in _EPHEMERAL_TOP or any(part.startswith("pgsql_tmp") for part in parts)
