"""A compute fenced by another one's takeover stops for good: its PostgreSQL is not
restarted on the mount it lost, and nothing it wrote after the takeover lands."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from common.client import StrataClient
from common.processes import process_alive
from compute.node import ComputeNode, ComputeStatus
from tests.compute.conftest import TENANT
from tests.servers import PageServerProcess


def test_a_fenced_compute_stops_and_is_not_restarted(
        cluster: tuple[PageServerProcess, StrataClient],
        make_compute: Callable[..., ComputeNode]) -> None:
    cluster[1].create_branch(TENANT, "contested")
    old = make_compute("contested")
    old.start()
    with psycopg.connect(old.spec.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('before the takeover')")
    assert old.pids is not None
    postmaster = old.pids.postmaster
    new = make_compute("contested")
    new.start(force=True)  # fences the old writer
    # Its next commit cannot be made durable.
    with pytest.raises(psycopg.Error), psycopg.connect(old.spec.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO notes VALUES ('after the takeover')")
    deadline = time.monotonic() + 60
    while process_alive(postmaster, b"postgres") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_alive(postmaster, b"postgres"), "the fenced postmaster lives on"
    assert old.status() is ComputeStatus.CRASHED
    log = (old.spec.workdir / "postgres.log").read_text()
    assert "reinitializing" not in log  # no crash-restart on the mount it lost
    with pytest.raises(psycopg.OperationalError):  # nobody restarted it meanwhile
        psycopg.connect(old.spec.dsn(), connect_timeout=5)
    old.kill()
    with psycopg.connect(new.spec.dsn()) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("before the takeover",)]
