"""Manifests: the durable description of tenants and timelines in the object store.

Object layout (``docs/FORMAT.md``; ``docs/rfcs/0008-the-object-store-is-the-truth.md``)::

    tenants/<tenant>/generations/<gen>                      claimed with create-if-absent
    tenants/<tenant>/manifest/<version>.json                 branches and checkpoints
    tenants/<tenant>/log/<seq>                               the ingest log, in chunks
    tenants/<tenant>/timelines/<tl>/manifest/<version>.json  layers and timeline metadata
    tenants/<tenant>/timelines/<tl>/layers/<name>-<gen>      immutable layer files

A manifest is a chain of versions, each created with create-if-absent: publishing
version n + 1 is a compare-and-swap against version n, so of two page servers only one
can publish it. A manifest is uploaded only after every layer it names; a layer is
deleted only after a manifest that no longer names it is durable. Manifests are JSON
with a SHA-256 over the body, the writer's generation, the version and its kind,
verified on every read. A version is a *snapshot* (the whole body) or a *delta* (what
changed since the version below it, see ``apply_delta``), so a change to a tenant with
thousands of branches writes one entry, not all of them.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import compress
from operator import is_not
from typing import Any, TypeVar

from common.durability import Durability
from common.errors import CorruptionError
from pageserver.applied_batch import AppliedBatch
from pageserver.layer_file import LayerKind, LayerSummary

FORMAT_VERSION = 3  # format 2 plus the kind: snapshot or delta
_SNAPSHOTS_ONLY_FORMAT = 2  # version chains of whole manifests, read as snapshots
_LEGACY_FORMAT = 1  # one manifest per generation (tenant-<gen>.json), before versions
SNAPSHOT, DELTA = "snapshot", "delta"


def tenant_prefix(tenant_id: str) -> str:
    return f"tenants/{tenant_id}/"


def generation_key(tenant_id: str, generation: int) -> str:
    return f"{tenant_prefix(tenant_id)}generations/{generation:08x}"


def tenant_manifest_prefix(tenant_id: str) -> str:
    return f"{tenant_prefix(tenant_id)}manifest/"


def legacy_tenant_manifest_prefix(tenant_id: str) -> str:
    """Where tenant manifests lived before versions: ``tenant-<gen>.json``."""
    return f"{tenant_prefix(tenant_id)}tenant-"


def timeline_prefix(tenant_id: str, timeline_id: str) -> str:
    return f"{tenant_prefix(tenant_id)}timelines/{timeline_id}/"


def timeline_manifest_prefix(tenant_id: str, timeline_id: str) -> str:
    return f"{timeline_prefix(tenant_id, timeline_id)}manifest/"


def legacy_timeline_manifest_prefix(tenant_id: str, timeline_id: str) -> str:
    """Where timeline manifests lived before versions: ``manifest-<gen>.json``."""
    return f"{timeline_prefix(tenant_id, timeline_id)}manifest-"


def manifest_version_key(prefix: str, version: int) -> str:
    return f"{prefix}{version:016x}.json"


def version_of(key: str) -> int:
    """The version encoded in a manifest version's object name."""
    return int(key.rsplit("/", 1)[-1].removesuffix(".json"), 16)


def log_prefix(tenant_id: str) -> str:
    return f"{tenant_prefix(tenant_id)}log/"


def log_chunk_key(tenant_id: str, seq: int) -> str:
    return f"{log_prefix(tenant_id)}{seq:016x}"


def log_seq_of(key: str) -> int:
    return int(key.rsplit("/", 1)[-1], 16)


def layer_key(tenant_id: str, timeline_id: str, layer_name: str) -> str:
    return f"{timeline_prefix(tenant_id, timeline_id)}layers/{layer_name}"


def generation_of(key: str) -> int:
    """The generation encoded at the end of a generation object's (or a legacy
    manifest's) name."""
    stem = key.rsplit("/", 1)[-1].removesuffix(".json")
    return int(stem.rsplit("-", 1)[-1], 16)


PARTIAL_IMAGE = "partial_image"  # a layer descriptor's kind for a branch's partial image


