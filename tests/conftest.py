"""Fixtures shared by every test tier: a moto S3 server on loopback and buckets in it,
and small disks that fill up."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pageserver.remote import S3Storage
from tests.moto_server import MotoServer, dummy_aws_credentials
from tests.small_disk import mounted


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


@pytest.fixture
def small_disk() -> Iterator[Callable[[Path, int], Path]]:
    """Mounts a tmpfs of the given bytes at a path (see tests/small_disk.py), for a state
    dir that really runs out of space; unmounted after the test."""
    with contextlib.ExitStack() as mounts:
        yield lambda path, size_bytes: mounts.enter_context(mounted(path, size_bytes))
