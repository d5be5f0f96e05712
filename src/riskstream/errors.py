"""Error types shown to users as one clear line (never a traceback)."""

from __future__ import annotations


class RiskstreamError(Exception):
    """Base of every error the command line turns into a one-line message."""


class SpecError(RiskstreamError):
    """A pipeline spec is invalid; ``path`` names where (``rules.card_testing.when``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class SourceError(RiskstreamError):
    """A source cannot be opened or read; ``position`` says where, when known."""

    def __init__(self, message: str, position: str | None = None) -> None:
        self.position = position
        super().__init__(f"{message} (at {position})" if position else message)


class StoreError(RiskstreamError):
    """The store cannot be opened or written (locked, disk full, permissions)."""


class SinkError(RiskstreamError):
    """A sink cannot be set up (bad path, bad URL, missing secret)."""


class UsageError(RiskstreamError):
    """A command-line argument is malformed (a time, a source URI)."""