@dataclass(frozen=True)
class LayerDescriptor:
    """What a manifest records about one layer file."""

    name: str  # object name within the timeline's layers/ prefix, generation included
    kind: LayerKind
    key_start: bytes
    key_end: bytes
    lsn_start: int
    lsn_end: int
    size: int
    level: int  # 0 for L0 deltas (whole key range), 1 for L1 deltas and images
    partial: bool = False  # an image of a branch's own pages: keys it lacks are inherited

    @property
    def summary(self) -> LayerSummary:
        return LayerSummary(self.kind, self.key_start, self.key_end, self.lsn_start, self.lsn_end)

    def to_json(self) -> dict[str, Any]:
        """A partial image is kind ``partial_image``: code that does not know it refuses
        the manifest rather than read the image as a whole one (inherited pages as zeros)."""
        kind = PARTIAL_IMAGE if self.partial else self.kind.name.lower()
        return {
            "name": self.name, "kind": kind,
            "key_start": self.key_start.hex(), "key_end": self.key_end.hex(),
            "lsn_start": self.lsn_start, "lsn_end": self.lsn_end,
            "size": self.size, "level": self.level,
        }

    @staticmethod
    def from_json(obj: dict[str, Any]) -> LayerDescriptor:
        partial = obj["kind"] == PARTIAL_IMAGE
        return LayerDescriptor(
            obj["name"], LayerKind.IMAGE if partial else LayerKind[obj["kind"].upper()],
            bytes.fromhex(obj["key_start"]), bytes.fromhex(obj["key_end"]),
            int(obj["lsn_start"]), int(obj["lsn_end"]), int(obj["size"]), int(obj["level"]),
            partial,
        )


@dataclass
class TimelineManifest:
    """Durable state of one timeline."""

    timeline_id: str
    ancestor_id: str | None
    branch_lsn: int
    disk_consistent_lsn: int  # every batch up to here is in the named layers
    gc_cutoff: int
    created_at_us: int
    layers: list[LayerDescriptor] = field(default_factory=list)
    writer_epoch: int = 0  # bumped by every writer attach; older epochs are fenced off
    last_batch: AppliedBatch = field(default_factory=AppliedBatch)  # last numbered, in layers

    def to_json(self) -> dict[str, Any]:
        return {
            "timeline_id": self.timeline_id, "ancestor_id": self.ancestor_id,
            "branch_lsn": self.branch_lsn, "disk_consistent_lsn": self.disk_consistent_lsn,
            "gc_cutoff": self.gc_cutoff, "created_at_us": self.created_at_us,
            "layers": [layer.to_json() for layer in self.layers],
            "writer_epoch": self.writer_epoch, "last_batch": self.last_batch.to_json(),
        }

    @staticmethod
    def from_json(obj: dict[str, Any]) -> TimelineManifest:
        return TimelineManifest(
            obj["timeline_id"], obj["ancestor_id"], int(obj["branch_lsn"]),
            int(obj["disk_consistent_lsn"]), int(obj["gc_cutoff"]), int(obj["created_at_us"]),
            [LayerDescriptor.from_json(layer) for layer in obj["layers"]],
            int(obj.get("writer_epoch", 0)), AppliedBatch.from_json(obj.get("last_batch")),
        )


@dataclass(frozen=True)
class CheckpointRecord:
    """A named, pinned point in a timeline's history.

    ``branch`` is the branch it was taken on, kept when that branch is restored or reset
    (its timeline then stays, unnamed, for the checkpoint); None for a record older than
    the field whose timeline no branch names.
    """

    timeline_id: str
    lsn: int
    created_at_us: int
    branch: str | None = None
    statement: str | None = None  # automatic (undo): the statement it was taken before
    expires_at_us: int | None = None  # the reaper deletes it after this; None: never


@dataclass(frozen=True)
class BranchRecord:
    """A branch name bound to a timeline."""

    timeline_id: str
    created_at_us: int
    expires_at_us: int | None = None
    parent: str | None = None  # the branch it was forked from; kept across restores
    suspend_timeout_s: int | None = None  # idle time before the proxy stops its compute
    protected: bool = False  # never expires; deleting it needs force
    history_s: int | None = None  # its history window; None: the default (history.py)
    ephemeral: bool = False  # a time-travel endpoint's: read-only, unlisted, gone when idle
    lease_s: int | None = None  # a lease: each renewal moves expires_at_us this far ahead
    undo_off: bool = False  # the proxy takes no automatic checkpoints before destructive SQL


@dataclass(frozen=True)
class Quotas:
    """Limits of one tenant; None: unlimited."""

    max_branches: int | None = None
    max_computes: int | None = None  # running at once; enforced where computes start
    max_ttl_s: int | None = None  # and the TTL of branches created without one
    max_storage: int | None = None  # bytes stored; past it, batches that grow files are refused


Record = BranchRecord | CheckpointRecord
BRANCHES, CHECKPOINTS = "branches", "checkpoints"


@dataclass(frozen=True)
class EntryChange:
    """One branch or checkpoint entry that differs between two manifests."""

    kind: str  # BRANCHES or CHECKPOINTS
    name: str
    before: Record | None  # None: added
    after: Record | None  # None: removed


