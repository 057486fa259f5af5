"""Remote storage in an S3 bucket: AWS S3 or a compatible server (MinIO, moto).

Credentials come from the standard AWS chain (environment, shared files, instance
role), never from arguments, so they stay out of configuration files and logs.
"""

from __future__ import annotations

import builtins
import functools
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from common.errors import InvalidArgumentError, NotFoundError
from pageserver.remote.base import (
    RemoteStorage,
    RemoteStorageError,
    check_key,
    check_prefix,
    check_range,
)

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

# DeleteObjects takes at most this many keys per request.
_DELETE_BATCH = 1000

# Retries are ours alone (botocore sends each request once), so that one deadline bounds
# an operation whole; they also cover failures botocore leaves to the caller, such as a
# body stream breaking mid-read.
_BACKOFF_BASE = 0.2  # seconds before the first retry, at most (full jitter)
_BACKOFF_CAP = 5.0
DEADLINE_S = 120.0  # an operation, its retries included, gives up after this
_CONNECT_TIMEOUT_S = 5.0  # per request; never beyond the deadline
_READ_TIMEOUT_S = 30.0  # per socket read of a request; never beyond the deadline

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        # A conditional write raced another request on the key; S3 asks to retry.
        "ConditionalRequestConflict",
    }
)
_TRANSIENT_EXCEPTIONS = (
    BotoConnectionError,
    HTTPClientError,
    IncompleteReadError,
    FlexibleChecksumError,
)


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "Unknown")


def _http_status(error: ClientError) -> int:
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


def _is_transient(error: ClientError) -> bool:
    status = _http_status(error)
    return status >= 500 or status == 429 or _error_code(error) in _TRANSIENT_CODES


def _normalise_prefix(prefix: str) -> str:
    """``"a/b"`` or ``"a/b/"`` -> ``"a/b/"``; ``""`` stays ``""`` (the whole bucket)."""
    stripped = prefix.removesuffix("/")
    if not stripped:
        return ""
    try:
        return check_key(stripped) + "/"
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"invalid S3 prefix {prefix!r}: {e}") from e


