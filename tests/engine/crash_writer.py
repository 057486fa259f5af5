"""A writer process for the crash test: ingests numbered batches, prints each acknowledged LSN.

Run as ``python -m tests.engine.crash_writer STATE_DIR STORE_DIR [FAULTS]``; it keeps
writing (with background flushes and compactions running) until it is killed. FAULTS,
a plan of pageserver/remote/faults.py, makes the store fail calls once the tenant exists;
the writer then also prints ``faults=N``, how many it has injected so far. FAULTS of the
form ``local=SECONDS`` instead creates the tenant with local durability and that max lag;
the writer then prints ``LSN@TIME``, TIME the wall clock when the batch was acknowledged.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from common.durability import LOCAL, Durability
from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.remote import LocalDirectoryStorage
from pageserver.remote.faults import FaultyStorage, parse_fault_plan
from pageserver.tenant import Tenant

PATH = "base/1/1000"
BLOCKS = 16


def page_for(lsn: int) -> bytes:
    """The page the batch with this LSN writes (block ``lsn % BLOCKS``)."""
    return lsn.to_bytes(8, "big") * (PAGE_SIZE // 8)


def main() -> None:
    state, store = Path(sys.argv[1]), Path(sys.argv[2])
    config = EngineConfig(state_dir=state, background_period_s=0.05, memtable_bytes=256 * 1024,
                          l0_compaction_threshold=3, image_threshold=2, pitr_window_s=0.5,
                          gc_period_s=0.5)
    option = sys.argv[3] if len(sys.argv) > 3 else ""
    local = option.startswith(f"{LOCAL}=")
    durability = Durability(LOCAL, float(option.partition("=")[2])) if local else None
    plan = parse_fault_plan(option) if option and not local else None
    storage = LocalDirectoryStorage(store)
    faulty = FaultyStorage(storage, plan, enabled=False) if plan else None
    engine = Engine(config, faulty or storage)
    if "crash" not in engine.tenants():
        if Tenant.exists(storage, "crash"):  # its state directory was lost: attach again
            engine.attach_tenant("crash")
        else:
            engine.create_tenant("crash", durability).branch("main").ingest(
                Batch((Mkdir("base"), Mkdir("base/1"), Create(PATH)))
            )
    if faulty is not None:
        faulty.enabled = True
    main_branch = engine.timeline("crash", "main")
    print(f"start {main_branch.durable_lsn}", flush=True)
    while True:
        lsn = main_branch.durable_lsn + 1
        acked = main_branch.ingest(
            Batch((Write(PATH, (lsn % BLOCKS) * PAGE_SIZE, page_for(lsn)),), wal_lsn=lsn)
        )
        print(f"{acked}@{time.time():.6f}" if local else acked, flush=True)
        if faulty is not None:
            print(f"faults={sum(faulty.injected().values())}", flush=True)


if __name__ == "__main__":
    main()
