"""Tests of the ingest log: framing, recovery, release, group commit, crashes."""

from __future__ import annotations

import errno
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import CorruptionError, FailedPreconditionError, InvalidArgumentError
from pageserver import ingest_log
from pageserver.ingest_log import SEGMENT_MAGIC, IngestLog, LogPoisonedError, LogRecord

REPO_ROOT = Path(__file__).resolve().parents[2]


def rec(timeline: str, lsn: int, size: int = 16, tenant: str = "t") -> LogRecord:
    return LogRecord(tenant, timeline, lsn, bytes([lsn % 256]) * size)


def segment_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("*.log"))


def replayed(directory: Path, segment_bytes: int = 64 * 1024 * 1024) -> list[LogRecord]:
    with IngestLog(directory, segment_bytes) as log:
        return list(log.replay())


def test_roundtrip_across_reopen(tmp_path: Path) -> None:
    records = [
        rec("tl-a", 1),
        LogRecord("ténant", "timeline-é", 2**64 - 1, b""),
        rec("tl-a", 2, size=100_000),
    ]
    with IngestLog(tmp_path) as log:
        assert [log.append_durable(r) for r in records] == [1, 2, 3]
        assert list(log.replay()) == records
    with IngestLog(tmp_path) as log:
        assert list(log.replay()) == records
        log.append_durable(rec("tl-b", 7))
    assert replayed(tmp_path) == [*records, rec("tl-b", 7)]
    assert segment_files(tmp_path) == ["00000000000000000001.log"]


def test_invalid_use(tmp_path: Path) -> None:
    log = IngestLog(tmp_path)
    with pytest.raises(FailedPreconditionError, match="already open"):
        IngestLog(tmp_path)
    with pytest.raises(InvalidArgumentError):
        log.append(rec("tl", -1))
    with pytest.raises(InvalidArgumentError):
        log.append(LogRecord("t" * 70_000, "tl", 1, b""))
    with pytest.raises(InvalidArgumentError):
        log.wait_durable(1)
    log.append(rec("tl", 1))
    log.close()
    log.close()
    with pytest.raises(FailedPreconditionError, match="closed"):
        log.append(rec("tl", 2))
    with pytest.raises(InvalidArgumentError):
        IngestLog(tmp_path, segment_bytes=0)


def test_rotation_and_release(tmp_path: Path) -> None:
    # Records of 122 bytes: three fit in a 400-byte segment after its 8-byte header.
    log = IngestLog(tmp_path, segment_bytes=400)
    layout = [("a", 1), ("a", 2), ("a", 3), ("a", 4), ("b", 1), ("b", 2),
              ("b", 3), ("a", 5), ("a", 6), ("a", 7)]
    for timeline, lsn in layout:
        log.append(rec(timeline, lsn, size=100))
    names = [f"{n:020d}.log" for n in range(1, 6)]
    assert segment_files(tmp_path) == names[:4]
    assert log.stats().segments == 4

    log.release("t", "a", 3)
    assert segment_files(tmp_path) == names[1:4]
    log.release("t", "a", 6)  # segments 2 and 3 still hold b's records
    assert segment_files(tmp_path) == names[1:4]
    # Released records come back while their segment lives; the engine skips them.
    assert [(r.timeline_id, r.lsn) for r in log.replay()] == layout[3:]
    log.release("t", "b", 2)
    assert segment_files(tmp_path) == names[2:4]
    log.release("t", "b", 1_000)
    assert segment_files(tmp_path) == names[3:4]  # the active one still holds a7
    log.release("t", "a", 7)  # the active segment is sealed and goes too
    assert segment_files(tmp_path) == names[4:5]
    assert list(log.replay()) == []
    log.append(rec("a", 8, size=100))
    log.close()
    assert replayed(tmp_path) == [rec("a", 8, size=100)]


