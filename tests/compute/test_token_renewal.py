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
RENEWALS = 4  # a chain this long: the compute ran through two lifetimes of tokens


def renewal_chain(client: StrataClient, first: str) -> list[str]:
    """The ids of the tokens renewed from ``first``, then from its successor, and so on."""
    successors = {t.renewed_from: t.token_id for t in client.list_tokens() if t.renewed_from}
    chain: list[str] = []
    link = first
    while link in successors:
        link = successors[link]
        chain.append(link)
    return chain


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
        deadline = time.monotonic() + (RENEWALS + 2) * TTL_S  # renewed at half of each life
        with psycopg.connect(node.spec.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE beats (n int)")
            beat = 0
            while len(chain := renewal_chain(client, minted.token_id)) < RENEWALS:
                assert time.monotonic() < deadline, f"renewed only {len(chain)} times"
                conn.execute("INSERT INTO beats VALUES (%s)", (beat,))
                beat += 1
                time.sleep(0.5)
            conn.execute("INSERT INTO beats VALUES (%s)", (beat,))  # on the newest token
            beat += 1
            conn.execute("CHECKPOINT")
        assert time.time() > minted.expires_at, "the first token has not even expired"
        with psycopg.connect(node.spec.dsn(), autocommit=True) as conn:  # a new backend
            row = conn.execute("SELECT count(*) FROM beats").fetchone()
        assert row == (beat,)
        node.stop()  # detaching needs a live token too
        chain = renewal_chain(client, minted.token_id)  # no renewal after the daemon is gone
        log = (node.spec.workdir / "mount.log").read_text()
        assert "failed" not in log and "Traceback" not in log, log[-2000:]
        assert log.count("renewed the compute's token") == len(chain)
    finally:
        node.kill()
        shutil.rmtree(home, ignore_errors=True)
