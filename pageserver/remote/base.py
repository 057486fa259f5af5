"""The object-store interface every remote storage backend implements.

Layer files, indexes and checkpoints live in an object store addressed by keys:
'/'-separated relative strings such as ``tenants/t1/timelines/tl1/index.json``.
The rules below are checked by every backend so a key valid on one backend is valid
on all of them and data can move between them unchanged.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from pathlib import Path

from common.errors import InvalidArgumentError, StrataError

# Names starting with this are the local backend's in-flight writes; reserving them
# for every backend keeps the key space identical across backends.
RESERVED_SEGMENT_PREFIX = ".strata-tmp"


class RemoteStorageError(StrataError):
    """The object store failed an operation (I/O error, S3 error, unreachable endpoint)."""


def _check_segments(text: str, segments: list[str], what: str) -> None:
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidArgumentError(f"{what} {text!r}: empty, '.' or '..' path segment")
        if segment.startswith(RESERVED_SEGMENT_PREFIX):
            raise InvalidArgumentError(
                f"{what} {text!r}: segments starting with {RESERVED_SEGMENT_PREFIX!r} are reserved"
            )


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid object key, else raise InvalidArgumentError.

    A key is '/'-separated, relative (no leading '/'), without empty, '.' or '..'
    segments, without NUL characters and without reserved segment names.
    """
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"object key must be a non-empty string, got {key!r}")
    if "\x00" in key:
        raise InvalidArgumentError(f"object key {key!r} contains a NUL character")
    _check_segments(key, key.split("/"), "object key")
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if some valid key could start with it, else raise InvalidArgumentError.

    A prefix is a plain string prefix: ``"a/b"`` matches ``"a/b/c"`` and ``"a/bc"``,
    ``"a/b/"`` only the former. Its last (possibly partial or empty) segment is free;
    the complete ones follow the key rules.
    """
    if not isinstance(prefix, str):
        raise InvalidArgumentError(f"prefix must be a string, got {prefix!r}")
    if "\x00" in prefix:
        raise InvalidArgumentError(f"prefix {prefix!r} contains a NUL character")
    if prefix:
        _check_segments(prefix, prefix.split("/")[:-1], "prefix")
    return prefix


def check_range(start: int, length: int) -> None:
    """Reject a negative start or length of a ranged read."""
    if start < 0 or length < 0:
        raise InvalidArgumentError(f"invalid byte range: start={start}, length={length}")


class RemoteStorage(abc.ABC):
    """A flat key -> bytes object store with atomic writes.

    Objects are written whole and atomically: a reader sees the previous object or
    the new one, never a mix. Missing objects raise NotFoundError, invalid keys
    InvalidArgumentError and backend failures RemoteStorageError. Implementations
    are safe to share between threads.
    """

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Create or replace the object ``key`` atomically and durably."""

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist; False if it already did.

        Atomic against concurrent writers: of several racing callers exactly one
        gets True. This is what leases and "first writer wins" records rely on.
        """

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The whole object; NotFoundError if it does not exist."""

    @abc.abstractmethod
    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)`` of the object, cut short at its end.

        Returns b"" when ``start`` is at or beyond the end; NotFoundError if the
        object does not exist.
        """

    @abc.abstractmethod
    def list(self, prefix: str) -> list[str]:
        """All keys starting with the string ``prefix`` ("" for all), sorted."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every object in ``keys``; missing ones are ignored.

        Every key is checked before anything is deleted. Backends with a batch
        delete call override this.
        """
        for key in [check_key(key) for key in keys]:
            self.delete(key)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under ``prefix`` (a tenant's, say) and whatever the store
        keeps beside them: nothing for a bucket; the local store's create journal of a
        tenant and the directories left empty."""
        self.delete_many(self.list(check_prefix(prefix)))

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """The object's length in bytes; NotFoundError if it does not exist."""

    def local_path(self, key: str) -> Path | None:
        """The file holding ``key`` on this machine, if objects are local files that can be
        read in place (immutable objects only: layers); None for remote stores and for
        wrappers that must see every read."""
        check_key(key)
        return None

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the objects live, for logs: ``local:/path`` or ``s3://bucket/prefix @ url``."""
