"""A misbehaving object store for tests and drills: ``FaultyStorage`` injects faults
into the calls it passes on, by a seeded random plan.

Fault kinds, each with its own probability per call (at most one of the last four
happens to a call; latency comes on top of any of them):

- ``latency``: sleep, then run the call.
- ``error``: RemoteStorageError before the call (a 5xx, a reset connection); nothing applied.
- ``throttle``: RemoteStorageError saying SlowDown before the call; nothing applied.
- ``timeout``: sleep, then RemoteStorageError; the call was applied or not, at random.
- ``torn``: the response is lost. A write (put, put_if_absent, delete, delete_many) is
  applied, then RemoteStorageError is raised, so a retried put_if_absent finds the
  object and returns False. A read (get, get_range) returns a body cut short or
  raises; list and size raise.

A plan is written as comma-separated ``name=value`` items (the ``pageserver``
setting ``storage_faults``, flag ``--storage-faults``)::

    seed=7,error=0.05,throttle=0.01,timeout=0.01:0.2,torn=0.02,latency=0.1:0.005,ops=put+get

``seed`` is an integer (default 0); ``error``, ``throttle`` and ``torn`` take a
probability; ``latency`` and ``timeout`` a probability and, after ``:``, the
seconds slept (``0.005``, or a duration such as ``2s``); ``ops`` the operations
faults apply to, joined by ``+`` (default all). Each item at most once.

Given a seed, the faults fall on the same calls in the same order, when the calls
come in the same order (one thread, or threads that take turns). Faults apply only
while ``enabled``; every injected fault is counted by kind and operation.
"""

from __future__ import annotations

import builtins
import collections
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from common.durations import parse_duration
from common.errors import InvalidArgumentError
from pageserver.remote.base import (
    RemoteStorage,
    RemoteStorageError,
    check_key,
    check_prefix,
    check_range,
)
from pageserver.remote.forwarding import ForwardingStorage

_T = TypeVar("_T")

WRITES = frozenset({"put", "put_if_absent", "delete", "delete_many"})
OPERATIONS = WRITES | {"get", "get_range", "list", "size"}
KINDS = ("latency", "error", "throttle", "timeout", "torn")


@dataclass(frozen=True)
class FaultPlan:
    """How often each fault happens and to which operations; see the module docstring."""

    seed: int = 0
    error: float = 0.0
    throttle: float = 0.0
    timeout: float = 0.0
    torn: float = 0.0
    latency: float = 0.0
    latency_s: float = 0.0
    timeout_s: float = 0.0
    ops: frozenset[str] = field(default=OPERATIONS)

    def __post_init__(self) -> None:
        for name in ("error", "throttle", "timeout", "torn", "latency"):
            probability = getattr(self, name)
            if not 0.0 <= probability <= 1.0:
                raise InvalidArgumentError(
                    f"storage faults: {name} must be a probability in [0, 1], got {probability}")
        if self.error + self.throttle + self.timeout + self.torn > 1.0:
            raise InvalidArgumentError(
                "storage faults: error + throttle + timeout + torn must not exceed 1")
        if self.latency_s < 0 or self.timeout_s < 0:
            raise InvalidArgumentError("storage faults: sleeps must not be negative")
        unknown = sorted(self.ops - OPERATIONS)
        if unknown or not self.ops:
            raise InvalidArgumentError(
                f"storage faults: ops must name some of {sorted(OPERATIONS)}, got {unknown}")

    def describe(self) -> str:
        """The plan in the grammar ``parse_fault_plan`` reads, without defaults."""
        items = [f"seed={self.seed}"]
        for name in ("error", "throttle", "torn"):
            if getattr(self, name):
                items.append(f"{name}={getattr(self, name):g}")
        if self.timeout:
            items.append(f"timeout={self.timeout:g}:{self.timeout_s:g}")
        if self.latency:
            items.append(f"latency={self.latency:g}:{self.latency_s:g}")
        if self.ops != OPERATIONS:
            items.append("ops=" + "+".join(sorted(self.ops)))
        return ",".join(items)


_PROBABILITIES = frozenset({"error", "throttle", "torn"})
_SLEEPS = frozenset({"latency", "timeout"})
_NAMES = _PROBABILITIES | _SLEEPS | {"seed", "ops"}


