"""The tenant log on every backend: acknowledged means stored, fences hold, failures wait.

Each test runs on the local directory, the instrumented store and S3 (moto), through
the ``storage`` fixture of this tier.
"""

from __future__ import annotations

import threading
import time

import pytest

from pageserver.config import LogSettings
from pageserver.fencing import Fence, SupersededError
from pageserver.log_chunk import LogRecord
from pageserver.manifest import log_prefix
from pageserver.remote import ForwardingStorage, RemoteStorage, RemoteStorageError
from pageserver.tenant_log import NotDurableError, TenantLog

TENANT = "t"


def owner(storage: RemoteStorage, generation: int, **settings: float) -> TenantLog:
    log = TenantLog(storage, TENANT, Fence(TENANT, generation),
                    LogSettings(**settings))  # type: ignore[arg-type]
    log.claim()
    return log


def record(lsn: int, timeline: str = "tl") -> LogRecord:
    return LogRecord(timeline, lsn, lsn.to_bytes(4, "big") * 100)


def chunks(storage: RemoteStorage) -> list[str]:
    return storage.list(log_prefix(TENANT))


class Flaky(ForwardingStorage):
    """Fails creates on demand: before applying them, or after (a torn response)."""

    def __init__(self, inner: RemoteStorage) -> None:
        super().__init__(inner)
        self.fail_before = 0
        self.fail_after = 0
        self.delay_s = 0.0

    def put_if_absent(self, key: str, data: bytes) -> bool:
        time.sleep(self.delay_s)
        if self.fail_before:
            self.fail_before -= 1
            raise RemoteStorageError(f"injected: {key} not created")
        created = super().put_if_absent(key, data)
        if self.fail_after:
            self.fail_after -= 1
            raise RemoteStorageError(f"injected: {key} created, reply lost")
        return created


def test_acknowledged_records_are_in_the_store(storage: RemoteStorage) -> None:
    log = owner(storage, 1)
    for lsn in (1, 2, 3):
        log.wait_durable(log.append(record(lsn)))
    assert len(chunks(storage)) == 4  # the fence and one chunk per record
    successor = TenantLog(storage, TENANT, Fence(TENANT, 2))
    successor.claim()
    assert list(successor.replay()) == [record(1), record(2), record(3)]


def test_a_new_owner_fences_the_old_one(storage: RemoteStorage) -> None:
    old = owner(storage, 1)
    old.wait_durable(old.append(record(1)))
    new = owner(storage, 2)
    seqno = old.append(record(2))
    with pytest.raises(SupersededError, match="generation 2"):
        old.wait_durable(seqno)
    with pytest.raises(SupersededError):
        old.append(record(3))
    assert [r.lsn for r in new.replay()] == [1]  # the refused record is nowhere


def test_a_stale_owner_cannot_write_into_a_released_gap(storage: RemoteStorage) -> None:
    """Released chunks are deleted, but never the fence a stale owner collides with."""
    old = owner(storage, 1)
    old.wait_durable(old.append(record(1)))
    new = owner(storage, 2)
    list(new.replay())
    for lsn in (2, 3, 4):
        new.wait_durable(new.append(record(lsn)))
    new.release("tl", 4)
    assert len(chunks(storage)) == 3  # both fences and the newest chunk
    with pytest.raises(SupersededError):
        old.wait_durable(old.append(record(2)))


def test_concurrent_appends_share_chunks(storage: RemoteStorage) -> None:
    slow = Flaky(storage)
    slow.delay_s = 0.02
    log = owner(slow, 1)
    writers, per_writer = 8, 5

    def write(timeline: str) -> None:
        for lsn in range(1, per_writer + 1):
            log.wait_durable(log.append(record(lsn, timeline)))

    threads = [threading.Thread(target=write, args=(f"tl{i}",)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.stats().uploads < writers * per_writer / 2
    replayed = list(owner(storage, 2).replay())
    for i in range(writers):
        assert [r.lsn for r in replayed if r.timeline_id == f"tl{i}"] == [1, 2, 3, 4, 5]


def test_a_create_whose_reply_was_lost_counts_once(storage: RemoteStorage) -> None:
    torn = Flaky(storage)
    log = owner(torn, 1, ack_timeout_s=5)
    torn.fail_after = 1
    first = log.append(record(1))
    log.append(record(2))
    log.wait_durable(first)  # retried: finds its own chunk, with both records
    third = log.append(record(3))
    log.wait_durable(third)
    assert [r.lsn for r in owner(storage, 2).replay()] == [1, 2, 3]


def test_an_unreachable_store_refuses_in_time_and_loses_nothing(storage: RemoteStorage) -> None:
    down = Flaky(storage)
    log = owner(down, 1, ack_timeout_s=0.3)
    down.fail_before = 1000
    seqno = log.append(record(1))
    started = time.monotonic()
    with pytest.raises(NotDurableError, match="injected"):
        log.wait_durable(seqno)
    # The timeout is honoured (not the store, which would never answer): a bound a
    # hundred times the 0.3 s it asks for, so a loaded machine does not fail it.
    assert time.monotonic() - started < 30
    down.fail_before = 0
    deadline = time.monotonic() + 30
    while log.durable_seqno < seqno and time.monotonic() < deadline:
        log.sync()  # the engine's tick: the queued record lands once its backoff passed
        time.sleep(0.05)
    assert log.durable_seqno == seqno
    assert [r.lsn for r in owner(storage, 2).replay()] == [1]


def test_appends_are_refused_while_too_much_waits(storage: RemoteStorage) -> None:
    down = Flaky(storage)
    log = owner(down, 1, max_pending_bytes=1000, ack_timeout_s=0.1)
    down.fail_before = 1000
    log.append(record(1))  # 400-odd bytes each
    log.append(record(2))
    with pytest.raises(NotDurableError, match="wait for the object store"):
        log.append(record(3))


def test_release_keeps_the_newest_chunk_and_forgets_deleted_timelines(
        storage: RemoteStorage) -> None:
    log = owner(storage, 1)
    for lsn in (1, 2):
        log.wait_durable(log.append(record(lsn, "a")))
        log.wait_durable(log.append(record(lsn, "b")))
    log.release("a", 2)
    assert len(chunks(storage)) == 3  # the fence, and "b" still needs its chunks
    log.forget_timeline("b")
    assert len(chunks(storage)) == 2  # the fence and the newest chunk
    assert list(owner(storage, 2).replay()) == [record(2, "b")]
