"""``create_once``: put_if_absent whose lost responses are settled by reading back,
so a caller learns whether its object exists, never a guess."""

from __future__ import annotations

from pathlib import Path

import pytest

from pageserver.remote import LocalDirectoryStorage, RemoteStorageError
from pageserver.remote.faults import FaultPlan, FaultyStorage
from pageserver.remote.retry import RetryPolicy, create_once

FAST = RetryPolicy(attempts=30, base_s=0.0, cap_s=0.0, deadline_s=10.0)


@pytest.fixture
def inner(tmp_path: Path) -> LocalDirectoryStorage:
    return LocalDirectoryStorage(tmp_path / "remote")


def test_a_torn_create_is_known_to_have_succeeded(inner: LocalDirectoryStorage) -> None:
    store = FaultyStorage(inner, FaultPlan(torn=1.0, ops=frozenset({"put_if_absent"})))
    assert create_once(store, "log/0001", b"batch 1", FAST) is True
    assert inner.get("log/0001") == b"batch 1"
    assert store.injected() == {("torn", "put_if_absent"): 1}


def test_an_object_of_another_writer_is_refused(inner: LocalDirectoryStorage) -> None:
    inner.put("log/0001", b"batch 1 of the other writer")
    store = FaultyStorage(inner, FaultPlan(torn=0.5, error=0.5, ops=frozenset({"put_if_absent"})))
    for _ in range(20):
        assert create_once(store, "log/0001", b"batch 1", FAST) is False
    assert inner.get("log/0001") == b"batch 1 of the other writer"


def test_every_outcome_is_settled_under_every_fault(inner: LocalDirectoryStorage) -> None:
    store = FaultyStorage(inner, FaultPlan(seed=2, error=0.2, throttle=0.1, timeout=0.1,
                                           torn=0.2))
    for i in range(100):
        key = f"log/{i:04d}"
        if i % 3 == 0:
            inner.put(key, b"theirs")
        assert create_once(store, key, b"mine", FAST) is (i % 3 != 0)
        assert inner.get(key) == (b"theirs" if i % 3 == 0 else b"mine")
    for kind in ("error", "throttle", "timeout", "torn"):
        assert store.injected_total(kind) > 0, kind


def test_a_read_back_cut_short_is_not_taken_for_another_writer(
        inner: LocalDirectoryStorage) -> None:
    store = FaultyStorage(inner, FaultPlan(seed=1, torn=1.0))  # every read short or failed
    with pytest.raises(RemoteStorageError, match="failed 30 times"):
        create_once(store, "log/0001", b"mine, a longer record", FAST)
    assert inner.get("log/0001") == b"mine, a longer record"
    store.enabled = False
    assert create_once(store, "log/0001", b"mine, a longer record", FAST) is True


def test_an_unknown_outcome_surfaces(inner: LocalDirectoryStorage) -> None:
    store = FaultyStorage(inner, FaultPlan(error=1.0))
    with pytest.raises(RemoteStorageError, match=r"create of 'log/0001'.*failed 30 times"):
        create_once(store, "log/0001", b"mine", FAST)
    assert inner.list("") == []