def test_release_state_is_rebuilt_at_open(tmp_path: Path) -> None:
    with IngestLog(tmp_path, segment_bytes=400) as log:
        for timeline, lsn in [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]:
            log.append(rec(timeline, lsn, size=100))
        log.release("t", "a", 3)  # nothing to delete: every segment holds b
        assert len(segment_files(tmp_path)) == 2
    with IngestLog(tmp_path, segment_bytes=400) as log:
        # Release state is in memory only: after a restart b alone does not free
        # the segments until the engine releases a again.
        log.release("t", "b", 3)
        assert len(segment_files(tmp_path)) == 2
        log.release("t", "a", 3)
        assert len(segment_files(tmp_path)) == 1
        assert list(log.replay()) == []


def test_forget_timeline(tmp_path: Path) -> None:
    with IngestLog(tmp_path, segment_bytes=400) as log:
        for timeline, lsn in [("gone", 1), ("gone", 2), ("gone", 3), ("gone", 4), ("kept", 1)]:
            log.append(rec(timeline, lsn, size=100))
        log.forget_timeline("t", "gone")
        assert segment_files(tmp_path) == [f"{2:020d}.log"]
        log.append(rec("gone", 5, size=100))  # a later record is not forgotten
        log.release("t", "kept", 1)
        assert [(r.timeline_id, r.lsn) for r in log.replay()] == [
            ("gone", 4), ("kept", 1), ("gone", 5)
        ]
        log.forget_timeline("t", "gone")
        assert list(log.replay()) == []
        assert log.stats().segments == 1


def test_timelines_of_different_tenants_are_distinct(tmp_path: Path) -> None:
    with IngestLog(tmp_path, segment_bytes=50) as log:  # a segment per record
        log.append(rec("tl", 1, tenant="x"))
        log.append(rec("tl", 1, tenant="y"))
        log.release("x", "tl", 1)
        assert list(log.replay()) == [rec("tl", 1, tenant="y")]


@pytest.mark.parametrize(
    ("damage", "lost"),
    [
        (lambda data: data[:-3], 1),  # the last record cut short
        (lambda data: data + b"\x00" * 4096, 0),  # the file grown with zeros
        (lambda data: data + random.Random(1).randbytes(1000), 0),  # garbage
    ],
    ids=["cut", "zeros", "garbage"],
)
def test_torn_tail_is_truncated(
    tmp_path: Path, damage: Callable[[bytes], bytes], lost: int
) -> None:
    records = [rec("tl", lsn, size=50) for lsn in range(1, 6)]
    with IngestLog(tmp_path) as log:
        for r in records:
            log.append(r)
    path = tmp_path / segment_files(tmp_path)[0]
    path.write_bytes(damage(path.read_bytes()))
    survivors = records[: len(records) - lost]
    with IngestLog(tmp_path) as log:
        assert list(log.replay()) == survivors
        log.append_durable(rec("tl", 9))
        assert list(log.replay()) == [*survivors, rec("tl", 9)]
    assert replayed(tmp_path) == [*survivors, rec("tl", 9)]


