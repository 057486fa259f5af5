"""Where tenants are attached and which page servers exist, recorded in the object store.

Every page server keeps a stable random id in its state directory (made at first start)
and registers under ``pageservers/<id>`` (its address, when it started, when it stopped
cleanly). Every attach claims a generation of the tenant with create-if-absent on
``tenants/<t>/generations/<gen>`` (rfcs/0001); the claim object records who claimed it:
the page server's id, its address and the time, and a detach adds when it let go. So
"where is tenant T attached" is the newest claim's record, read from the store by any
page server or operator, with no coordination service beside the store.

Claims made before the record existed are empty objects: they name no page server.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from common.durable import write_durably
from common.errors import NotFoundError
from pageserver.manifest import generation_key, generation_of, tenant_prefix
from pageserver.remote import RemoteStorage

log = logging.getLogger(__name__)

ID_FILE = "pageserver-id"
PAGESERVERS_PREFIX = "pageservers/"
TENANTS_PREFIX = "tenants/"


@dataclass(frozen=True)
class Claim:
    """One generation of a tenant and who claimed it ("" and 0: not recorded)."""

    tenant_id: str
    generation: int
    pageserver_id: str = ""
    address: str = ""
    claimed_at: float = 0.0
    detached_at: float = 0.0

    @property
    def detached(self) -> bool:
        """Whether the page server that claimed it has let go of it since."""
        return self.detached_at > 0

    def describe(self) -> str:
        """Where this claim puts the tenant, for messages."""
        if self.detached:
            return "it is not attached to any page server (detached)"
        if not self.pageserver_id:
            return f"its newest generation {self.generation} names no page server"
        return (f"it is attached to page server {self.pageserver_id} at "
                f"{self.address or 'an unknown address'} (generation {self.generation})")


@dataclass(frozen=True)
class PageServerRecord:
    """A page server as it registered itself."""

    pageserver_id: str
    address: str
    started_at: float
    stopped_at: float = 0.0

    @property
    def running(self) -> bool:
        """Whether it started and has not stopped cleanly since (it may have crashed)."""
        return self.stopped_at == 0.0


def load_or_create_id(state_dir: Path) -> str:
    """This page server's id: kept in ``state_dir``, made at first start."""
    path = state_dir / ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    write_durably(path, (secrets.token_hex(8) + "\n").encode(), replace=False)
    return path.read_text().strip()  # a concurrent first start may have won


