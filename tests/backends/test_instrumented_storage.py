"""InstrumentedStorage counts the bytes and failures of writes, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from pageserver.metrics import InstrumentedStorage, Metrics
from pageserver.remote import LocalDirectoryStorage, RemoteStorageError


def _sample(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None
    return value


def test_writes_are_counted_reads_are_not(tmp_path: Path) -> None:
    metrics = Metrics()
    storage = InstrumentedStorage(LocalDirectoryStorage(tmp_path), metrics)
    storage.put("a/b", b"12345")
    assert storage.put_if_absent("a/c", b"123")
    assert not storage.put_if_absent("a/c", b"1234567")  # refused, still sent
    assert storage.get("a/b") == b"12345"
    assert storage.list("a/") == ["a/b", "a/c"]
    assert _sample(metrics, "strata_upload_bytes_total") == 5 + 3 + 7
    assert _sample(metrics, "strata_upload_errors_total") == 0


def test_failed_writes_are_counted_as_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = Metrics()
    inner = LocalDirectoryStorage(tmp_path)

    def fail(key: str, data: bytes) -> None:
        raise RemoteStorageError("store down")

    monkeypatch.setattr(inner, "put", fail)
    storage = InstrumentedStorage(inner, metrics)
    with pytest.raises(RemoteStorageError):
        storage.put("a/b", b"12345")
    assert _sample(metrics, "strata_upload_bytes_total") == 0
    assert _sample(metrics, "strata_upload_errors_total") == 1
