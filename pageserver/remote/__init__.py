"""Remote object storage, where layer files and indexes are kept durably.

``open_storage(url)`` picks the backend from a URL, so configuration and the CLI
name a store with a single string.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from common.errors import InvalidArgumentError
from pageserver.remote.base import RemoteStorage, RemoteStorageError
from pageserver.remote.forwarding import ForwardingStorage
from pageserver.remote.local import LocalDirectoryStorage
from pageserver.remote.s3 import S3Storage

__all__ = [
    "ForwardingStorage",
    "LocalDirectoryStorage",
    "RemoteStorage",
    "RemoteStorageError",
    "S3Storage",
    "open_storage",
]

_S3_PARAMETERS = frozenset({"endpoint", "region"})


def open_storage(url: str) -> RemoteStorage:
    """The storage a URL names.

    ``file:///abs/path`` or a plain path: a local directory (created if missing).
    ``s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1``: an S3
    bucket, with prefix, endpoint and region optional.
    """
    if not url:
        raise InvalidArgumentError("storage URL must not be empty")
    if "://" not in url:
        return LocalDirectoryStorage(Path(url))
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path or parts.query or parts.fragment:
            raise InvalidArgumentError(f"file storage URL must be file:///absolute/path: {url!r}")
        return LocalDirectoryStorage(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc or parts.fragment:
            raise InvalidArgumentError(f"S3 storage URL must be s3://bucket/prefix: {url!r}")
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names) or not _S3_PARAMETERS.issuperset(names):
            raise InvalidArgumentError(
                f"S3 storage URL accepts each of {sorted(_S3_PARAMETERS)} at most once: {url!r}"
            )
        params = dict(pairs)
        return S3Storage(
            parts.netloc,
            unquote(parts.path.removeprefix("/")),
            endpoint_url=params.get("endpoint") or None,
            region=params.get("region") or None,
        )
    raise InvalidArgumentError(f"unsupported storage URL {url!r}: use file://, s3:// or a path")
