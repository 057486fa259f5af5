"""``retrying``: bounded attempts, jittered exponential backoff, an overall deadline,
and only store failures retried."""

from __future__ import annotations

import random

import pytest

from common.errors import InvalidArgumentError, NotFoundError
from pageserver.remote import RemoteStorageError, retry
from pageserver.remote.retry import RetryPolicy, retrying, shortened_backoff

FAST = RetryPolicy(attempts=4, base_s=0.001, cap_s=0.002, deadline_s=5.0)


class Flaky:
    """Fails with ``error`` the first ``failures`` calls, then answers "done"."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or RemoteStorageError("store away")
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def test_store_failures_are_retried_until_a_call_succeeds() -> None:
    call = Flaky(3)
    assert retrying(FAST, "get of 'k'", call) == "done"
    assert call.calls == 4


def test_attempts_are_bounded_and_the_last_error_raised() -> None:
    call = Flaky(10)
    with pytest.raises(RemoteStorageError, match=r"get of 'k' failed 4 times.*store away"):
        retrying(FAST, "get of 'k'", call)
    assert call.calls == 4


@pytest.mark.parametrize("error", [NotFoundError("no such key"), InvalidArgumentError("bad")])
def test_other_errors_are_not_retried(error: Exception) -> None:
    call = Flaky(1, error)
    with pytest.raises(type(error)):
        retrying(FAST, "get", call)
    assert call.calls == 1


class Clock:
    """Time that passes only by ``sleep``: what the deadline is held to, whatever else
    the machine is doing."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_deadline_bounds_the_whole_call(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = RetryPolicy(attempts=1000, base_s=0.05, cap_s=0.05, deadline_s=0.3)
    call = Flaky(1000)
    clock = Clock()
    monkeypatch.setattr(retry, "time", clock)
    with pytest.raises(RemoteStorageError, match="giving up"):
        retrying(policy, "put", call, random.Random(1))
    assert clock.now < 0.3  # no wait ran past the deadline
    assert 3 <= call.calls < 1000  # the deadline ended it, not the attempts


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter() -> None:
    policy = RetryPolicy(base_s=0.1, cap_s=1.0)
    rng = random.Random(4)
    for failures, bound in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = [policy.delay(failures, rng) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound * 0.9 and min(delays) < bound * 0.1


@pytest.mark.parametrize("bad", [dict(attempts=0), dict(base_s=-1.0), dict(deadline_s=0.0)])
def test_a_policy_must_make_sense(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidArgumentError):
        RetryPolicy(**bad)  # type: ignore[arg-type]


def test_a_shortened_backoff_scales_every_wait_inside_its_block_only() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=1.0)
    with shortened_backoff(0.01):
        assert max(policy.delay(1, random.Random(n)) for n in range(50)) <= 0.01
    assert max(policy.delay(1, random.Random(n)) for n in range(50)) > 0.5
    for bad in (0.0, 1.5):
        with pytest.raises(InvalidArgumentError), shortened_backoff(bad):
            pass
