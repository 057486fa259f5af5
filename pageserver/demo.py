"""``strata-demo``: run the storage engine's main job on the embedded default.

Loads a synthetic database into branch ``main`` under ``$STRATA_HOME/demo``
(default ``~/.strata/demo``, apart from the page server's own state), forks
it, changes the fork, travels back in time, checkpoints, compacts and collects
garbage, printing what each step did and how long it took. Run it twice: the
second run re-attaches the same state.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from common.errors import StrataError
from common.keys import PAGE_SIZE, parse_relation_path
from common.ops import Batch, Create, Mkdir, Write
from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.remote import LocalDirectoryStorage
from pageserver.tenant import BranchPoint

TABLE = "base/5/16384"
BATCH_PAGES = 64


def _page(block: int, version: int) -> bytes:
    head = f"block {block} version {version} ".encode()
    return (head * (PAGE_SIZE // len(head) + 1))[:PAGE_SIZE]


def _step(text: str, started: float) -> None:
    print(f"  {text:<58} {1000 * (time.perf_counter() - started):9.1f} ms")


def run(home: Path, pages: int) -> None:
    engine = Engine(EngineConfig(state_dir=home / "pageserver", pitr_window_s=3600),
                    LocalDirectoryStorage(home / "objects"))
    try:
        tenant_id = "demo"
        print(f"Strata engine demo in {home} (objects in {home / 'objects'})")
        if tenant_id in engine.tenants():
            print(f"  re-attached tenant {tenant_id!r} (generation "
                  f"{engine.tenant(tenant_id).generation}); deleting it to start over")
            engine.delete_tenant(tenant_id)
        started = time.perf_counter()
        tenant = engine.create_tenant(tenant_id)
        main = tenant.branch("main")
        main.ingest(Batch((Mkdir("base"), Mkdir("base/5"), Create(TABLE))))
        for first in range(0, pages, BATCH_PAGES):
            blocks = range(first, min(first + BATCH_PAGES, pages))
            main.ingest(Batch(tuple(Write(TABLE, b * PAGE_SIZE, _page(b, 1)) for b in blocks),
                              wal_lsn=first + BATCH_PAGES))
        _step(f"loaded {pages} pages ({pages * PAGE_SIZE >> 20} MB) into main, "
              f"LSN {main.durable_lsn}", started)
        before_change = main.durable_lsn

        started = time.perf_counter()
        fork = tenant.create_branch("agent-try-1", parent="main")
        _step("forked main into agent-try-1 (no page copied)", started)

        started = time.perf_counter()
        fork.ingest(Batch(tuple(Write(TABLE, b * PAGE_SIZE, _page(b, 2)) for b in range(10))))
        _step("agent-try-1 rewrote 10 pages; main is untouched", started)
        assert main.read_file(TABLE, 0, 40).startswith(b"block 0 version 1")
        assert fork.read_file(TABLE, 0, 40).startswith(b"block 0 version 2")

        started = time.perf_counter()
        tenant.create_checkpoint("agent-try-1", "after-change")
        main.ingest(Batch((Write(TABLE, 0, _page(0, 3)),)))
        past = tenant.create_branch("time-travel", at=BranchPoint(lsn=before_change))
        _step(f"checkpointed, changed main again, branched at LSN {before_change}", started)
        assert past.read_file(TABLE, 0, 40).startswith(b"block 0 version 1")

        relation, _ = parse_relation_path(TABLE) or (None, 0)
        assert relation is not None
        sample = np.random.default_rng(7).integers(0, pages, 5000)
        started = time.perf_counter()
        main.get_pages(relation, sample)
        _step("read 5000 random pages from main (memtable)", started)

        started = time.perf_counter()
        engine.flush(tenant_id)
        result = engine.compact(tenant_id, force=True)
        _step(f"flushed and compacted: {result.l1_written} L1 deltas, "
              f"{result.images_written} images", started)
        started = time.perf_counter()
        main.get_pages(relation, sample)
        _step("read the same 5000 pages from layer files", started)

        started = time.perf_counter()
        removed = tenant.delete_branch("time-travel").branches
        gc = engine.gc(tenant_id)
        _step(f"deleted {removed}, GC removed {gc.layers_removed} layers", started)

        stored = sum(f.stat().st_size for f in (home / "objects").rglob("*") if f.is_file())
        print(f"  object store holds {stored / 2**20:.1f} MB for "
              f"{len(tenant.branch_names())} branches: {', '.join(tenant.branch_names())}")
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=20000, help="pages to load into main")
    args = parser.parse_args()
    home = Path(os.environ.get("STRATA_HOME") or "~/.strata").expanduser().resolve() / "demo"
    try:
        run(home, args.pages)
    except StrataError as exc:
        print(f"strata-demo: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
