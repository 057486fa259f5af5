"""How the CLI and the proxy keep out of each other's way: the per-branch compute lock, and
a proxy whose periodic work fails but which keeps serving."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from common.client import StrataClient
from strata.local.computes import STARTING_FILE, branch_lock, busy_count, quota_slot
from strata.local.errors import QuotaError
from strata.local.home import Home
from strata.proxy.server import serve
from strata.proxy.wake import Computes


def _locked_elsewhere(directory: Path) -> bool:
    """Whether another process fails to take the branch's lock right now."""
    probe = (
        "import fcntl, sys\n"
        f"f = open({str(directory.parent / ('.' + directory.name + '.lock'))!r}, 'a')\n"
        "try:\n"
        "    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(1)\n"
    )
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 1


def test_branch_lock_excludes_other_processes_and_reenters(tmp_path: Path) -> None:
    directory = tmp_path / "acme" / "main"
    with branch_lock(directory):
        assert _locked_elsewhere(directory)
        with branch_lock(directory):  # the same thread again: no deadlock
            assert _locked_elsewhere(directory)
        assert _locked_elsewhere(directory)  # the inner exit kept the lock
    assert not _locked_elsewhere(directory)
    assert not any(path.is_dir() for path in (tmp_path / "acme").iterdir())


def test_branch_lock_serialises_threads(tmp_path: Path) -> None:
    directory = tmp_path / "acme" / "main"
    order: list[str] = []
    taken = threading.Event()

    def other() -> None:
        taken.wait()
        with branch_lock(directory):
            order.append("other")

    thread = threading.Thread(target=other)
    thread.start()
    with branch_lock(directory):
        taken.set()
        time.sleep(0.2)  # the other thread is now waiting for the lock
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "other"]


def test_branch_locks_are_per_branch(tmp_path: Path) -> None:
    with branch_lock(tmp_path / "acme" / "main"):
        assert not _locked_elsewhere(tmp_path / "acme" / "dev")
    with pytest.raises(ValueError), branch_lock(tmp_path / "acme" / "main"):
        raise ValueError  # the lock is let go when the block fails
    assert not _locked_elsewhere(tmp_path / "acme" / "main")


def test_the_proxy_keeps_serving_when_its_periodic_work_fails(tmp_path: Path) -> None:
    """A reaper that raises (say, a compute that would not stop) is logged; clients are
    still answered afterwards."""
    home = Home(tmp_path)
    home.proxy_state_file.parent.mkdir(parents=True)
    client = StrataClient("127.0.0.1:1", "no-token")  # never called: nobody connects
    reaps: list[float] = []

    def failing_reap() -> None:
        reaps.append(time.monotonic())
        raise RuntimeError("a compute did not stop")

    async def scenario() -> bytes:
        stop = asyncio.Event()
        bound: list[int] = []
        task = asyncio.create_task(serve(
            "127.0.0.1", 0, home, Computes(home, client, "127.0.0.1:1", 0.2),
            bound.append, stop, failing_reap, reap_period_s=0.0))
        while len(reaps) < 3:
            assert not task.done(), task
            await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", bound[0])
        writer.write((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))  # SSLRequest
        answer = await reader.readexactly(1)
        writer.close()
        stop.set()
        await task
        return answer

    try:
        assert asyncio.run(scenario()) == b"N"  # SSL declined: the proxy is alive
    finally:
        client.close()
    assert len(reaps) >= 3


def test_the_compute_quota_counts_starts_in_flight(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two starts at the same moment cannot both pass a quota of one: the first holds a
    slot (its pid in the compute's directory) until it is done."""
    monkeypatch.setenv("STRATA_COMPUTE_DIR", str(tmp_path / "computes"))  # not /var/tmp
    home = Home(tmp_path)
    first, second = (home.computes_dir / "acme" / name for name in ("one", "two"))
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with quota_slot(home, "acme", first, limit=1):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(10)
        assert busy_count(home, "acme") == 1
        with pytest.raises(QuotaError, match="quota is 1"), \
                quota_slot(home, "acme", second, limit=1):
            pass
        with quota_slot(home, "acme", second, limit=2):  # a larger quota has room
            assert busy_count(home, "acme") == 2
    finally:
        release.set()
        holder.join(10)
    assert busy_count(home, "acme") == 0  # slots are given back, also after a failure
    (first / STARTING_FILE).write_text("999999999")  # a starter that died: not counted
    assert busy_count(home, "acme") == 0


def test_the_proxy_publishes_a_client_leaving_while_its_housekeeping_is_busy(
        tmp_path: Path) -> None:
    """`strata compute list` reads the client counts the proxy publishes: a client's
    departure shows at once, also while the proxy is busy (here: reaping)."""
    home = Home(tmp_path)
    home.proxy_state_file.parent.mkdir(parents=True)
    client = StrataClient("127.0.0.1:1", "no-token")  # never called: nobody connects
    reaping, release = threading.Event(), threading.Event()

    def slow_reap() -> None:  # e.g. an expired branch whose compute takes long to stop
        reaping.set()
        release.wait(30)

    def published() -> dict[str, object]:
        text = home.proxy_state_file.read_text() if home.proxy_state_file.exists() else "{}"
        return dict(json.loads(text).get("acme/main", {}))

    async def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 5
        while not condition():
            assert time.monotonic() < deadline, f"{what}: {published()}"
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        stop = asyncio.Event()
        computes_ = Computes(home, client, "127.0.0.1:1", 60.0)
        task = asyncio.create_task(serve("127.0.0.1", 0, home, computes_, lambda _: None,
                                         stop, slow_reap, reap_period_s=0.0))
        await until(reaping.is_set, "the reaper to start")
        computes_.connected(("acme", "main"))
        await until(lambda: published().get("clients") == 1, "the client to show")
        computes_.disconnected(("acme", "main"))
        await until(lambda: published().get("clients") == 0, "the client to leave")
        assert published().get("idle_since") is not None
        assert not task.done()
        release.set()
        stop.set()
        await task

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        client.close()
