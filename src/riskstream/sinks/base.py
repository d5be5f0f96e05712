"""The sink contract: where cases go once they are durably in the store's outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from riskstream.core.case import Case


class Sink(Protocol):
    """A case destination driven by the engine from the outbox.

    The engine hands over cases in ``seq`` order, only after they are committed,
    and persists :meth:`delivered_seq` so that after a crash it re-delivers from
    there. Cases at or below what a sink already holds may be handed over again
    after a restart; the sinks here ignore them.
    """

    name: str

    def deliver(self, cases: Sequence[Case]) -> None:
        """Hand over cases in seq order; may block for backpressure, never buffers without bound."""

    def delivered_seq(self) -> int:
        """High-water mark: every case with ``seq <=`` this is delivered (or dead-lettered)."""

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything handed over is delivered or dead-lettered; False on timeout."""

    def close(self) -> None:
        """Flush what can be flushed and release files, threads and connections."""


@dataclass(frozen=True)
class SinkStats:
    """Counters for the progress display and Prometheus (monotonic except ``in_flight``)."""

    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    in_flight: int = 0


@runtime_checkable
class HasStats(Protocol):
    """A sink that exposes :class:`SinkStats` (every sink in this package does)."""

    def stats(self) -> SinkStats:
        """A consistent snapshot of the counters."""
