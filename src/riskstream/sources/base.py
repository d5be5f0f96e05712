"""The source contract: batches of raw event bytes with their positions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class RawBatch:
    """Raw events in source order.

    ``positions[i]`` is where event ``i`` came from, as text for quarantine
    (``file.jsonl@1234`` byte offset, ``payments/2@981`` partition and offset).
    ``resume`` maps each partition name to the position to resume from after this
    batch (file: next byte offset; Kafka: next offset); it goes into the checkpoint.
    """

    lines: list[bytes]
    positions: list[str]
    resume: dict[str, int] = field(default_factory=dict)
    #: Kafka message timestamps or receive times (ms), parallel to ``lines``, when known.
    received_ms: list[int] | None = None
    #: index -> full length of a line the source cut short (longer than ``event.max_bytes``:
    #: only a prefix is kept, the event is quarantined as oversized).
    truncated: dict[int, int] | None = None


class Source(Protocol):
    """A stream of raw events; bounded sources end, unbounded ones wait for more."""

    name: str

    def seek(self, positions: Mapping[str, int]) -> None:
        """Resume after the given positions (from the last checkpoint)."""

    def read_batch(self, max_events: int, timeout_s: float) -> RawBatch | None:
        """Up to ``max_events`` events; an empty batch on timeout; None at the end when ``until_end``."""

    def close(self) -> None:
        """Release files, sockets, consumer group membership."""
