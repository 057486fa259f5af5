"""A RemoteStorage that passes every call on to another one, for wrappers to build on."""

from __future__ import annotations

from collections.abc import Iterable

from pageserver.remote.base import RemoteStorage


class ForwardingStorage(RemoteStorage):
    """Forwards every call to ``inner``; a wrapper overrides only the calls it watches.

    ``local_path`` is the exception: it says None (no object read in place) unless a
    wrapper forwards it, so a wrapper that watches reads sees every one of them."""

    def __init__(self, inner: RemoteStorage) -> None:
        self._inner = inner

    def put(self, key: str, data: bytes) -> None:
        self._inner.put(key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._inner.put_if_absent(key, data)

    def get(self, key: str) -> bytes:
        return self._inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self._inner.get_range(key, start, length)

    def list(self, prefix: str) -> list[str]:
        return self._inner.list(prefix)

    def delete(self, key: str) -> None:
        self._inner.delete(key)

    def delete_many(self, keys: Iterable[str]) -> None:
        self._inner.delete_many(keys)

    def delete_prefix(self, prefix: str) -> None:
        self._inner.delete_prefix(prefix)

    def size(self, key: str) -> int:
        return self._inner.size(key)

    def describe(self) -> str:
        return self._inner.describe()
