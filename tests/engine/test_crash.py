"""Kill -9 of a writing engine at random moments loses no acknowledged batch, also when
the page server's whole state directory is lost with it: the object store is the truth."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from common.keys import PAGE_SIZE
from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.remote import LocalDirectoryStorage
from tests.engine.crash_writer import BLOCKS, PATH, page_for

ROOT = Path(__file__).resolve().parents[2]
ENOUGH = 50  # acknowledged batches, for a kill to prove anything
ACKS_TIMEOUT_S = 120  # for that many, past the kill's random moment, on a slow machine


# The store's faults in the variant under faults (issue 12): calls fail, some of those
# that fail are applied, all while background flushes, compactions and GC run.
STORAGE_FAULTS = "seed=12,error=0.05,throttle=0.02,timeout=0.02:0.01,torn=0.05,latency=0.05:0.002"


def _writer_killed_after(seconds: float, *args: str, acks: int) -> tuple[str, float]:
    """Start the crash writer with ``args``, SIGKILL it ``seconds`` after it started
    writing, and not before it printed ``acks`` acknowledged batches (a loaded machine
    writes fewer in a given time); what it printed and the time of the kill."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.engine.crash_writer", *args],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines: list[str] = []

    def read(stdout: IO[str]) -> None:
        for line in stdout:
            lines.append(line)

    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("start"), first
        reader = threading.Thread(target=read, args=(proc.stdout,), daemon=True)
        reader.start()
        time.sleep(seconds)
        deadline = time.monotonic() + ACKS_TIMEOUT_S
        while sum(map(_is_ack, list(lines))) < acks:
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, f"fewer than {acks} batches acknowledged"
            time.sleep(0.01)
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        reader.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return "".join(lines), killed_at


def _is_ack(line: str) -> bool:
    """An acknowledged batch: ``LSN``, or ``LSN@TIME`` in local durability."""
    return line.strip().isdigit() or "@" in line


def _run_and_kill(state: Path, store: Path, seconds: float, acks: int,
                  faults: str = "") -> tuple[list[int], int]:
    """Start the writer, SIGKILL it after ``seconds`` and ``acks`` acknowledged batches;
    the LSNs it saw acknowledged and how many store faults it injected."""
    out, _ = _writer_killed_after(seconds, str(state), str(store),
                                  *([faults] if faults else []), acks=acks)
    lines = out.splitlines()
    injected = [int(line.removeprefix("faults=")) for line in lines if line.startswith("faults=")]
    return [int(line) for line in lines if line.isdigit()], max(injected, default=0)


@pytest.mark.parametrize("lose_state", [False, True], ids=["state-kept", "state-lost"])
def test_kill_9_loses_nothing_acknowledged(tmp_path: Path, lose_state: bool) -> None:
    _kill_3_times_and_check(tmp_path, "", lose_state)


@pytest.mark.parametrize("lose_state", [False, True], ids=["state-kept", "state-lost"])
def test_kill_9_under_storage_faults_loses_nothing_acknowledged(tmp_path: Path,
                                                                lose_state: bool) -> None:
    _kill_3_times_and_check(tmp_path, STORAGE_FAULTS, lose_state)


@pytest.mark.parametrize("lose_state", [False, True], ids=["state-kept", "state-lost"])
def test_kill_9_in_local_durability_loses_at_most_max_lag(tmp_path: Path,
                                                          lose_state: bool) -> None:
    """Acknowledged after a local fsync: with the disk kept nothing acknowledged is lost;
    with it lost, only batches acknowledged within max lag before the kill can be."""
    state, store, max_lag = tmp_path / "state", tmp_path / "store", 1.0
    out, killed_at = _writer_killed_after(2.5, str(state), str(store), f"local={max_lag}",
                                          acks=ENOUGH + 1)
    acked = {int(lsn): float(at) for lsn, _, at in
             (line.partition("@") for line in out.splitlines() if "@" in line)}
    assert len(acked) > ENOUGH, "the writer acknowledged too little to prove anything"
    if lose_state:
        shutil.rmtree(state)
    engine = Engine(EngineConfig(state_dir=state, background_period_s=0, pitr_window_s=1e9),
                    LocalDirectoryStorage(store))
    try:
        if lose_state:
            engine.attach_tenant("crash")
        main = engine.timeline("crash", "main")
        missing = {lsn: at for lsn, at in acked.items() if lsn > main.durable_lsn}
        if not lose_state:
            assert not missing, f"acknowledged batches lost with the disk kept: {missing}"
        assert all(at >= killed_at - max_lag for at in missing.values()), \
            f"lost batches acknowledged more than {max_lag} s before the kill"
        kept = [lsn for lsn in acked if lsn <= main.durable_lsn
                and (lsn >= main.gc_cutoff or lsn in main.retain_lsns())]
        for lsn in random.Random(5).sample(kept, min(40, len(kept))):
            page = main.read_file(PATH, (lsn % BLOCKS) * PAGE_SIZE, PAGE_SIZE, lsn=lsn)
            assert page == page_for(lsn), f"batch {lsn} lost"
    finally:
        engine.close(flush=False)


def _kill_3_times_and_check(tmp_path: Path, faults: str, lose_state: bool) -> None:
    """Kill the writer three times (losing its state directory each time, with
    ``lose_state``), then check every acknowledged batch on a clean store."""
    state, store = tmp_path / "state", tmp_path / "store"
    rng = random.Random(1234)
    acked: list[int] = []
    injected = 0
    for _ in range(3):
        lsns, faulted = _run_and_kill(state, store, rng.uniform(0.8, 2.0),
                                      ENOUGH // 3 + 1, faults)
        acked += lsns
        injected += faulted
        if lose_state:
            shutil.rmtree(state)
    assert injected > 0 or not faults, "the store never failed a call"
    assert len(acked) > ENOUGH, "the writer acknowledged too little to prove anything"
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
