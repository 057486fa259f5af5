"""Retrying object-store calls from the caller's side, and a create-if-absent that
resolves its ambiguous failures.

These are functions a caller picks per call, not a wrapper around the store: only
the caller knows which calls may simply be repeated and what an outcome it cannot
see means, and a wrapper would stack its attempts on S3Storage's own (five
attempts within 120 s each), multiplying them unseen. ``retrying`` suits idempotent
calls (put, get, list, delete, size) on any backend; S3Storage's own retries
cover a single request's transient failures, these cover a store that stays away
for longer or a backend without retries.

``put_if_absent`` is never repeated blindly: a lost response leaves the caller
not knowing whether its object was created, and a repeat then answers False
although it was. ``create_once`` settles it by reading the object back: it holds
the caller's bytes (True), someone else's (False) or nothing (try again). A
caller that must tell its own object from an equal one written by another makes
its bytes unique (a generation, an epoch, a writer id in them).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from common.errors import CorruptionError, InvalidArgumentError, NotFoundError
from pageserver.remote.base import RemoteStorage, RemoteStorageError

_log = logging.getLogger(__name__)

_T = TypeVar("_T")
_backoff_scale = 1.0  # every wait between retries is multiplied by it (``shortened_backoff``)


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries within ``deadline_s``, waiting between them a random
    time up to ``base_s * 2**(n-1)`` (capped at ``cap_s``) after the n-th failure."""

    attempts: int = 5
    base_s: float = 0.1
    cap_s: float = 5.0
    deadline_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise InvalidArgumentError(f"attempts must be at least 1, got {self.attempts}")
        if self.base_s < 0 or self.cap_s < 0 or self.deadline_s <= 0:
            raise InvalidArgumentError(
                "backoff times must not be negative and the deadline must be positive")

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after ``failures`` failures (full jitter)."""
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** (failures - 1))) \
            * _backoff_scale


@contextmanager
def shortened_backoff(scale: float) -> Iterator[None]:
    """Every wait between retries times ``scale`` (0 < scale <= 1) inside the block, in
    the whole process: for tests that inject thousands of store failures, whose waits
    proved nothing the retries did not (the attempts and deadlines stay as they are)."""
    global _backoff_scale
    if not 0 < scale <= 1:
        raise InvalidArgumentError(f"a backoff scale is in (0, 1], got {scale}")
    before, _backoff_scale = _backoff_scale, scale
    try:
        yield
    finally:
        _backoff_scale = before


def retrying(policy: RetryPolicy, what: str, call: Callable[[], _T],
             rng: random.Random | None = None) -> _T:
    """``call()``, repeated after a RemoteStorageError until it succeeds, ``policy.attempts``
    are used up or the next attempt would start past the deadline; then the last
    error is raised. Other errors (NotFoundError, InvalidArgumentError) pass at once."""
    rng = rng or random.Random()
    deadline = time.monotonic() + policy.deadline_s
    failures = 0
    while True:
        try:
            return call()
        except RemoteStorageError as e:
            failures += 1
            delay = policy.delay(failures, rng)
            if failures >= policy.attempts or time.monotonic() + delay >= deadline:
                raise RemoteStorageError(
                    f"{what} failed {failures} times, giving up: {e}") from e
            _log.warning("%s failed (%s), retry %d in %.2f s", what, e, failures, delay)
            time.sleep(delay)


def create_once(storage: RemoteStorage, key: str, data: bytes, policy: RetryPolicy,
                rng: random.Random | None = None) -> bool:
    """Create ``key`` holding ``data`` unless it exists: True if it now holds ``data``
    (this call or an earlier attempt of it created it), False if it holds other bytes.

    A failed or refused put_if_absent is settled by reading the object back; only
    when it is absent is the put tried again. A read-back that is a strict prefix
    of ``data`` counts as a cut-short read and is tried again. RemoteStorageError
    when the policy runs out before the outcome is known: the object may exist or not.
    """
    def attempt() -> bool:
        try:
            if storage.put_if_absent(key, data):
                return True
        except RemoteStorageError as e:
            ambiguous: RemoteStorageError | None = e
        else:
            ambiguous = None
        try:
            stored = storage.get(key)
        except NotFoundError:
            if ambiguous is None:  # refused, then deleted before the read: a fresh start
                raise RemoteStorageError(f"{key!r} was refused as present, then absent") \
                    from None
            raise ambiguous from None
        if len(stored) < len(data) and data.startswith(stored):
            raise RemoteStorageError(f"read back {len(stored)} of {len(data)} bytes of {key!r}")
        return stored == data

    return retrying(policy, f"create of {key!r} on {storage.describe()}", attempt, rng)


# One call of the engine's own: a few quick tries (S3Storage also retries inside each).
CALL_POLICY = RetryPolicy(attempts=4, base_s=0.05, cap_s=1.0, deadline_s=30.0)


def read_verified(storage: RemoteStorage, key: str, decode: Callable[[bytes], _T],
                  policy: RetryPolicy = CALL_POLICY) -> _T:
    """``decode(storage.get(key))``, read again after a store error or bytes that fail
    ``decode``'s verification (CorruptionError: a body cut short on its way counts as
    damage too). Once the attempts are used up, the last failure is raised: still
    damaged bytes as CorruptionError, a store error as RemoteStorageError. NotFoundError
    passes at once."""
    damage: list[CorruptionError | None] = []

    def attempt() -> _T:
        try:
            result = decode(storage.get(key))
        except CorruptionError as e:
            damage.append(e)
            raise RemoteStorageError(str(e)) from e
        except RemoteStorageError:
            damage.append(None)
            raise
        return result

    try:
        return retrying(policy, f"read of {key!r} on {storage.describe()}", attempt)
    except RemoteStorageError:
        last = damage[-1] if damage else None
        if last is not None:
            raise last from None
        raise
