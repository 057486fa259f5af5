"""The ``storage`` fixture: each conformance test runs once per backend.

The S3 variant talks to one ``moto_server`` subprocess per session, in a fresh
bucket per test so tests never see each other's objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pageserver.remote import LocalDirectoryStorage, RemoteStorage, S3Storage
from tests.moto_server import MotoServer, dummy_aws_credentials


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on loopback, shared by the session."""
    with MotoServer() as endpoint_url:
        yield endpoint_url


@pytest.fixture
def make_s3_storage(moto_endpoint: str) -> Iterator[Callable[[str, str], S3Storage]]:
    """A factory of S3Storage(bucket, prefix) against moto, with fake credentials."""

    def make(bucket: str, prefix: str) -> S3Storage:
        return S3Storage(bucket, prefix, endpoint_url=moto_endpoint, max_attempts=2)

    with dummy_aws_credentials():
        yield make


@pytest.fixture
def s3_bucket(make_s3_storage: Callable[[str, str], S3Storage]) -> str:
    """A new, empty, uniquely named bucket."""
    bucket = f"strata-test-{uuid.uuid4().hex[:20]}"
    make_s3_storage(bucket, "").ensure_bucket()
    return bucket


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> RemoteStorage:
    """An empty store of each backend; S3 under a key prefix, to exercise prefixing."""
    if request.param == "local":
        return LocalDirectoryStorage(tmp_path / "remote")
    make: Callable[[str, str], S3Storage] = request.getfixturevalue("make_s3_storage")
    bucket: str = request.getfixturevalue("s3_bucket")
    return make(bucket, "conformance")
