"""The computes the proxy wakes and suspends: one start per branch at a time, shared by
the clients that arrive during it; a compute without clients for its suspend timeout is
stopped; the client counts and times ``strata compute list`` shows.

A connect to a running compute asks the page server nothing: the branch's own suspend
timeout (``branch set --suspend-timeout``) is looked up when the proxy starts its compute
or first meets it, and kept fresh by the housekeeping instead: re-read every
``TIMEOUT_REFRESH_S`` while the compute is idle, and once more before it is suspended, so
a changed timeout counts within seconds and a lengthened one never suspends early. A
GetBranch on every connect cost ~2 ms of the ~10 ms a warm connect spent in the proxy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from pathlib import Path

from common.client import ClientError, StrataClient
from strata.local import computes
from strata.local.home import Home

log = logging.getLogger("strata.proxy")
TIMEOUT_REFRESH_S = 5.0  # how stale an idle branch's suspend timeout may get


class Computes:
    """Starts computes on demand (one start per branch at a time) and suspends idle ones."""

    def __init__(self, home: Home, client: StrataClient, address: str,
                 suspend_timeout_s: float) -> None:
        self._home = home
        self._client = client
        self._address = address
        self.suspend_timeout_s = suspend_timeout_s
        self._locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._clients: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._idle_since: dict[tuple[str, str], float] = {}
        # per-branch suspend timeouts, with when each was read (monotonic)
        self._timeouts: dict[tuple[str, str], tuple[float, float]] = {}
        self._suspended_at: dict[tuple[str, str], float] = {}  # wall time, by this proxy
        self.starts = 0  # computes this proxy started (for tests and metrics)
        self.changed = asyncio.Event()  # set when ``snapshot()`` should be published again

    async def ensure(self, tenant: str, branch: str) -> Path:
        """The unix socket of the branch's running compute, started if needed; a branch
        that does not exist raises ClientError NOT_FOUND (a running compute's does).

        Until a client is connected, the compute counts as idle from now: one woken for a
        client that then failed to authenticate (other roles are checked by the compute)
        is suspended like any idle one, and one about to get its client is not stopped
        under it for having been idle before."""
        key = (tenant, branch)
        async with self._locks[key]:
            found = computes.find_running(self._home, tenant, branch)
            if found is None or key not in self._timeouts:
                await self._read_timeout(key)
            if found is not None:
                socket_path = found.spec.socket_path
            else:
                log.info("starting the compute of %s/%s", tenant, branch)
                running, started = await asyncio.to_thread(
                    computes.ensure_running, self._home, self._client, self._address, tenant,
                    branch, 120.0)
                if started:
                    self.starts += 1
                self._suspended_at.pop(key, None)
                socket_path = running.spec.socket_path
            if not self._clients[key]:
                self._idle_since[key] = time.monotonic()
                self.changed.set()
            return socket_path

    async def _read_timeout(self, key: tuple[str, str]) -> float:
        """The branch's suspend timeout as the page server has it now (its own, else the
        proxy's); remembered with the time it was read."""
        info = await asyncio.to_thread(self._client.get_branch, *key)
        timeout = float(info.suspend_timeout_s or self.suspend_timeout_s)
        self._timeouts[key] = (timeout, time.monotonic())
        return timeout

    async def _current_timeout(self, key: tuple[str, str], idle_s: float) -> float:
        """The suspend timeout of an idle branch: re-read when it would be due or was read
        ``TIMEOUT_REFRESH_S`` ago; the one known if the page server cannot say (a branch
        never seen through ``ensure``: the proxy's)."""
        known = self._timeouts.get(key)
        if known is None:
            return self.suspend_timeout_s
        timeout, read_at = known
        if idle_s < timeout and time.monotonic() - read_at < TIMEOUT_REFRESH_S:
            return timeout
        try:
            return await self._read_timeout(key)
        except ClientError as exc:
            log.debug("could not re-read the suspend timeout of %s/%s: %s", *key, exc.message)
            return timeout

    def connected(self, key: tuple[str, str]) -> None:
        self._clients[key] += 1
        self._idle_since.pop(key, None)
        self.changed.set()

    def disconnected(self, key: tuple[str, str]) -> None:
        self._clients[key] -= 1
        if self._clients[key] == 0:
            self._idle_since[key] = time.monotonic()
        self.changed.set()

    async def suspend_idle(self) -> None:
        """Stop every compute that has had no client for the suspend timeout."""
        now = time.monotonic()
        for key, since in list(self._idle_since.items()):
            if now - since < await self._current_timeout(key, now - since):
                continue
            async with self._locks[key]:
                if self._clients[key] or self._idle_since.get(key) != since:
                    continue  # a client came back meanwhile
                del self._idle_since[key]
                node = computes.find_running(self._home, *key)
                if node is not None:
                    log.info("suspending the idle compute of %s/%s", *key)
                    await asyncio.to_thread(computes.stop, node, 60.0)
                    self._suspended_at[key] = time.time()

    def snapshot(self) -> dict[str, dict[str, float | int | None]]:
        """Per ``tenant/branch``: clients now, since when idle and when suspended (wall
        times), for ``strata compute list``."""
        now_wall, now = time.time(), time.monotonic()
        keys = set(self._clients) | set(self._suspended_at)
        return {f"{tenant}/{branch}": {
            "clients": self._clients.get((tenant, branch), 0),
            "idle_since": (now_wall - (now - since)
                           if (since := self._idle_since.get((tenant, branch))) else None),
            "suspended_at": self._suspended_at.get((tenant, branch)),
        } for tenant, branch in sorted(keys)}
