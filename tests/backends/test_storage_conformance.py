"""One behavioural contract for every RemoteStorage backend, plus S3-only checks.

The engine is written against RemoteStorage alone, so every backend must behave
identically here: same errors, same listing order, same atomicity.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from common.errors import InvalidArgumentError, NotFoundError
from pageserver.api.status import status_of
from pageserver.remote import (
    LocalDirectoryStorage,
    RemoteStorage,
    RemoteStorageError,
    S3Storage,
    open_storage,
)
from pageserver.remote.faults import FaultyStorage
from tests.moto_server import dummy_aws_credentials

MakeS3 = Callable[[str, str], S3Storage]

INVALID_KEYS = [
    "",
    "/a",
    "a/",
    "a//b",
    ".",
    "..",
    "a/../b",
    "a/./b",
    "a\x00b",
    ".strata-tmp",
    "a/.strata-tmp123/b",
]


def _payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("size", [0, 1, 5 * 1024 * 1024], ids=["empty", "one-byte", "5MB"])
def test_put_get_roundtrip(storage: RemoteStorage, size: int) -> None:
    data = _payload(size)
    storage.put("tenants/t1/layers/l1", data)
    assert storage.get("tenants/t1/layers/l1") == data
    assert storage.size("tenants/t1/layers/l1") == size


def test_put_overwrites(storage: RemoteStorage) -> None:
    storage.put("k", b"first version, longer")
    storage.put("k", b"second")
    assert storage.get("k") == b"second"
    assert storage.size("k") == 6
    assert storage.list("") == ["k"]


def test_missing_object_raises_not_found(storage: RemoteStorage) -> None:
    storage.put("dir/present", b"x")
    for read in (storage.get, storage.size, lambda key: storage.get_range(key, 0, 1)):
        with pytest.raises(NotFoundError, match="dir/absent"):
            read("dir/absent")
    # A "directory" holding other objects is not an object either.
    with pytest.raises(NotFoundError):
        storage.get("dir")


def test_get_range(storage: RemoteStorage) -> None:
    data = bytes(range(256)) * 4
    storage.put("obj", data)
    assert storage.get_range("obj", 10, 20) == data[10:30]
    assert storage.get_range("obj", 0, len(data)) == data
    assert storage.get_range("obj", 1000, 100) == data[1000:]
    assert storage.get_range("obj", len(data) - 1, 1) == data[-1:]
    assert storage.get_range("obj", len(data), 10) == b""
    assert storage.get_range("obj", 5000, 10) == b""
    assert storage.get_range("obj", 10, 0) == b""
    storage.put("empty", b"")
    assert storage.get_range("empty", 0, 10) == b""
    with pytest.raises(InvalidArgumentError):
        storage.get_range("obj", -1, 10)
    with pytest.raises(InvalidArgumentError):
        storage.get_range("obj", 0, -1)


def test_list_prefix(storage: RemoteStorage) -> None:
    keys = ["a/b/1", "a/b/c/2", "a/bc/3", "a/bd", "b/1", "top", "a/b/c/1"]
    for key in random.Random(1).sample(keys, len(keys)):
        storage.put(key, key.encode())
    assert storage.list("") == sorted(keys)
    assert storage.list("a/b/") == ["a/b/1", "a/b/c/1", "a/b/c/2"]
    assert storage.list("a/b") == ["a/b/1", "a/b/c/1", "a/b/c/2", "a/bc/3", "a/bd"]
    assert storage.list("a/b/c") == ["a/b/c/1", "a/b/c/2"]
    assert storage.list("a/bd") == ["a/bd"]
    assert storage.list("t") == ["top"]
    assert storage.list("a/x/") == []
    assert storage.list("top/") == []
    assert storage.list("zzz") == []


def test_many_keys_list_and_delete_many(storage: RemoteStorage) -> None:
    """More keys than one S3 list page or DeleteObjects request holds."""
    keys = [f"many/{i:05d}" for i in range(1100)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: storage.put(key, b"."), keys))
    storage.put("other/keep", b"keep")
    assert storage.list("many/") == keys
    storage.delete_many(keys)
    assert storage.list("many/") == []
    assert storage.list("") == ["other/keep"]


def test_delete_is_idempotent(storage: RemoteStorage) -> None:
    storage.put("gone", b"x")
    storage.delete("gone")
    with pytest.raises(NotFoundError):
        storage.get("gone")
    storage.delete("gone")
    storage.delete("never/existed")
    assert storage.list("") == []


def test_delete_many(storage: RemoteStorage) -> None:
    for key in ("d/1", "d/2", "d/3"):
        storage.put(key, b"x")
    storage.delete_many(["d/1", "d/3", "d/missing"])
    assert storage.list("") == ["d/2"]
    storage.delete_many([])
    # Every key is checked before anything is deleted.
    with pytest.raises(InvalidArgumentError):
        storage.delete_many(["d/2", "../escape"])
    assert storage.list("") == ["d/2"]


def test_delete_prefix_removes_a_tenants_objects_only(storage: RemoteStorage) -> None:
    for tenant in ("a", "ab"):
        for key in ("manifest", "timelines/1/layer", "timelines/2/log/0001"):
            assert storage.put_if_absent(f"tenants/{tenant}/{key}", b"x")
    storage.delete_prefix("tenants/a/")
    assert storage.list("tenants/") == [
        "tenants/ab/manifest", "tenants/ab/timelines/1/layer", "tenants/ab/timelines/2/log/0001"]
    storage.delete_prefix("tenants/a/")  # nothing left: not an error
    assert storage.put_if_absent("tenants/a/manifest", b"again")  # the tenant can come back
    assert storage.get("tenants/a/manifest") == b"again"
    with pytest.raises(InvalidArgumentError):
        storage.delete_prefix("../escape/")


def test_put_if_absent(storage: RemoteStorage) -> None:
    assert storage.put_if_absent("lease", b"owner-1") is True
    assert storage.put_if_absent("lease", b"owner-2") is False
    assert storage.get("lease") == b"owner-1"
    storage.delete("lease")
    assert storage.put_if_absent("lease", b"owner-3") is True
    assert storage.get("lease") == b"owner-3"


def test_concurrent_put_if_absent_has_one_winner(storage: RemoteStorage) -> None:
    writers = 8
    barrier = threading.Barrier(writers)

    def race(i: int) -> bool:
        barrier.wait()
        return storage.put_if_absent("leases/leader", f"writer-{i}".encode())

    with ThreadPoolExecutor(max_workers=writers) as pool:
        results = list(pool.map(race, range(writers)))
    assert results.count(True) == 1
    assert storage.get("leases/leader") == f"writer-{results.index(True)}".encode()
    assert storage.list("leases/") == ["leases/leader"]


def test_readers_and_listers_never_see_partial_writes(storage: RemoteStorage) -> None:
    versions = [_payload(256 * 1024, seed) for seed in range(2)]
    storage.put("hot", versions[0])
    stop = threading.Event()

    def write() -> None:
        for i in range(20):
            storage.put("hot", versions[i % 2])
            storage.put_if_absent(f"cold/{i}", b"c")
        stop.set()

    def read() -> int:
        reads = 0
        while not stop.is_set():
            assert storage.get("hot") in versions
            assert set(storage.list("")) <= {"hot", *(f"cold/{i}" for i in range(20))}
            reads += 1
        return reads

    with ThreadPoolExecutor(max_workers=3) as pool:
        readers = [pool.submit(read) for _ in range(2)]
        pool.submit(write).result()
        assert all(r.result() >= 1 for r in readers)


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_rejected(storage: RemoteStorage, key: str) -> None:
    operations: list[Callable[[], Any]] = [
        lambda: storage.put(key, b"x"),
        lambda: storage.put_if_absent(key, b"x"),
        lambda: storage.get(key),
        lambda: storage.get_range(key, 0, 1),
        lambda: storage.size(key),
        lambda: storage.delete(key),
        lambda: storage.delete_many([key]),
    ]
    for operation in operations:
        with pytest.raises(InvalidArgumentError):
            operation()
    assert storage.list("") == []


@pytest.mark.parametrize("prefix", ["/a", "../", "a//", "a/../", "./"])
def test_invalid_list_prefixes_are_rejected(storage: RemoteStorage, prefix: str) -> None:
    with pytest.raises(InvalidArgumentError):
        storage.list(prefix)


def test_size(storage: RemoteStorage) -> None:
    storage.put("s/empty", b"")
    storage.put("s/ten", b"0123456789")
    assert storage.size("s/empty") == 0
    assert storage.size("s/ten") == 10


# --- S3 only ----------------------------------------------------------------------


@pytest.mark.s3
def test_s3_prefixes_isolate_stores(make_s3_storage: MakeS3, s3_bucket: str) -> None:
    a = make_s3_storage(s3_bucket, "tenant-a")
    b = make_s3_storage(s3_bucket, "tenant-b/")
    a.put("k", b"a")
    b.put("k", b"b")
    b.put("only-b", b"b")
    assert a.get("k") == b"a"
    assert b.get("k") == b"b"
    assert a.list("") == ["k"]
    assert b.list("") == ["k", "only-b"]
    with pytest.raises(NotFoundError):
        a.get("only-b")
    # "tenant" must not match "tenant-a/...": the prefix is a directory-like component.
    assert make_s3_storage(s3_bucket, "tenant").list("") == []
    assert make_s3_storage(s3_bucket, "").list("") == [
        "tenant-a/k",
        "tenant-b/k",
        "tenant-b/only-b",
    ]
    b.delete_many(["k", "only-b"])
    assert a.list("") == ["k"]


@pytest.mark.s3
def test_s3_ensure_bucket_is_idempotent(make_s3_storage: MakeS3, s3_bucket: str) -> None:
    storage = make_s3_storage(s3_bucket, "p")
    storage.put("k", b"v")
    storage.ensure_bucket()
    assert storage.get("k") == b"v"


@pytest.mark.s3
def test_s3_missing_bucket_is_an_error_not_a_missing_object(make_s3_storage: MakeS3) -> None:
    storage = make_s3_storage("strata-test-no-such-bucket", "")
    with pytest.raises(RemoteStorageError, match=r"get of 'k'.*NoSuchBucket"):
        storage.get("k")


@pytest.mark.s3
def test_s3_transient_errors_are_retried(
    make_s3_storage: MakeS3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = make_s3_storage(s3_bucket, "")
    storage.put("k", b"v")
    client = storage._client
    real_get_object = client.get_object
    failures = iter([_client_error("SlowDown", 503)])

    def flaky_get_object(**kwargs: Any) -> Any:
        error = next(failures, None)
        if error is not None:
            raise error
        return real_get_object(**kwargs)

    monkeypatch.setattr(client, "get_object", flaky_get_object)
    assert storage.get("k") == b"v"

    failures = iter([_client_error("AccessDenied", 403), _client_error("AccessDenied", 403)])
    with pytest.raises(RemoteStorageError, match=r"get of 'k'.*AccessDenied"):
        storage.get("k")
    assert next(failures, None) is not None, "a permanent error must not be retried"


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": code},
            "ResponseMetadata": {
                "RequestId": "test",
                "HostId": "test",
                "HTTPStatusCode": status,
                "HTTPHeaders": {},
                "RetryAttempts": 0,
            },
        },
        "GetObject",
    )


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port with no listener (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    yield port


@pytest.mark.s3
def test_s3_unreachable_endpoint_fails_fast(closed_port: int) -> None:
    with dummy_aws_credentials():
        storage = S3Storage(
            "bucket", endpoint_url=f"http://127.0.0.1:{closed_port}", max_attempts=2
        )
        with pytest.raises(RemoteStorageError, match="EndpointConnectionError") as info:
            storage.get("k")
    assert isinstance(info.value.__cause__, EndpointConnectionError)
    # its two attempts ended it, not the deadline (120 s) it would otherwise wait out
    assert "deadline" not in str(info.value)


# --- open_storage -----------------------------------------------------------------


def test_open_storage_local(tmp_path: Path) -> None:
    by_url = open_storage(f"file://{tmp_path}/store")
    assert isinstance(by_url, LocalDirectoryStorage)
    by_url.put("k", b"v")
    by_path = open_storage(str(tmp_path / "store"))
    assert by_path.describe() == f"local:{tmp_path}/store"
    assert by_path.get("k") == b"v"


def test_open_storage_s3() -> None:
    with dummy_aws_credentials():  # no stray AWS_ENDPOINT_URL or profile
        storage = open_storage("s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000")
        assert isinstance(storage, S3Storage)
        assert storage.describe() == "s3://bucket/some/prefix/ @ http://127.0.0.1:9000"
        assert open_storage("s3://bucket").describe().startswith("s3://bucket/ @ https://")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://host/x",
        "file://host/x",
        "file://",
        "s3://",
        "s3://bucket/../x",
        "s3://bucket/p?endpont=http://127.0.0.1:9000",
        "s3://bucket/p?endpoint=a&endpoint=b",
    ],
)
def test_open_storage_rejects_bad_urls(url: str) -> None:
    with pytest.raises(InvalidArgumentError):
        open_storage(url)


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A loopback port whose listener never accepts: connections complete (the kernel's
    backlog) and requests are sent, but no byte ever comes back."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        port: int = sock.getsockname()[1]
        yield port


@pytest.mark.s3
def test_s3_stalled_endpoint_fails_within_the_deadline(stalled_port: int) -> None:
    with dummy_aws_credentials():
        storage = S3Storage("bucket", endpoint_url=f"http://127.0.0.1:{stalled_port}",
                            max_attempts=5, deadline_s=1.0)
        for operation in (lambda: storage.get("k"), lambda: storage.put("k", b"v"),
                          lambda: storage.list("")):
            # Each read times out after the deadline (1 s) at the soonest: the deadline,
            # not the five attempts, ends the operation, whatever the machine's speed.
            with pytest.raises(RemoteStorageError,
                               match=r"ReadTimeoutError.*gave up after its deadline") as info:
                operation()
            assert status_of(info.value) is grpc.StatusCode.UNAVAILABLE  # which clients retry


def test_s3_deadline_must_be_positive() -> None:
    with pytest.raises(InvalidArgumentError, match="deadline_s must be positive"):
        S3Storage("bucket", deadline_s=0)


def test_local_path_names_the_object_only_where_it_can_be_read_in_place(
        storage: RemoteStorage) -> None:
    """The local store and the metrics wrapper name the file holding an object (layers
    are read in place); S3 and the fault injector, which must see every read, do not."""
    storage.put("t/layers/a", b"layer bytes")
    path = storage.local_path("t/layers/a")
    if isinstance(storage, S3Storage | FaultyStorage):
        assert path is None
    else:
        assert path is not None and path.read_bytes() == b"layer bytes"
    with pytest.raises(InvalidArgumentError):
        storage.local_path("/bad")
