"""A compute keeps working well past the lifetime of its short-lived token: the mount
daemon renews it (compute/token_renewal.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from common.client import StrataClient
from common.durable import write_durably
from compute.node import ComputeNode, ComputeSpec
from tests.compute.conftest import TENANT
from tests.servers import PageServerProcess, free_port

TTL_S = 6


def test_a_compute_outlives_its_short_lived_token(
        cluster: tuple[PageServerProcess, StrataClient]) -> None:
    server, client = cluster
    client.create_branch(TENANT, "renew")
    minted = client.create_token(TENANT, "compute", TTL_S, branches=("renew",))
    home = Path(tempfile.mkdtemp(prefix="strata-renew-"))
    os.chmod(home, 0o755)
    token_file = home / "compute.token"
    write_durably(token_file, minted.token.encode(), mode=0o600)
    node = ComputeNode(ComputeSpec(f"127.0.0.1:{server.port}", token_file, TENANT, "renew",
                                   home / "compute", free_port()))
    try:
        node.start()
        started = time.monotonic()
        with psycopg.connect(node.spec.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE beats (n int)")
            beat = 0
            while time.monotonic() - started < 4 * TTL_S:  # four lifetimes of the first token
                conn.execute("INSERT INTO beats VALUES (%s)", (beat,))
                beat += 1
                time.sleep(0.5)
            conn.execute("CHECKPOINT")
        with psycopg.connect(node.spec.dsn(), autocommit=True) as conn:  # a new backend
            row = conn.execute("SELECT count(*) FROM beats").fetchone()
        assert row == (beat,)
        chain: list[str] = []
        link = minted.token_id
        tokens = {t.renewed_from: t for t in client.list_tokens() if t.renewed_from}
        while link in tokens:
            link = tokens[link].token_id
            chain.append(link)
        assert len(chain) >= 4, chain  # renewed at half of each lifetime
        node.stop()  # detaching needs a live token too
        log = (node.spec.workdir / "mount.log").read_text()
        assert "failed" not in log and "Traceback" not in log, log[-2000:]
        assert log.count("renewed the compute's token") == len(chain)
    finally:
        node.kill()
        shutil.rmtree(home, ignore_errors=True)
