"""Where a benchmark run keeps its objects: the embedded local directory, or S3.

``python -m bench --storage URL`` (or ``$STRATA_BENCH_STORAGE`` for one suite run on its
own) takes an S3 URL as the page server does, ``s3://bucket/prefix?endpoint=URL``, with
credentials from the usual ``AWS_*`` variables; every suite then puts its objects under
a fresh prefix of it. ``--storage moto`` starts a moto_server on loopback for the run
(the S3 API without a network). Unset, each suite uses a local directory in its own
temporary home: the embedded default.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pageserver.remote import S3Storage, open_storage

ENV = "STRATA_BENCH_STORAGE"
MOTO_BUCKET = "strata-bench"


def configured() -> str | None:
    """The S3 URL this run was given, or None for the local default."""
    url = os.environ.get(ENV) or None
    if url is not None and urlsplit(url).scheme != "s3":
        raise ValueError(f"the object store must be an s3:// URL (unset: local directories), "
                         f"not {url!r}")
    return url


def suite_store(suite: str, local: Path) -> str:
    """Where one suite's objects go: a fresh prefix of the configured S3 URL, or the
    local directory ``local`` (the embedded default)."""
    base = configured()
    if base is None:
        return str(local)
    parts = urlsplit(base)
    prefix = "/".join(part for part in (parts.path.strip("/"),
                                        f"{suite}-{uuid.uuid4().hex[:8]}") if part)
    return urlunsplit(("s3", parts.netloc, "/" + prefix, parts.query, ""))


def up_options(store: str) -> list[str]:
    """``strata up`` options that put the page server's objects at ``store``; none for a
    local directory, which ``strata up`` keeps in its home."""
    parts = urlsplit(store)
    if parts.scheme != "s3":
        return []
    options = ["--storage", "s3", "--s3-bucket", parts.netloc, "--s3-prefix",
               parts.path.strip("/")]
    endpoint = dict(parse_qsl(parts.query)).get("endpoint")
    return options + (["--s3-endpoint", endpoint] if endpoint else [])


def stored_bytes(url: str) -> int:
    """Bytes of every object under a storage URL or local directory."""
    storage = open_storage(url)
    return sum(storage.size(key) for key in storage.list(""))


def describe() -> str:
    """For reports: where this run's objects live."""
    url = configured()
    if url is None:
        return "local directory (embedded default)"
    return open_storage(url).describe()


@contextmanager
def moto_for_run() -> Iterator[str]:
    """A moto_server on loopback with an empty bucket, for the whole run; its S3 URL.
    Dummy AWS credentials are set in this process's environment, which suites inherit."""
    from tests.moto_server import MotoServer, dummy_aws_credentials  # the test tier's

    with dummy_aws_credentials(), MotoServer() as endpoint:
        S3Storage(MOTO_BUCKET, "", endpoint_url=endpoint).ensure_bucket()
        yield f"s3://{MOTO_BUCKET}/run?endpoint={endpoint}"
