"""FaultyStorage injects each kind of fault with the effect it promises (applied or
not), only where and while it is asked to, the same way again for the same seed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from common.errors import InvalidArgumentError, NotFoundError
from pageserver.main import settings_from
from pageserver.metrics import Metrics
from pageserver.remote import LocalDirectoryStorage, RemoteStorageError
from pageserver.remote.faults import FaultPlan, FaultyStorage

CALLS = 200


@pytest.fixture
def inner(tmp_path: Path) -> LocalDirectoryStorage:
    return LocalDirectoryStorage(tmp_path / "remote")


def _faulty(inner: LocalDirectoryStorage, **plan: object) -> FaultyStorage:
    return FaultyStorage(inner, FaultPlan(**plan))  # type: ignore[arg-type]


def _fails(call: Callable[[], object], match: str = "injected") -> None:
    with pytest.raises(RemoteStorageError, match=match):
        call()


@pytest.mark.parametrize("kind", ["error", "throttle"])
def test_errors_before_the_call_apply_nothing(inner: LocalDirectoryStorage, kind: str) -> None:
    inner.put("old", b"o")
    store = _faulty(inner, **{kind: 1.0})
    _fails(lambda: store.put("new", b"n"), "SlowDown" if kind == "throttle" else "reset")
    _fails(lambda: store.put_if_absent("new", b"n"))
    _fails(lambda: store.delete("old"))
    _fails(lambda: store.delete_many(["old"]))
    for read in (store.get, store.size, lambda key: store.get_range(key, 0, 1), store.list):
        _fails(lambda read=read: read("old"))  # type: ignore[misc]
    assert inner.list("") == ["old"]
    assert store.injected() == {(kind, op): 1 for op in (
        "put", "put_if_absent", "delete", "delete_many", "get", "size", "get_range", "list")}


def test_torn_writes_are_applied_and_reported_failed(inner: LocalDirectoryStorage) -> None:
    inner.put("gone", b"g")
    inner.put("gone-too", b"g")
    store = _faulty(inner, torn=1.0)
    _fails(lambda: store.put("k", b"v"), r"lost its response \(applied\)")
    assert inner.get("k") == b"v"
    _fails(lambda: store.put_if_absent("lease", b"mine"))
    _fails(lambda: store.delete("gone"))
    _fails(lambda: store.delete_many(["gone-too"]))
    assert inner.list("") == ["k", "lease"]
    store.enabled = False
    # The caller's retry of its torn put_if_absent is refused: its own object is there.
    assert store.put_if_absent("lease", b"mine") is False
    assert store.get("lease") == b"mine"
    assert store.injected_total("torn") == 4


def test_torn_reads_come_back_short_or_fail(inner: LocalDirectoryStorage) -> None:
    data = bytes(range(256)) * 40
    inner.put("obj", data)
    store = _faulty(inner, torn=1.0)
    short, failed = 0, 0
    for i in range(CALLS):
        try:
            body = store.get("obj") if i % 2 else store.get_range("obj", 100, 5000)
        except RemoteStorageError:
            failed += 1
            continue
        whole = data if i % 2 else data[100:5100]
        assert len(body) < len(whole) and whole.startswith(body)
        short += 1
    assert short > CALLS // 4 and failed > CALLS // 4
    _fails(lambda: store.list(""))
    _fails(lambda: store.size("obj"))


def test_a_torn_read_of_an_empty_object_fails(inner: LocalDirectoryStorage) -> None:
    inner.put("empty", b"")
    store = _faulty(inner, torn=1.0)
    for _ in range(20):  # it cannot come back shorter
        _fails(lambda: store.get("empty"))


def test_timeouts_sleep_then_fail_applied_or_not(inner: LocalDirectoryStorage) -> None:
    store = _faulty(inner, timeout=1.0, timeout_s=0.002)
    started = time.monotonic()
    for i in range(CALLS // 2):
        _fails(lambda i=i: store.put(f"k/{i:03d}", b"v"), "timed out")  # type: ignore[misc]
    assert time.monotonic() - started >= CALLS // 2 * 0.002
    applied = len(inner.list("k/"))
    assert CALLS // 8 < applied < CALLS // 2 - CALLS // 8
    assert store.injected() == {("timeout", "put"): CALLS // 2}


def test_latency_delays_a_call_that_then_succeeds(inner: LocalDirectoryStorage) -> None:
    store = _faulty(inner, latency=1.0, latency_s=0.05)
    started = time.monotonic()
    store.put("k", b"v")
    assert store.get("k") == b"v"
    assert time.monotonic() - started >= 0.1
    assert store.injected_total("latency") == 2


def test_faults_apply_only_to_the_chosen_operations(inner: LocalDirectoryStorage) -> None:
    store = _faulty(inner, error=1.0, ops=frozenset({"put_if_absent"}))
    store.put("k", b"v")
    assert store.get("k") == b"v"
    assert store.list("") == ["k"]
    _fails(lambda: store.put_if_absent("other", b"v"))
    assert store.injected() == {("error", "put_if_absent"): 1}


def test_faults_apply_only_while_enabled(inner: LocalDirectoryStorage) -> None:
    store = FaultyStorage(inner, FaultPlan(error=1.0), enabled=False)
    store.put("k", b"v")
    store.enabled = True
    _fails(lambda: store.get("k"))
    store.enabled = False
    assert store.get("k") == b"v"
    assert store.injected() == {("error", "get"): 1}


def test_bad_arguments_are_refused_before_any_fault(inner: LocalDirectoryStorage) -> None:
    store = _faulty(inner, error=1.0)
    for call in (lambda: store.put("../k", b"v"), lambda: store.get("/k"),
                 lambda: store.get_range("k", -1, 1), lambda: store.list("a//"),
                 lambda: store.delete_many(["k", ""])):
        with pytest.raises(InvalidArgumentError):
            call()
    assert store.injected() == {}


def test_a_missing_object_is_still_not_found(inner: LocalDirectoryStorage) -> None:
    store = _faulty(inner, latency=1.0)
    with pytest.raises(NotFoundError):
        store.get("absent")


def _outcomes(inner: LocalDirectoryStorage, seed: int) -> list[str]:
    store = _faulty(inner, seed=seed, error=0.2, throttle=0.1, timeout=0.1, torn=0.1,
                    latency=0.1)
    outcomes = []
    for i in range(CALLS):
        try:
            store.put(f"seed-{seed}/{i}", b"v")
            outcomes.append("ok")
        except RemoteStorageError as e:
            outcomes.append(str(e).split(":")[0])
    return outcomes


def test_a_seed_gives_the_same_faults_on_the_same_calls(inner: LocalDirectoryStorage) -> None:
    first = _outcomes(inner, 7)
    assert _outcomes(inner, 7) == first
    assert _outcomes(inner, 8) != first
    counts = {outcome: first.count(outcome) for outcome in set(first)}
    assert set(counts) == {"ok", "injected error", "injected throttling", "injected timeout",
                           "injected torn response"}
    assert CALLS * 0.3 < counts["ok"] < CALLS * 0.7  # half the calls, give or take


def test_counts_agree_with_the_faults_seen_across_threads(inner: LocalDirectoryStorage) -> None:
    store = _faulty(inner, seed=3, error=0.5)
    failures = 0
    lock = threading.Lock()

    def call(i: int) -> None:
        nonlocal failures
        try:
            store.put(f"t/{i}", b"v")
        except RemoteStorageError:
            with lock:
                failures += 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(call, range(CALLS)))
    assert store.injected() == {("error", "put"): failures}
    assert len(inner.list("t/")) == CALLS - failures


def test_describe_names_the_plan(inner: LocalDirectoryStorage) -> None:
    store = _faulty(inner, seed=5, error=0.25)
    assert store.describe() == f"{inner.describe()} with faults seed=5,error=0.25"


def test_the_page_server_wraps_its_store_when_given_a_plan(tmp_path: Path) -> None:
    plain = settings_from(["--storage", str(tmp_path / "objects")], {})
    assert "faults" not in plain.open_storage(Metrics()).describe()
    faulty = settings_from(["--storage", str(tmp_path / "objects"),
                            "--storage-faults", "seed=4,error=1"], {}).open_storage(Metrics())
    assert faulty.describe() == f"local:{tmp_path}/objects with faults seed=4,error=1"
    _fails(lambda: faulty.list(""))
