"""What one checkpoint writes, atomically."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from riskstream.core.case import Case


@dataclass
class Checkpoint:
    """Dirty buckets, source positions, new cases and marks: one store transaction.

    ``partials``/``sketches``/``distributions`` are keyed by (metric, tier).
    ``sketches`` frames have columns key, start, hll (serialized, to be unioned
    with what the store holds); ``distributions`` frames key, start, category, count.
    """

    source: str
    positions: dict[str, int] = field(default_factory=dict)
    partials: dict[tuple[str, str], pl.DataFrame] = field(default_factory=dict)
    sketches: dict[tuple[str, str], pl.DataFrame] = field(default_factory=dict)
    distributions: dict[tuple[str, str], pl.DataFrame] = field(default_factory=dict)
    feature_values: dict[tuple[str, str], pl.DataFrame] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)
    throttles: list[tuple[str, str, int]] = field(default_factory=list)
    rule_hits: dict[str, int] = field(default_factory=dict)
    sink_marks: dict[str, int] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    #: Set while the buckets are still to be aggregated (``Pipeline.take_checkpoint(defer=True)``).
    prepare: Callable[[], None] | None = None
