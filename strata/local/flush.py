"""Write a running compute's dirty buffers to the page server before its pages are read.

PostgreSQL keeps changed pages in shared_buffers until a checkpoint or an eviction writes
them; the page server sees them only then. ``CHECKPOINT`` on the compute, as ``postgres``
over its unix socket (root only), makes what its clients committed visible in the
branch's layers, for ``strata branch changes``.
"""

from __future__ import annotations

import os
import subprocess

from common.postgres import pg_bin_dir
from strata.local import computes
from strata.local.home import Home


def checkpoint_compute(home: Home, tenant: str, branch: str) -> bool:
    """CHECKPOINT the branch's compute if it runs here and this is root; whether it ran."""
    node = computes.find_running(home, tenant, branch)
    if node is None or os.geteuid() != 0:
        return False
    done = subprocess.run(
        [str(pg_bin_dir() / "psql"), "-X", "-q", "-h", str(node.spec.socket_dir), "-p",
         str(node.spec.port), "-U", "postgres", "-d", "template1", "-c", "CHECKPOINT"],
        capture_output=True, text=True, check=False, timeout=300)
    return done.returncode == 0