def test_corruption_inside_the_last_segment_ends_the_log(tmp_path: Path) -> None:
    with IngestLog(tmp_path) as log:
        for lsn in range(1, 4):
            log.append(rec("tl", lsn, size=50))
    path = tmp_path / segment_files(tmp_path)[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the second record
    path.write_bytes(data)
    assert replayed(tmp_path) == [rec("tl", 1, size=50)]


def test_torn_header_of_a_new_last_segment(tmp_path: Path) -> None:
    with IngestLog(tmp_path) as log:
        log.append(rec("tl", 1))
    (tmp_path / f"{2:020d}.log").write_bytes(SEGMENT_MAGIC[:3])  # crashed while creating it
    with IngestLog(tmp_path) as log:
        log.append(rec("tl", 2))
        assert list(log.replay()) == [rec("tl", 1), rec("tl", 2)]
    assert (tmp_path / f"{2:020d}.log").read_bytes().startswith(SEGMENT_MAGIC)


@pytest.mark.parametrize(("where", "offset"), [(8 + 30, 8), (3, 0)], ids=["record", "header"])
def test_corruption_in_an_earlier_segment_raises(tmp_path: Path, where: int, offset: int) -> None:
    with IngestLog(tmp_path, segment_bytes=200) as log:
        for lsn in range(1, 5):
            log.append(rec("tl", lsn, size=100))
    first = tmp_path / segment_files(tmp_path)[0]
    data = bytearray(first.read_bytes())
    data[where] ^= 0x01
    first.write_bytes(data)
    with pytest.raises(CorruptionError, match=re.escape(f"{first} offset {offset}:")):
        IngestLog(tmp_path)


def test_failed_write_leaves_no_partial_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pwrite = os.pwrite
    calls = 0

    def half_then_enospc(fd: int, data: bytes, offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_pwrite(fd, bytes(data)[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, "no space left on device")

    with IngestLog(tmp_path, segment_bytes=2000) as log:
        log.append(rec("tl", 1))
        monkeypatch.setattr(os, "pwrite", half_then_enospc)
        with pytest.raises(OSError, match="no space"):
            log.append(rec("tl", 2, size=1000))
        monkeypatch.setattr(os, "pwrite", real_pwrite)
        # The next record starts a new segment: a leftover half record would
        # now sit at the end of a sealed segment, where it reads as corruption.
        log.append_durable(rec("tl", 3, size=2000))
    assert len(segment_files(tmp_path)) == 2
    assert replayed(tmp_path) == [rec("tl", 1), rec("tl", 3, size=2000)]


def test_failed_fsync_poisons_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_sync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    log = IngestLog(tmp_path)
    durable = log.append_durable(rec("tl", 1))
    monkeypatch.setattr(ingest_log, "_datasync", failing_sync)
    seqno = log.append(rec("tl", 2))
    with pytest.raises(LogPoisonedError, match="I/O error"):
        log.wait_durable(seqno)
    with pytest.raises(LogPoisonedError):
        log.wait_durable(seqno)
    with pytest.raises(LogPoisonedError):
        log.append(rec("tl", 3))
    log.wait_durable(durable)  # made durable before the failure
    log.close()


def test_group_commit_shares_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads, per_thread = 8, 200
    log = IngestLog(tmp_path)
    fsyncs_at_open = log.stats().fsyncs
    real_sync = ingest_log._datasync
    covered: list[int] = []  # for each finished fsync: the last seqno written when it began
    covered_lock = threading.Lock()

    def slow_sync(fd: int) -> None:  # a disk with 1 ms fsyncs, whatever this machine has
        written = log.stats().last_seqno
        time.sleep(0.001)
        real_sync(fd)
        with covered_lock:
            covered.append(written)

    monkeypatch.setattr(ingest_log, "_datasync", slow_sync)
    early_returns: list[int] = []

    def run(name: str) -> None:
        for lsn in range(per_thread):
            seqno = log.append_durable(rec(name, lsn))
            with covered_lock:
                if max(covered, default=0) < seqno:
                    early_returns.append(seqno)

    workers = [threading.Thread(target=run, args=(f"tl{i}",)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    fsyncs = log.stats().fsyncs - fsyncs_at_open
    log.close()
    assert early_returns == []
    assert fsyncs == len(covered)
    assert fsyncs < threads * per_thread / 3


def test_concurrent_appends_keep_order(tmp_path: Path) -> None:
    threads, per_thread = 8, 250
    log = IngestLog(tmp_path, segment_bytes=16 * 1024, fsync=False)
    by_seqno: dict[int, LogRecord] = {}

    def run(name: str) -> None:
        rng = random.Random(name)
        for lsn in range(per_thread):
            record = rec(name, lsn, size=rng.randrange(2000))
            seqno = log.append(record)
            by_seqno[seqno] = record
            if lsn % 10 == 0:
                log.wait_durable(seqno)

    workers = [threading.Thread(target=run, args=(f"tl{i}",)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    expected = [by_seqno[seqno] for seqno in sorted(by_seqno)]
    assert sorted(by_seqno) == list(range(1, threads * per_thread + 1))
    assert list(log.replay()) == expected
    assert log.stats().segments > 10
    log.close()
    records = replayed(tmp_path, segment_bytes=16 * 1024)
    assert records == expected
    for i in range(threads):
        assert [r.lsn for r in records if r.timeline_id == f"tl{i}"] == list(range(per_thread))


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 2), st.integers(0, 300)),
        st.tuples(st.just("release"), st.integers(0, 2), st.integers(0, 30)),
        st.tuples(st.just("forget"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("reopen"), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_OPS)
def test_replay_matches_a_model(ops: list[tuple[str, int, int]]) -> None:
    """Replay gives every record not released, in append order, and nothing else."""
    appended: list[LogRecord] = []
    released: set[LogRecord] = set()  # records the log may drop
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        log = IngestLog(directory, segment_bytes=300, fsync=False)
        for op, timeline_index, arg in ops:
            timeline = f"tl{timeline_index}"
            if op == "append":
                lsn = sum(r.timeline_id == timeline for r in appended) + 1
                appended.append(rec(timeline, lsn, size=arg))
                log.append(appended[-1])
            elif op == "release":
                log.release("t", timeline, arg)
                released |= {r for r in appended if r.timeline_id == timeline and r.lsn <= arg}
            elif op == "forget":
                log.forget_timeline("t", timeline)
                released |= {r for r in appended if r.timeline_id == timeline}
            else:
                log.close()
                log = IngestLog(directory, segment_bytes=300, fsync=False)
            records = list(log.replay())
            present = set(records)
            assert records == [r for r in appended if r in present]
            assert set(appended) - released <= present
        log.close()


_CRASH_CHILD = """
import sys, threading
from pathlib import Path
from pageserver.ingest_log import IngestLog, LogRecord

directory, first = Path(sys.argv[1]), int(sys.argv[2])
names = ["tl0", "tl1", "tl2", "tl3"]
log = IngestLog(directory, segment_bytes=64 * 1024)
for name in names:  # what the engine does at startup: release what layers hold
    log.release("t", name, first - 1)
out = threading.Lock()

def run(name):
    for lsn in range(first, first + 10**6):
        payload = (f"{name}:{lsn}," * (1 + lsn % 400)).encode()  # as in _crash_payload
        log.append_durable(LogRecord("t", name, lsn, payload))
        if lsn % 50 == 0:
            log.release("t", name, lsn - 100)
        with out:
            print(name, lsn, flush=True)

print("ready", flush=True)
for name in names:
    threading.Thread(target=run, args=(name,)).start()
"""


def _crash_payload(name: str, lsn: int) -> bytes:
    return (f"{name}:{lsn}," * (1 + lsn % 400)).encode()


def test_acknowledged_records_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for round_ in range(3):
        first = round_ * 1_000_000 + 1
        child = subprocess.Popen(
            [sys.executable, "-c", _CRASH_CHILD, str(tmp_path), str(first)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        assert child.stdout is not None and child.stderr is not None
        delay = rng.uniform(0.05, 0.4)
        try:
            ready = child.stdout.readline()
            if ready == b"ready\n":
                time.sleep(delay)
        finally:
            child.send_signal(signal.SIGKILL)
        out = child.stdout.read()
        assert ready == b"ready\n", child.stderr.read().decode()
        child.wait()
        child.stdout.close()
        child.stderr.close()
        *lines, _partial = out.split(b"\n")  # a line cut by the kill is not an ack
        acked: dict[str, list[int]] = {}
        for line in lines:
            name, lsn = line.decode().split()
            acked.setdefault(name, []).append(int(lsn))
        assert acked, f"no acknowledgement within {delay:.3f}s"

        found: dict[str, list[LogRecord]] = {}
        for record in replayed(tmp_path, segment_bytes=64 * 1024):
            if record.lsn >= first:
                found.setdefault(record.timeline_id, []).append(record)
        for name, lsns in acked.items():
            records = found.get(name, [])
            assert all(r.payload == _crash_payload(name, r.lsn) for r in records)
            present = [r.lsn for r in records]
            assert present == sorted(present)
            assert max(present, default=0) <= max(lsns) + 1  # one unacknowledged write at most
            # The child releases lsn - 100 after acknowledging lsn (a multiple of 50).
            kept = {lsn for lsn in lsns if lsn > max(lsns) - 99}
            missing = kept - set(present)
            assert not missing, f"round {round_}, killed after {delay:.3f}s: lost {missing}"
