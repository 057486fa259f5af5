"""kill -9 of the page server under load with its whole state directory lost: a new page
server on the same object store attaches the tenant, and every commit PostgreSQL
acknowledged is there (the local-directory store and S3 on loopback)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from compute.node import ComputeNode
from tests.compute.conftest import TENANT, _pgbench_tables, _spec, admin_client
from tests.compute.load import (
    AckWriters,
    Pgbench,
    amcheck,
    assert_acked_present,
    assert_tpcb_balanced,
    create_acks_table,
)
from tests.servers import PageServerProcess


def test_a_page_server_killed_with_its_disk_loses_nothing(compute_host: None,
                                                         shared_store: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="strata-disk-loss-"))
    os.chmod(home, 0o755)
    server = PageServerProcess(home, shared_store, data_plane=True)
    server.start()
    node: ComputeNode | None = None
    try:
        with admin_client(server) as client:
            client.create_tenant(TENANT)
        _pgbench_tables(server, home)
        node = ComputeNode(_spec(server, home / "compute", "main"))
        node.start()
        create_acks_table(node.spec.dsn())
        with Pgbench(node.spec), AckWriters(node.spec.dsn(), 2, 0) as writers:
            time.sleep(4)
            writers.wait_for(51)  # enough to prove anything, if the machine is slow
            assert server.signal(signal.SIGKILL) == -signal.SIGKILL
            # the compute goes too, before the writers are joined: their commits in flight
            # would wait for the dead page server (15 s per writer) and never be acked
            node.kill()
        acked = list(writers.acked)
        assert len(acked) > 50, "too few acknowledged commits to prove anything"
        shutil.rmtree(home / "state")  # memtables, caches, the admin token: all gone
        server.start()  # a new page server: new id and generation; keys from the store
        with admin_client(server) as client:
            assert client.list_tenants() == []
            client.attach_tenant(TENANT, force=True)  # the old one crashed: never stopped
        node.start()  # crash recovery through the new page server, with its new token
        assert_acked_present(node.spec.dsn(), acked)
        assert_tpcb_balanced(node.spec.dsn())
        amcheck(node.spec)
        node.stop()
    finally:
        if node is not None:
            node.kill()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
