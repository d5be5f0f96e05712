"""The run's counters: shown live, in ``--summary-json`` and by the API."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunStats:
    """Counters shown live and in the summary."""

    events: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    cases: int = 0
    cases_by_rule: Counter[str] = field(default_factory=Counter)
    checkpoints: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    reloads: int = 0
    reload_errors: list[str] = field(default_factory=list)
    lag: dict[str, int] = field(default_factory=dict)
    #: Partitions a bounded run still needs that another consumer-group member holds.
    waiting: list[str] = field(default_factory=list)
    last_batch_s: float = 0.0
    last_checkpoint_s: float = 0.0

    @property
    def elapsed(self) -> float:
        """Seconds since start (until the end, once finished)."""
        return (self.finished or time.monotonic()) - self.started

    def summary(self) -> dict[str, Any]:
        """The JSON summary (``--summary-json``)."""
        return {
            "events": self.events,
            "events_per_s": round(self.events / self.elapsed, 1) if self.elapsed > 0 else 0.0,
            "elapsed_s": round(self.elapsed, 3),
            "quarantined": sum(self.quarantined.values()),
            "quarantined_by_reason": dict(self.quarantined),
            "cases": self.cases,
            "cases_by_rule": dict(self.cases_by_rule),
            "checkpoints": self.checkpoints,
            "reloads": self.reloads,
            "reload_errors": list(self.reload_errors),
            "lag": dict(self.lag),
        }
