"""Each tenant's storage over time: a bounded series of samples of its branches' and
checkpoints' bytes, kept as JSON lines in the page server's state directory.

The series is what the page server saw, not part of the tenant's data: it lives on local
disk (a page server that loses its disk, or takes a tenant over, starts a new series) and
goes with the tenant. A file holds at most twice ``max_samples`` lines; past that it is
rewritten with the newest ``max_samples``, so appending stays cheap and the file small.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common.durable import write_durably
from common.errors import NotFoundError
from pageserver import gc
from pageserver.tenant import Tenant
from pageserver.timeline import now_us


@dataclass(frozen=True)
class BranchBytes:
    name: str
    owned_bytes: int
    history_bytes: int
    logical_size: int


@dataclass(frozen=True)
class CheckpointBytes:
    name: str
    branch: str
    held_bytes: int
    reclaim_bytes: int


@dataclass(frozen=True)
class Sample:
    """One tenant's bytes at ``at_us``."""

    at_us: int
    stored_bytes: int
    branches: list[BranchBytes]
    checkpoints: list[CheckpointBytes]

    @staticmethod
    def from_json(line: dict[str, Any]) -> Sample:
        return Sample(line["at_us"], line["stored_bytes"],
                      [BranchBytes(**b) for b in line["branches"]],
                      [CheckpointBytes(**c) for c in line["checkpoints"]])


def _parsed(line: str) -> Sample | None:
    """The sample on ``line``; None for a line torn by a crash mid-append."""
    try:
        return Sample.from_json(json.loads(line))
    except (ValueError, KeyError, TypeError):
        return None


def sample(tenant: Tenant) -> Sample:
    """The tenant's bytes now: each branch's owned, history and logical bytes, and each
    checkpoint's cost (``Tenant.checkpoint_costs``)."""
    names = sorted(tenant.branch_names())
    branches = []
    for name in names:
        try:
            timeline = tenant.branch(name)
        except NotFoundError:  # deleted meanwhile
            continue
        branches.append(BranchBytes(name, timeline.owned_bytes(), gc.history_bytes(timeline),
                                    timeline.logical_size()))
    records = dict(tenant.manifest.checkpoints)
    costs = tenant.checkpoint_costs(sorted(records))
    return Sample(now_us(), tenant.stored_bytes(), branches, [
        CheckpointBytes(name, records[name].branch or "", cost.held_bytes, cost.reclaim_bytes)
        for name, cost in sorted(costs.items())])


class StorageHistory:
    """The samples of every tenant of one page server, one file per tenant."""

    def __init__(self, directory: Path, max_samples: int) -> None:
        if max_samples < 1:
            raise ValueError("storage_samples must be at least 1")
        self._directory = directory
        self._max = max_samples
        self._lock = threading.Lock()
        self._lines: dict[str, int] = {}  # tenant -> lines in its file (once counted)

    def _path(self, tenant_id: str) -> Path:
        return self._directory / f"{tenant_id}.jsonl"

    def record(self, tenant_id: str, sample: Sample) -> None:
        """Append ``sample`` to the tenant's series, dropping the oldest past the bound."""
        line = json.dumps(asdict(sample), separators=(",", ":")) + "\n"
        path = self._path(tenant_id)
        with self._lock:
            self._directory.mkdir(parents=True, exist_ok=True)
            count = self._lines.get(tenant_id)
            if count is None:  # first since start: mend a line a crash tore
                whole = self._read_lines(path)
                if path.exists() and not path.read_bytes().endswith(b"\n"):
                    write_durably(path, "".join(whole).encode())
                count = len(whole)
            if count + 1 > 2 * self._max:
                kept = [*self._read_lines(path), line][-self._max:]
                write_durably(path, "".join(kept).encode())
                count = len(kept)
            else:
                with path.open("a") as out:
                    out.write(line)
                count += 1
            self._lines[tenant_id] = count

    def read(self, tenant_id: str, since_us: int = 0) -> list[Sample]:
        """The newest ``max_samples`` samples taken at or after ``since_us``, oldest first."""
        with self._lock:
            lines = self._read_lines(self._path(tenant_id))
        samples = [sample for line in lines[-self._max:]
                   if (sample := _parsed(line)) is not None]
        return [sample for sample in samples if sample.at_us >= since_us]

    def forget(self, tenant_id: str) -> None:
        """Drop a deleted tenant's series."""
        with self._lock:
            self._lines.pop(tenant_id, None)
            self._path(tenant_id).unlink(missing_ok=True)

    @staticmethod
    def _read_lines(path: Path) -> list[str]:
        """The file's complete lines (a torn last line after a crash is skipped)."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        return [line + "\n" for line in text.split("\n")[:-1] if line]