@dataclass
class TenantManifest:
    """Durable state of one tenant: its branches, checkpoints and quotas, and the random
    incarnation id its tokens carry, made when it is created: a tenant deleted and created
    again under the same name has another, so its old tokens are refused.

    Entries change only through ``set_branch``, ``drop_branch``, ``set_checkpoint`` and
    ``drop_checkpoint`` (the maps are read-only to callers), which note the names they
    touch: what changed since the manifest a copy was made from is then known without
    looking at the thousands of entries that did not."""

    tenant_id: str
    branches: Mapping[str, BranchRecord] = field(default_factory=dict)
    checkpoints: Mapping[str, CheckpointRecord] = field(default_factory=dict)
    quotas: Quotas = field(default_factory=Quotas)
    incarnation: str = ""  # "": written before tenants had one; given one when loaded
    durability: Durability = field(default_factory=Durability)  # when batches are acknowledged
    history_s: int | None = None  # window of branches without their own; None: the server's
    _base: weakref.ref[TenantManifest] | None = field(default=None, init=False,
                                                      compare=False, repr=False)
    _touched: set[tuple[str, str]] = field(default_factory=set, init=False, compare=False,
                                           repr=False)

    def copy(self) -> TenantManifest:
        """A copy to change: new dicts, sharing the records, which are immutable."""
        copied = TenantManifest(self.tenant_id, dict(self.branches), dict(self.checkpoints),
                                self.quotas, self.incarnation, self.durability,
                                self.history_s)
        copied._base = weakref.ref(self)
        return copied

    def set_branch(self, name: str, record: BranchRecord) -> None:
        _writable(self.branches)[name] = record
        self._touched.add((BRANCHES, name))

    def drop_branch(self, name: str) -> BranchRecord:
        self._touched.add((BRANCHES, name))
        return _writable(self.branches).pop(name)

    def set_checkpoint(self, name: str, record: CheckpointRecord) -> None:
        _writable(self.checkpoints)[name] = record
        self._touched.add((CHECKPOINTS, name))

    def drop_checkpoint(self, name: str) -> CheckpointRecord:
        self._touched.add((CHECKPOINTS, name))
        return _writable(self.checkpoints).pop(name)

    def changes_since(self, old: TenantManifest) -> list[EntryChange]:
        """The entries that differ from ``old``: from the names noted since this copy was
        made when ``old`` is what it was copied from, else by comparing every entry
        (records are immutable and copies share them, so by identity, in C)."""
        if self._base is not None and self._base() is old:
            touched: Iterable[tuple[str, str]] = self._touched
        else:
            touched = [(kind, name) for kind in (BRANCHES, CHECKPOINTS)
                       for name in _changed_names(old.entries(kind), self.entries(kind))]
        changes = []
        for kind, name in sorted(touched):
            before, after = old.entries(kind).get(name), self.entries(kind).get(name)
            if before is not after:
                changes.append(EntryChange(kind, name, before, after))
        return changes

    def entries(self, kind: str) -> Mapping[str, Record]:
        """``branches`` or ``checkpoints`` by name."""
        return self.branches if kind == BRANCHES else self.checkpoints

    def delta_from(self, old: TenantManifest) -> dict[str, Any]:
        """What changed from ``old`` to this manifest, as ``apply_delta`` reads it."""
        entries: dict[str, dict[str, dict[str, Any] | None]] = {BRANCHES: {}, CHECKPOINTS: {}}
        for change in self.changes_since(old):
            entries[change.kind][change.name] = (
                None if change.after is None else vars(change.after))
        scalars = {"tenant_id": self.tenant_id, "quotas": self.quotas,
                   "incarnation": self.incarnation, "durability": self.durability,
                   "history_s": self.history_s}
        before = {"tenant_id": old.tenant_id, "quotas": old.quotas,
                  "incarnation": old.incarnation, "durability": old.durability,
                  "history_s": old.history_s}
        return {
            "set": {key: _scalar_json(value)
                    for key, value in scalars.items() if value != before[key]},
            "entries": entries,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "branches": {name: vars(record) for name, record in self.branches.items()},
            "checkpoints": {name: vars(record) for name, record in self.checkpoints.items()},
            "quotas": vars(self.quotas),
            "incarnation": self.incarnation,
            "durability": self.durability.to_json(),
            "history_s": self.history_s,
        }

    @staticmethod
    def from_json(obj: dict[str, Any]) -> TenantManifest:
        branches = {name: BranchRecord(**rec) for name, rec in obj["branches"].items()}
        named = {rec.timeline_id: name for name, rec in branches.items()}
        checkpoints = {}
        for name, rec in obj["checkpoints"].items():
            record = CheckpointRecord(**rec)
            if record.branch is None:  # written before checkpoints recorded their branch
                record = replace(record, branch=named.get(record.timeline_id))
            checkpoints[name] = record
        return TenantManifest(obj["tenant_id"], branches, checkpoints,
                              Quotas(**obj.get("quotas", {})), obj.get("incarnation", ""),
                              Durability.from_json(obj.get("durability", {})),
                              obj.get("history_s"))


