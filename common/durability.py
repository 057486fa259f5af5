"""A tenant's durability setting: when an ingest batch is acknowledged, and what that risks.

``store`` (the default): once a chunk of the tenant's log holding the batch exists in the
object store; losing the page server loses nothing acknowledged. ``local``: once the
batch is fsynced in a log file on the page server's disk, with the object store kept at
most ``max_lag_s`` behind; that window is the tenant's RPO should the disk be lost
(docs/rfcs/0010-local-acknowledgement-with-a-bounded-lag.md). The page server and the
CLI both describe it with ``describe``, so the words are the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import InvalidArgumentError

STORE = "store"
LOCAL = "local"
MODES = (STORE, LOCAL)
DEFAULT_MAX_LAG_S = 5.0
MIN_MAX_LAG_S = 0.1
MAX_MAX_LAG_S = 300.0


@dataclass(frozen=True)
class Durability:
    """Where a batch must be before it is acknowledged; ``max_lag_s`` matters in local mode."""

    mode: str = STORE
    max_lag_s: float = DEFAULT_MAX_LAG_S

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidArgumentError(
                f"durability {self.mode!r} is not one of {', '.join(MODES)}")
        if not MIN_MAX_LAG_S <= self.max_lag_s <= MAX_MAX_LAG_S:
            raise InvalidArgumentError(
                f"max lag {self.max_lag_s:g} s is outside {MIN_MAX_LAG_S:g} s to "
                f"{MAX_MAX_LAG_S:g} s")

    @property
    def local(self) -> bool:
        return self.mode == LOCAL

    def describe(self) -> str:
        """The mode and its RPO in words, for ``tenant show`` and logs."""
        if not self.local:
            return ("acknowledged once in the object store; nothing acknowledged is lost "
                    "if this page server's disk is lost")
        return (f"acknowledged after local fsync; up to {self.max_lag_s:g} s of acknowledged "
                "commits can be lost if this page server's disk is lost")

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "max_lag_s": self.max_lag_s}

    @staticmethod
    def from_json(obj: dict[str, object]) -> Durability:
        lag = obj.get("max_lag_s", DEFAULT_MAX_LAG_S)
        assert isinstance(lag, int | float)
        return Durability(str(obj.get("mode", STORE)), float(lag))
