"""The ``storage`` fixture: each conformance test runs once per backend, and once
through the metrics wrapper and once through the fault injector with every fault at
probability 0, each of which must behave exactly like the store it wraps.

The S3 variant talks to one ``moto_server`` subprocess per session, in a fresh
bucket per test so tests never see each other's objects.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pageserver.metrics import InstrumentedStorage, Metrics
from pageserver.remote import LocalDirectoryStorage, RemoteStorage, S3Storage
from pageserver.remote.faults import FaultPlan, FaultyStorage


@pytest.fixture(params=["local", "instrumented", "faulty",
                        pytest.param("s3", marks=pytest.mark.s3)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> RemoteStorage:
    """An empty store of each backend; S3 under a key prefix, to exercise prefixing."""
    if request.param == "local":
        return LocalDirectoryStorage(tmp_path / "remote")
    if request.param == "instrumented":
        return InstrumentedStorage(LocalDirectoryStorage(tmp_path / "remote"), Metrics())
    if request.param == "faulty":
        return FaultyStorage(LocalDirectoryStorage(tmp_path / "remote"), FaultPlan(seed=1))
    make: Callable[[str, str], S3Storage] = request.getfixturevalue("make_s3_storage")
    bucket: str = request.getfixturevalue("s3_bucket")
    return make(bucket, "conformance")