def _scalar_json(value: object) -> object:
    """A field of a tenant manifest as its JSON holds it."""
    if isinstance(value, Quotas):
        return vars(value)
    return value.to_json() if isinstance(value, Durability) else value


R = TypeVar("R")


def _writable(entries: Mapping[str, R]) -> dict[str, R]:
    """The dict behind a manifest's read-only map, for the methods that note changes."""
    assert isinstance(entries, dict)
    return entries


def _changed_names(old: Mapping[str, object], new: Mapping[str, object]) -> set[str]:
    """Names whose record in ``new`` is not the very object ``old`` holds, or that only
    one of them has."""
    replaced = compress(new, map(is_not, map(old.get, new), new.values()))
    return set(replaced) | (old.keys() - new.keys())


def apply_delta(body: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """``body`` with ``delta`` applied: each field of ``delta["set"]`` replaced, and in each
    map named in ``delta["entries"]`` the entries given set (None: removed). Generic over
    the body, so loading a chain needs no knowledge of what the manifest describes."""
    result = {**body, **delta["set"]}
    for field_name, entries in delta["entries"].items():
        merged = dict(result.get(field_name, {}))
        for name, value in entries.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        result[field_name] = merged
    return result


@dataclass(frozen=True)
class Envelope:
    """A verified manifest version: its body, which generation wrote it as which version
    (a legacy manifest: the generation of its name, version 0), and its kind (SNAPSHOT:
    the body is whole; DELTA: the body is what changed since the version below)."""

    body: dict[str, Any]
    generation: int
    version: int
    kind: str = SNAPSHOT


def _digest(body: dict[str, Any], generation: int, version: int,
            kind: str | None) -> tuple[str, str]:
    """The canonical JSON of ``body`` and the SHA-256 that seals it to its writer, version
    and kind (so a copy under another name, or a delta relabelled, reads as damaged).
    ``kind`` None: format 2, which sealed no kind."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    sealed = f"{generation}:{version}:{canonical}" if kind is None else (
        f"{generation}:{version}:{kind}:{canonical}")
    return canonical, hashlib.sha256(sealed.encode()).hexdigest()


def encode_manifest(body: dict[str, Any], generation: int, version: int,
                    kind: str = SNAPSHOT) -> bytes:
    """JSON with a format version, the writer's generation, the version, the kind and a
    SHA-256."""
    canonical, digest = _digest(body, generation, version, kind)
    return (f'{{"format":{FORMAT_VERSION},"kind":"{kind}","generation":{generation},'
            f'"version":{version},"sha256":"{digest}","body":{canonical}}}').encode()


def decode_manifest(raw: bytes, name: str) -> Envelope:
    """Parse and verify a manifest; any damage raises CorruptionError naming it."""
    try:
        outer = json.loads(raw)
        body = outer["body"]
        digest = outer["sha256"]
        fmt = outer["format"]
        kind = SNAPSHOT
        if fmt == _LEGACY_FORMAT:
            generation, version = generation_of(name), 0
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
            expected = hashlib.sha256(canonical.encode()).hexdigest()
        elif fmt == _SNAPSHOTS_ONLY_FORMAT:
            generation, version = int(outer["generation"]), int(outer["version"])
            expected = _digest(body, generation, version, None)[1]
        elif fmt == FORMAT_VERSION:
            generation, version, kind = int(outer["generation"]), int(outer["version"]), \
                outer["kind"]
            if kind not in (SNAPSHOT, DELTA):
                raise CorruptionError(f"manifest {name}: unknown kind {kind!r}")
            expected = _digest(body, generation, version, kind)[1]
        else:
            raise CorruptionError(f"manifest {name}: unsupported format version {fmt}")
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptionError(f"manifest {name}: unreadable ({exc})") from exc
    if expected != digest:
        raise CorruptionError(f"manifest {name}: checksum mismatch")
    if not isinstance(body, dict):
        raise CorruptionError(f"manifest {name}: body is not an object")
    return Envelope(body, generation, version, kind)
