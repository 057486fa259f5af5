"""Undo's per-session watch against a real page server: the frontend messages a relay
holds (built as a client sends them) take automatic checkpoints exactly when a prepared
destructive statement runs: at EXECUTE and at the Bind of a driver's Parse of EXECUTE,
never at PREPARE, and no more once the name is deallocated."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.client import StrataClient
from strata.proxy.undo import Undo
from tests.api.conftest import Live
from tests.unit.test_proxy_watch import bind, parse, query

TENANT = "watched"


@pytest.fixture
def client(live: Live) -> Iterator[StrataClient]:
    with StrataClient(f"127.0.0.1:{live.server.port}", live.admin[0][1].split()[1]) as admin:
        admin.create_tenant(TENANT)
        yield admin


def test_prepared_statements_take_checkpoints_when_they_run(client: StrataClient) -> None:
    undo = Undo(client)
    watch = undo.watch(TENANT, "main")
    taken: list[int] = []

    def send(message: bytes) -> bytes:
        """The watch's answer to a held message, and how many checkpoints it took."""
        names = watch(message, True)
        undo._writer.submit(int).result()  # checkpoints are written in order, behind this
        taken.append(sum(bool(c.statement) for c in client.list_checkpoints(TENANT)))
        return names

    assert send(query("PREPARE wipe AS DELETE FROM t")) == b"\0wipe\0"
    assert send(query("EXECUTE wipe")) == b"\0wipe\0"
    assert send(parse("EXECUTE wipe", "s1")) == b"\0wipe\0s1\0"
    send(bind("s1"))
    send(query("DEALLOCATE wipe"))
    send(bind("s1"))  # s1 still runs EXECUTE wipe, but wipe is gone
    assert send(query("DISCARD ALL")) == b""
    assert taken == [0, 1, 1, 2, 2, 2, 2]
    undo.close()