def _probability(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidArgumentError(
            f"storage faults: {name} wants a probability, got {text!r}") from None


def parse_fault_plan(text: str) -> FaultPlan:
    """The plan ``text`` describes (see the module docstring); InvalidArgumentError if bad."""
    values: dict[str, object] = {}
    for item in text.split(","):
        name, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not name or not value:
            raise InvalidArgumentError(
                f"storage faults: {item.strip()!r} is not name=value in {text!r}")
        if name not in _NAMES:
            raise InvalidArgumentError(
                f"storage faults: unknown item {name!r}; known: {', '.join(sorted(_NAMES))}")
        if name in values:
            raise InvalidArgumentError(f"storage faults: {name!r} given twice in {text!r}")
        if name == "seed":
            try:
                values[name] = int(value)
            except ValueError:
                raise InvalidArgumentError(
                    f"storage faults: seed wants an integer, got {value!r}") from None
        elif name == "ops":
            values[name] = frozenset(value.split("+"))
        elif name in _PROBABILITIES:
            values[name] = _probability(name, value)
        else:
            probability, colon, seconds = value.partition(":")
            if not colon:
                raise InvalidArgumentError(
                    f"storage faults: {name} wants PROBABILITY:SECONDS, got {value!r}")
            values[name] = _probability(name, probability)
            try:
                values[f"{name}_s"] = parse_duration(seconds)
            except ValueError as e:
                raise InvalidArgumentError(f"storage faults: {name} sleep: {e}") from None
    return FaultPlan(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Draw:
    """What happens to one call: decided up front, under the lock, from the plan's RNG."""

    latency: bool
    fault: str  # "" for none, else one of error, throttle, timeout, torn
    applied: bool  # a timeout: whether the call went through
    cut: float  # a torn read: which fraction of the body comes back (0: an error instead)


class FaultyStorage(ForwardingStorage):
    """Passes calls on to ``inner``, injecting the faults of ``plan`` while ``enabled``.

    Keys, prefixes and ranges are checked first, as every backend does before a
    request, so a bad argument is InvalidArgumentError with faults or without.
    """

    def __init__(self, inner: RemoteStorage, plan: FaultPlan, enabled: bool = True) -> None:
        super().__init__(inner)
        self.plan = plan
        self.enabled = enabled
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self._injected: collections.Counter[tuple[str, str]] = collections.Counter()

    def reseed(self, seed: int) -> None:
        """Start the plan's random sequence afresh from ``seed`` (a test's own seed)."""
        with self._lock:
            self._rng.seed(seed)

    def injected(self) -> dict[tuple[str, str], int]:
        """How many faults were injected, by ``(kind, operation)``."""
        with self._lock:
            return dict(self._injected)

    def injected_total(self, kind: str) -> int:
        """How many faults of ``kind`` were injected, over all operations."""
        with self._lock:
            return sum(n for (k, _), n in self._injected.items() if k == kind)

    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        self._call("put", key, lambda: self._inner.put(key, data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        check_key(key)
        return self._call("put_if_absent", key, lambda: self._inner.put_if_absent(key, data))

    def get(self, key: str) -> bytes:
        check_key(key)
        return self._call("get", key, lambda: self._inner.get(key))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_key(key)
        check_range(start, length)
        return self._call("get_range", key, lambda: self._inner.get_range(key, start, length))

    def list(self, prefix: str) -> builtins.list[str]:
        check_prefix(prefix)
        return self._call("list", prefix, lambda: self._inner.list(prefix))

    def delete(self, key: str) -> None:
        check_key(key)
        self._call("delete", key, lambda: self._inner.delete(key))

    def delete_many(self, keys: Iterable[str]) -> None:
        checked = [check_key(key) for key in keys]
        what = f"{len(checked)} keys from {checked[0]!r}" if checked else "no keys"
        self._call("delete_many", what, lambda: self._inner.delete_many(checked))

    def size(self, key: str) -> int:
        check_key(key)
        return self._call("size", key, lambda: self._inner.size(key))

    def describe(self) -> str:
        return f"{self._inner.describe()} with faults {self.plan.describe()}"

    def _draw(self, operation: str) -> _Draw | None:
        with self._lock:
            if not self.enabled or operation not in self.plan.ops:
                return None
            rng = self._rng
            # Always four numbers a call, so one call's outcome never shifts the next's.
            latency, pick, applied, cut = rng.random(), rng.random(), rng.random(), rng.random()
            draw = _Draw(latency < self.plan.latency, self._fault(pick), applied < 0.5, cut)
            if draw.latency:
                self._injected["latency", operation] += 1
            if draw.fault:
                self._injected[draw.fault, operation] += 1
            return draw

    def _fault(self, pick: float) -> str:
        bound = 0.0
        for kind in ("error", "throttle", "timeout", "torn"):
            bound += getattr(self.plan, kind)
            if pick < bound:
                return kind
        return ""

    def _call(self, operation: str, what: str, call: Callable[[], _T]) -> _T:
        draw = self._draw(operation)
        if draw is None:
            return call()
        if draw.latency:
            time.sleep(self.plan.latency_s)
        where = f"{operation} of {what!r} on {self._inner.describe()}"
        if draw.fault == "error":
            raise RemoteStorageError(f"injected error: {where} failed (connection reset)")
        if draw.fault == "throttle":
            raise RemoteStorageError(
                f"injected throttling: {where} failed (SlowDown: reduce your request rate)")
        if draw.fault == "timeout":
            time.sleep(self.plan.timeout_s)
            if draw.applied:
                call()
            raise RemoteStorageError(f"injected timeout: {where} timed out"
                                     f" ({'applied' if draw.applied else 'not applied'})")
        if draw.fault == "torn":
            result = call()
            # Only get and get_range answer bytes: half their torn calls come back short.
            if isinstance(result, bytes) and result and draw.cut >= 0.5:
                return result[:int(len(result) * draw.cut)]  # type: ignore[return-value]
            raise RemoteStorageError(f"injected torn response: {where} lost its response"
                                     f"{' (applied)' if operation in WRITES else ''}")
        return call()
