"""The source contract: batches of raw event bytes (:class:`~riskstream.core.events.RawBatch`)
with their positions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from riskstream.core.events import RawBatch

__all__ = ["RawBatch", "Source"]


class Source(Protocol):
    """A stream of raw events; bounded sources end, unbounded ones wait for more."""

    name: str

    def seek(self, positions: Mapping[str, int]) -> None:
        """Resume after the given positions (from the last checkpoint)."""

    def read_batch(self, max_events: int, timeout_s: float) -> RawBatch | None:
        """Up to ``max_events`` events; an empty batch on timeout; None at the end when ``until_end``."""

    def close(self) -> None:
        """Release files, sockets, consumer group membership."""