class Locations:
    """Claims, detaches and registrations of one page server; lookups for everyone."""

    def __init__(self, storage: RemoteStorage, pageserver_id: str, address: str = "") -> None:
        self._storage = storage
        self.pageserver_id = pageserver_id
        self.address = address
        self._started_at = time.time()

    # --- this page server ---------------------------------------------------------

    def register(self, address: str | None = None) -> None:
        """Record (again) that this page server runs, at ``address`` if given."""
        if address is not None:
            self.address = address
        self._put_record(PageServerRecord(self.pageserver_id, self.address,
                                          self._started_at))

    def mark_stopped(self) -> None:
        """Record a clean stop: its tenants are flushed and it serves none of them now."""
        self._put_record(PageServerRecord(self.pageserver_id, self.address,
                                          self._started_at, time.time()))

    def _put_record(self, record: PageServerRecord) -> None:
        self._storage.put(f"{PAGESERVERS_PREFIX}{record.pageserver_id}",
                          json.dumps(asdict(record)).encode())

    def claim(self, tenant_id: str) -> int:
        """The next generation of the tenant, claimed atomically in the object store and
        recorded as this page server's."""
        generation = max(self._generations(tenant_id), default=0) + 1
        while not self._storage.put_if_absent(generation_key(tenant_id, generation),
                                              self._claim_body(tenant_id, generation)):
            generation += 1
        return generation

    def _claim_body(self, tenant_id: str, generation: int) -> bytes:
        return _encode(Claim(tenant_id, generation, self.pageserver_id, self.address,
                             time.time()))

    def mark_detached(self, tenant_id: str, generation: int) -> None:
        """Record on our own claim that we let go of the tenant. Only we write that
        object after claiming it, and a new claim takes a new name, so a plain put is safe."""
        claim = replace(self.claim_of(tenant_id, generation), detached_at=time.time())
        self._storage.put(generation_key(tenant_id, generation), _encode(claim))

    # --- lookups -------------------------------------------------------------------

    def _generations(self, tenant_id: str) -> list[int]:
        return [generation_of(key)
                for key in self._storage.list(f"{tenant_prefix(tenant_id)}generations/")]

    def claim_of(self, tenant_id: str, generation: int) -> Claim:
        """The record of one generation (an empty one for claims made before records)."""
        body = self._storage.get(generation_key(tenant_id, generation))
        fields = _json_object(body)
        return Claim(tenant_id, generation,
                     pageserver_id=str(fields.get("pageserver_id", "")),
                     address=str(fields.get("address", "")),
                     claimed_at=float(fields.get("claimed_at", 0.0)),
                     detached_at=float(fields.get("detached_at", 0.0)))

    def newest(self, tenant_id: str) -> Claim | None:
        """Where the tenant is attached: its newest claim; None if it was never claimed.

        A claim made while the server did not know its address yet (listening on port 0)
        takes the address from the server's registration."""
        generations = self._generations(tenant_id)
        if not generations:
            return None
        claim = self.claim_of(tenant_id, max(generations))
        if claim.pageserver_id and not claim.address:
            record = self.pageserver(claim.pageserver_id)
            if record is not None:
                return replace(claim, address=record.address)
        return claim

    def moved_away(self, tenant_id: str) -> Claim | None:
        """The newest claim if it says we must not serve the tenant any more: another page
        server claimed it after us, or we detached it. None: ours to serve."""
        claim = self.newest(tenant_id)
        if claim is None or not claim.pageserver_id:
            return None
        if claim.pageserver_id != self.pageserver_id or claim.detached:
            return claim
        return None

    def pageserver(self, pageserver_id: str) -> PageServerRecord | None:
        """A page server's registration; None if it never registered."""
        try:
            body = self._storage.get(f"{PAGESERVERS_PREFIX}{pageserver_id}")
        except NotFoundError:
            return None
        fields = _json_object(body)
        return PageServerRecord(pageserver_id, str(fields.get("address", "")),
                                float(fields.get("started_at", 0.0)),
                                float(fields.get("stopped_at", 0.0)))

    def pageservers(self) -> list[PageServerRecord]:
        """Every page server that registered in this store, by id."""
        records = (self.pageserver(key.removeprefix(PAGESERVERS_PREFIX))
                   for key in self._storage.list(PAGESERVERS_PREFIX))
        return [record for record in records if record is not None]

    def tenants_in_store(self) -> list[str]:
        """Every tenant with a claimed generation in the store, attached anywhere or not.

        Lists every object under ``tenants/`` (the interface has no delimiter listing)."""
        names = set()
        for key in self._storage.list(TENANTS_PREFIX):
            tenant_id, _, rest = key.removeprefix(TENANTS_PREFIX).partition("/")
            if rest.startswith("generations/"):
                names.add(tenant_id)
        return sorted(names)

    def holder_may_be_running(self, claim: Claim) -> bool:
        """Whether the page server holding ``claim`` may still serve it: the claim is
        someone else's, not detached, and its page server registered (a page server
        process does at start-up; an engine inside a program does not) and has not
        stopped cleanly since."""
        if claim.detached or not claim.pageserver_id or \
                claim.pageserver_id == self.pageserver_id:
            return False
        record = self.pageserver(claim.pageserver_id)
        return record is not None and record.running


def _encode(claim: Claim) -> bytes:
    """The body of a claim object: who, where, when (the key says tenant and generation)."""
    return json.dumps({"pageserver_id": claim.pageserver_id, "address": claim.address,
                       "claimed_at": claim.claimed_at,
                       "detached_at": claim.detached_at}).encode()


def _json_object(body: bytes) -> dict[str, Any]:
    """A JSON object, or {} for an empty (older) or unreadable body."""
    if not body:
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        log.warning("unreadable location record %r", body[:80])
        return {}
    return value if isinstance(value, dict) else {}
