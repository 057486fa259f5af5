"""Which batches a tenant at its storage quota may still send: those that make no file longer."""

from __future__ import annotations

import pytest

from common.keys import PAGE_SIZE
from common.ops import Batch, Create, FileOp, Rename, Truncate, Unlink, Write
from pageserver.engine import Engine
from pageserver.storage_quota import lengthens


@pytest.mark.parametrize(("ops", "grows"), [
    ([Write("f", 0, b"x")], False),  # an overwrite within the file
    ([Write("f", PAGE_SIZE - 1, b"xy")], True),
    ([Truncate("f", PAGE_SIZE + 1)], True),
    ([Truncate("f", 1)], False),
    ([Create("g")], False),
    ([Create("g"), Write("g", 0, b"x")], True),
    ([Unlink("f"), Create("f"), Write("f", 0, b"x")], True),
    ([Rename("f", "g"), Write("g", 0, b"x")], False),
    ([Rename("f", "g"), Write("g", PAGE_SIZE, b"x")], True),
])
def test_which_batches_make_a_file_longer(engine: Engine, ops: list[FileOp], grows: bool) -> None:
    tenant = engine.create_tenant("t")
    main = tenant.branch("main")
    main.ingest(Batch((Create("f"), Write("f", 0, b"a" * PAGE_SIZE))))
    assert lengthens(Batch(tuple(ops)), main.files) is grows
