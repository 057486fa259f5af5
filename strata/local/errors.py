"""What local orchestration raises: the CLI turns these into exit codes, the proxy into
SQLSTATEs; neither is known here."""

from __future__ import annotations


class LocalError(Exception):
    """A local operation failed; ``details`` are extra lines, such as the tail of a log."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidNameError(LocalError):
    """A tenant or branch name that cannot name a directory here."""


class QuotaError(LocalError):
    """Starting one more compute would exceed the tenant's quota."""