class S3Storage(RemoteStorage):
    """Objects under ``prefix`` in ``bucket``, through a thread-safe boto3 client.

    ``max_attempts`` bounds the attempts of an operation (1: no retry), and
    ``deadline_s`` its time: no attempt starts after it, and each request's connect
    and read timeouts are at most it, so an operation on an endpoint that stalls
    fails (RemoteStorageError, retryable) within about twice ``deadline_s``.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        max_attempts: int = 5,
        deadline_s: float = DEADLINE_S,
    ) -> None:
        if not bucket:
            raise InvalidArgumentError("S3 bucket name must not be empty")
        if max_attempts < 1:
            raise InvalidArgumentError(f"max_attempts must be at least 1, got {max_attempts}")
        if deadline_s <= 0:
            raise InvalidArgumentError(f"deadline_s must be positive, got {deadline_s}")
        self._bucket = bucket
        self._prefix = _normalise_prefix(prefix)
        self._attempts = max_attempts
        self._deadline_s = deadline_s
        config = Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=min(_CONNECT_TIMEOUT_S, deadline_s),
            read_timeout=min(_READ_TIMEOUT_S, deadline_s),
            # Layer uploads and downloads run from thread pools.
            max_pool_connections=32,
        )
        # A private session: boto3's default session is not thread-safe. The client
        # is Any because the S3 stubs (boto3-stubs[s3]) are optional.
        self._client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )

    def put(self, key: str, data: bytes) -> None:
        full = self._full_key(key)
        self._retrying(
            "put",
            key,
            lambda: self._client.put_object(Bucket=self._bucket, Key=full, Body=data),
        )

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` unless it exists, via a conditional PutObject.

        If a response is lost and the write retried, the retry finds the object and
        this returns False although this call created it.
        """
        full = self._full_key(key)

        def attempt() -> bool:
            try:
                self._client.put_object(Bucket=self._bucket, Key=full, Body=data, IfNoneMatch="*")
            except ClientError as e:
                if _error_code(e) == "PreconditionFailed" or _http_status(e) == 412:
                    return False
                raise
            return True

        return self._retrying("put_if_absent", key, attempt)

    def get(self, key: str) -> bytes:
        full = self._full_key(key)

        def attempt() -> bytes:
            response = self._client.get_object(Bucket=self._bucket, Key=full)
            data: bytes = response["Body"].read()
            return data

        return self._retrying("get", key, attempt)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        full = self._full_key(key)
        if length == 0:  # HTTP cannot express an empty range; still report a missing key
            self.size(key)
            return b""

        def attempt() -> bytes:
            try:
                response = self._client.get_object(
                    Bucket=self._bucket, Key=full, Range=f"bytes={start}-{start + length - 1}"
                )
            except ClientError as e:
                if _error_code(e) == "InvalidRange":  # start at or past the end
                    return b""
                raise
            data: bytes = response["Body"].read()
            return data

        return self._retrying("get_range", key, attempt)

    def list(self, prefix: str) -> builtins.list[str]:
        full_prefix = self._prefix + check_prefix(prefix)

        def attempt() -> builtins.list[str]:
            keys: builtins.list[str] = []
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=full_prefix
            )
            for page in pages:
                keys.extend(obj["Key"][len(self._prefix) :] for obj in page.get("Contents", []))
            keys.sort()
            return keys

        return self._retrying("list", prefix, attempt)

    def delete(self, key: str) -> None:
        full = self._full_key(key)
        self._retrying(
            "delete", key, lambda: self._client.delete_object(Bucket=self._bucket, Key=full)
        )

    def delete_many(self, keys: Iterable[str]) -> None:
        """Delete with DeleteObjects, 1000 keys per request; all keys are checked first."""
        full_keys = [self._full_key(key) for key in keys]
        for i in range(0, len(full_keys), _DELETE_BATCH):
            batch = full_keys[i : i + _DELETE_BATCH]
            self._retrying(
                "delete_many",
                batch[0].removeprefix(self._prefix),
                functools.partial(self._delete_batch, batch),
            )

    def size(self, key: str) -> int:
        full = self._full_key(key)

        def attempt() -> int:
            length: int = self._client.head_object(Bucket=self._bucket, Key=full)["ContentLength"]
            return length

        return self._retrying("size", key, attempt)

    def describe(self) -> str:
        return f"s3://{self._bucket}/{self._prefix} @ {self._client.meta.endpoint_url}"

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (tests, and ``strata up`` on a fresh server)."""

        def attempt() -> None:
            try:
                self._client.head_bucket(Bucket=self._bucket)
                return
            except ClientError as e:
                if _error_code(e) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
            region = self._client.meta.region_name
            location = (
                {"CreateBucketConfiguration": {"LocationConstraint": region}}
                if region and region != "us-east-1"
                else {}
            )
            try:
                self._client.create_bucket(Bucket=self._bucket, **location)
            except ClientError as e:
                if _error_code(e) != "BucketAlreadyOwnedByYou":  # a concurrent creator won
                    raise

        self._retrying("ensure_bucket", self._bucket, attempt)

    def _full_key(self, key: str) -> str:
        return self._prefix + check_key(key)

    def _delete_batch(self, full_keys: builtins.list[str]) -> None:
        response = self._client.delete_objects(
            Bucket=self._bucket,
            Delete={"Objects": [{"Key": k} for k in full_keys], "Quiet": True},
        )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise RemoteStorageError(
                f"S3 delete_many on {self.describe()} failed for {len(errors)} of "
                f"{len(full_keys)} keys, first {first.get('Key')!r}: "
                f"{first.get('Code')}: {first.get('Message')}"
            )

    def _retrying(self, operation: str, key: str, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt``, retrying transient failures with jittered exponential backoff
        until ``max_attempts`` or the deadline runs out.

        Maps a missing object to NotFoundError and every other failure to
        RemoteStorageError naming the operation, the key and the S3 error code.
        """
        deadline = time.monotonic() + self._deadline_s
        failures = 0
        error: Exception
        while True:
            try:
                return attempt()
            except ClientError as e:
                code = _error_code(e)
                if code in _NOT_FOUND_CODES:
                    raise NotFoundError(f"object not found: {key!r} in {self.describe()}") from e
                if not _is_transient(e) or failures + 1 >= self._attempts:
                    raise self._error(operation, key, code, e) from e
                error, reason = e, code
            except _TRANSIENT_EXCEPTIONS as e:
                if failures + 1 >= self._attempts:
                    raise self._error(operation, key, type(e).__name__, e) from e
                error, reason = e, type(e).__name__
            except BotoCoreError as e:
                raise self._error(operation, key, type(e).__name__, e) from e
            failures += 1
            delay = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (failures - 1)))
            if time.monotonic() + delay >= deadline:
                raise self._error(operation, key, reason, error,
                                  f"; gave up after its deadline of {self._deadline_s:g} s") \
                    from error
            _log.warning(
                "S3 %s of %r on %s failed (%s), retry %d in %.2f s",
                operation,
                key,
                self.describe(),
                error,
                failures,
                delay,
            )
            time.sleep(delay)

    def _error(self, operation: str, key: str, code: str, error: Exception,
               note: str = "") -> RemoteStorageError:
        return RemoteStorageError(
            f"S3 {operation} of {key!r} on {self.describe()} failed ({code}): {error}{note}"
        )
