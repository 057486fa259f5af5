"""A PostgreSQL data directory as the file operations that create it, in a fixed order.

A tenant's first state is ingested this way whether it comes from ``initdb`` on the page
server or from a base backup the CLI took: the same directories, files and writes, so it
lands in the store exactly like any later write from a compute. Ephemeral files
(``common.pgdata``) are left out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from common.ops import Create, FileOp, Mkdir, Write
from common.pgdata import is_ephemeral

WRITE_CHUNK = 1024 * 1024
BATCH_BYTES = 8 * 1024 * 1024


def total_bytes(source: Path) -> int:
    """The bytes of every file under ``source``."""
    return sum(f.stat().st_size for f in source.rglob("*") if f.is_file())


def walk_ops(source: Path) -> Iterator[FileOp]:
    """Mkdir, Create and Write operations that rebuild ``source`` (writes of at most
    ``WRITE_CHUNK`` bytes), directories before their contents, names sorted."""
    for root, dirs, files in os.walk(source):
        dirs.sort()
        base = Path(root)
        for name in dirs:
            path = base / name
            yield Mkdir(str(path.relative_to(source)), path.stat().st_mode & 0o7777)
        for name in sorted(files):
            path = base / name
            rel = str(path.relative_to(source))
            if is_ephemeral(rel):
                continue
            yield Create(rel, path.stat().st_mode & 0o7777)
            with open(path, "rb") as handle:
                offset = 0
                while chunk := handle.read(WRITE_CHUNK):
                    yield Write(rel, offset, chunk)
                    offset += len(chunk)


def batched_ops(source: Path) -> Iterator[tuple[list[FileOp], int, bool]]:
    """``walk_ops(source)`` cut into batches of about ``BATCH_BYTES`` of writes: each
    batch, the write bytes handed out so far, and whether it is the last (always yielded,
    possibly empty, so the caller can mark the end on it)."""
    pending: list[FileOp] = []
    size = done = 0
    for op in walk_ops(source):
        pending.append(op)
        if isinstance(op, Write):
            size += len(op.data)
            done += len(op.data)
        if size >= BATCH_BYTES:
            yield pending, done, False
            pending, size = [], 0
    yield pending, done, True
