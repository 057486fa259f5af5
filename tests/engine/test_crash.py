"""Kill -9 of a writing engine at random moments loses no acknowledged batch, also when
the page server's whole state directory is lost with it: the object store is the truth."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.keys import PAGE_SIZE
from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.remote import LocalDirectoryStorage
from tests.engine.crash_writer import BLOCKS, PATH, page_for

ROOT = Path(__file__).resolve().parents[2]


def _run_and_kill(state: Path, store: Path, seconds: float) -> list[int]:
    """Start the writer, SIGKILL it after ``seconds``; the LSNs it saw acknowledged."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.engine.crash_writer", str(state), str(store)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("start"), first
        time.sleep(seconds)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return [int(line) for line in out.split() if line.isdigit()]


@pytest.mark.parametrize("lose_state", [False, True], ids=["state-kept", "state-lost"])
def test_kill_9_loses_nothing_acknowledged(tmp_path: Path, lose_state: bool) -> None:
    state, store = tmp_path / "state", tmp_path / "store"
    rng = random.Random(1234)
    acked: list[int] = []
    for _ in range(3):
        acked += _run_and_kill(state, store, rng.uniform(0.8, 2.0))
        if lose_state:
            shutil.rmtree(state)
    assert len(acked) > 50, "the writer acknowledged too little to prove anything"
    storage = LocalDirectoryStorage(store)
    engine = Engine(EngineConfig(state_dir=state, background_period_s=0, pitr_window_s=1e9),
                    storage)
    try:
        if lose_state:
            engine.attach_tenant("crash")
        main = engine.timeline("crash", "main")
        assert main.durable_lsn >= max(acked)
        latest = main.read_file(PATH)
        for block in range(BLOCKS):
            newest = max((lsn for lsn in acked if lsn % BLOCKS == block), default=None)
            stored = latest[block * PAGE_SIZE:(block + 1) * PAGE_SIZE]
            if newest is not None:
                written = int.from_bytes(stored[:8], "big")
                assert written >= newest and written % BLOCKS == block
        readable = [lsn for lsn in acked if lsn >= main.gc_cutoff or lsn in main.retain_lsns()]
        for lsn in rng.sample(readable, min(40, len(readable))):
            page = main.read_file(PATH, (lsn % BLOCKS) * PAGE_SIZE, PAGE_SIZE, lsn=lsn)
            assert page == page_for(lsn), f"batch {lsn} lost"
    finally:
        engine.close(flush=False)
