"""The tenant log in local durability on every backend: acknowledged after a local fsync,
the store at most max_lag behind, the local tail recovered or dropped at attach."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from common.durability import Durability
from pageserver.config import LogSettings
from pageserver.fencing import Fence, SupersededError
from pageserver.log_chunk import LogRecord
from pageserver.manifest import log_prefix
from pageserver.remote import ForwardingStorage, RemoteStorage
from pageserver.remote.faults import OPERATIONS, FaultPlan, FaultyStorage
from pageserver.tenant_log import NotDurableError, TenantLog

TENANT = "t"


def local_owner(storage: RemoteStorage, generation: int, local_dir: Path | None,
                max_lag_s: float = 5.0, **settings: float) -> TenantLog:
    log = TenantLog(storage, TENANT, Fence(TENANT, generation),
                    LogSettings(**settings), local_dir)  # type: ignore[arg-type]
    log.claim()
    if local_dir is not None:
        log.set_durability(Durability("local", max_lag_s))
    return log


def record(lsn: int, size: int = 400) -> LogRecord:
    return LogRecord("tl", lsn, lsn.to_bytes(4, "big") * (size // 4))


def claim_and_replay(log: TenantLog) -> list[LogRecord]:
    """What ``log`` replays once it claimed the tenant (as an attach does)."""
    log.claim()
    return list(log.replay())


def stored_lsns(storage: RemoteStorage, generation: int) -> list[int]:
    """The LSNs a new owner at ``generation`` replays (it fences the log)."""
    return [r.lsn for r in claim_and_replay(TenantLog(storage, TENANT,
                                                      Fence(TENANT, generation)))]


def failing(storage: RemoteStorage, ops: frozenset[str] = frozenset({"put_if_absent"})
            ) -> FaultyStorage:
    """``storage`` failing every call of ``ops`` once enabled."""
    return FaultyStorage(storage, FaultPlan(error=1.0, ops=ops), enabled=False)


class Held(ForwardingStorage):
    """Holds every log chunk create until ``release`` is set."""

    def __init__(self, inner: RemoteStorage) -> None:
        super().__init__(inner)
        self.release = threading.Event()

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self.release.wait(30)
        return super().put_if_absent(key, data)


def test_acknowledged_after_the_local_fsync_before_the_upload(
        storage: RemoteStorage, tmp_path: Path) -> None:
    held = Held(storage)
    held.release.set()  # the fence
    log = local_owner(held, 1, tmp_path / "local")
    held.release.clear()
    for lsn in (1, 2, 3):
        log.wait_acknowledged(log.append(record(lsn)))
    assert log.acknowledged_seqno == 3 and log.durable_seqno == 0
    assert len(storage.list(log_prefix(TENANT))) == 1  # only the fence
    assert any((tmp_path / "local").iterdir())
    held.release.set()
    log.wait_durable(3)
    log.close()
    assert stored_lsns(storage, 2) == [1, 2, 3]
    assert not (tmp_path / "local").exists(), "a stored local log is deleted"


def test_acknowledging_stops_once_the_store_is_max_lag_behind(
        storage: RemoteStorage, tmp_path: Path) -> None:
    faulty = failing(storage)
    lag = 0.3
    log = local_owner(faulty, 1, tmp_path / "local", lag, ack_timeout_s=0.5)
    faulty.enabled = True
    acked: list[float] = []
    lsn = 0
    with pytest.raises(NotDurableError, match=r"more than 0\.3 s behind"):
        while True:
            lsn += 1
            log.wait_acknowledged(log.append(record(lsn)))
            acked.append(time.monotonic())
    assert acked, "nothing was acknowledged while the store was down"
    assert acked[-1] - acked[0] <= lag + 0.2, "acknowledged beyond the max lag"
    faulty.enabled = False
    log.wait_acknowledged(log.append(record(lsn + 1)), timeout_s=20)  # caught up
    log.wait_durable(log.acknowledged_seqno, timeout_s=20)
    log.close()
    assert stored_lsns(storage, 2) == list(range(1, lsn + 2))  # the refused one too


def test_attach_uploads_the_local_tail_when_no_one_else_wrote(
        storage: RemoteStorage, tmp_path: Path) -> None:
    faulty = failing(storage)
    log = local_owner(faulty, 1, tmp_path / "local")
    faulty.enabled = True
    for lsn in (1, 2, 3):
        log.wait_acknowledged(log.append(record(lsn)))
    log.close()  # the store is down: the local log is kept
    assert any((tmp_path / "local").iterdir())
    restarted = TenantLog(storage, TENANT, Fence(TENANT, 2), local_dir=tmp_path / "local")
    assert [r.lsn for r in claim_and_replay(restarted)] == [1, 2, 3]
    assert not (tmp_path / "local").exists()


def test_attach_drops_the_local_tail_after_another_generation(
        storage: RemoteStorage, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    faulty = failing(storage)
    log = local_owner(faulty, 1, tmp_path / "local")
    log.wait_acknowledged(log.append(record(1)))
    log.wait_durable(1)
    faulty.enabled = True
    for lsn in (2, 3):
        log.wait_acknowledged(log.append(record(lsn)))
    log.close()
    other = local_owner(storage, 2, None)  # another page server attached meanwhile
    other.wait_durable(other.append(record(2, size=8)))
    with caplog.at_level(logging.ERROR):
        restarted = TenantLog(storage, TENANT, Fence(TENANT, 3), local_dir=tmp_path / "local")
        replayed = claim_and_replay(restarted)
    assert [(r.lsn, len(r.payload)) for r in replayed] == [(1, 400), (2, 8)]
    assert "DROPPING 2 acknowledged batches" in caplog.text
    assert not (tmp_path / "local").exists()


def test_a_superseded_owner_acknowledges_at_most_max_lag_more(
        storage: RemoteStorage, tmp_path: Path) -> None:
    """It cannot reach the store, so it cannot learn it was superseded: its own clock
    stops it, max_lag after its last store call that proved it current."""
    cut_off = failing(storage, OPERATIONS)
    lag = 0.3
    old = local_owner(cut_off, 1, tmp_path / "local", lag, ack_timeout_s=0.5)
    old.wait_acknowledged(old.append(record(1)))
    old.wait_durable(1)
    superseded_at = time.monotonic()
    new = local_owner(storage, 2, None)
    cut_off.enabled = True
    late: list[float] = []
    lsn = 1
    with pytest.raises(NotDurableError):
        while True:
            lsn += 1
            old.wait_acknowledged(old.append(record(lsn)))
            late.append(time.monotonic())
    assert all(at <= superseded_at + lag + 0.2 for at in late)
    assert [r.lsn for r in new.replay()] == [1]
    cut_off.enabled = False  # it reaches the store again: its next upload hits the fence
    with pytest.raises(SupersededError):
        old.wait_acknowledged(old.append(record(lsn + 1)), timeout_s=20)


def test_stored_segments_are_given_back(storage: RemoteStorage, tmp_path: Path) -> None:
    log = local_owner(storage, 1, tmp_path / "local", local_segment_bytes=16 * 1024)
    for lsn in range(1, 201):  # about 80 KiB: five segments' worth
        log.wait_acknowledged(log.append(record(lsn)))
    log.wait_durable(200)
    log.set_durability(Durability("local"))  # as after an upload: gives back what is stored
    assert len(list((tmp_path / "local").iterdir())) <= 2  # the current one and a spare
    log.set_durability(Durability())
    assert not (tmp_path / "local").exists(), "turned back to store mode, all of it stored"
    log.close()


def test_turning_local_and_back(storage: RemoteStorage, tmp_path: Path) -> None:
    """Turning local writes the batches the store lacks to the local log first; turning
    back acknowledges after the store again, and the local log goes once stored."""
    faulty = failing(storage)
    log = TenantLog(faulty, TENANT, Fence(TENANT, 1), LogSettings(ack_timeout_s=0.3),
                    tmp_path / "local")
    log.claim()
    faulty.enabled = True
    first = log.append(record(1))
    with pytest.raises(NotDurableError, match="has not confirmed"):
        log.wait_acknowledged(first)  # store mode, the store is down
    log.set_durability(Durability("local"))
    log.wait_acknowledged(first)
    log.wait_acknowledged(log.append(record(2)))
    log.set_durability(Durability())
    with pytest.raises(NotDurableError, match="has not confirmed"):
        log.wait_acknowledged(log.append(record(3)))
    assert (tmp_path / "local").exists()
    faulty.enabled = False
    log.wait_durable(3, timeout_s=20)
    assert not (tmp_path / "local").exists()
    log.close()
    assert stored_lsns(storage, 2) == [1, 2, 3]
