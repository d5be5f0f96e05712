"""Progress of the Spark runner: per micro-batch figures, as Prometheus metrics and a summary.

Batch duration, input rate (Kafka rows read per second of wall time between batch starts),
processing rate (events per second of batch time), state size (feature state rows read from
the store plus carried events) and lag per partition (end offset minus next offset).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SparkMetrics:
    """The Prometheus registry of one Spark run, and the raw figures for the summary."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batch_seconds = Histogram(
            "riskstream_spark_batch_seconds",
            "Micro-batch duration (driver wall time, commit included)",
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.input_rate = Gauge(
            "riskstream_spark_input_rows_per_second", "Kafka rows read per second", registry=r
        )
        self.processing_rate = Gauge(
            "riskstream_spark_processed_events_per_second",
            "Events per second of micro-batch time",
            registry=r,
        )
        self.state_rows = Gauge(
            "riskstream_spark_state_rows",
            "Feature state rows read for the last batch plus events carried to the next",
            registry=r,
        )
        self.lag = Gauge(
            "riskstream_spark_lag",
            "Offsets behind the end, per partition",
            ["partition"],
            registry=r,
        )
        self.events = Counter("riskstream_spark_events", "Events processed", registry=r)
        self.cases = Counter("riskstream_spark_cases", "Cases raised", registry=r)
        self.durations: list[float] = []
        self.total_events = 0
        self._last_start: float | None = None

    def observe(
        self,
        *,
        started: float,
        duration_s: float,
        rows_read: int,
        events: int,
        cases: int,
        state_rows: int,
        lag: dict[str, int],
    ) -> None:
        """Record one committed micro-batch."""
        self.durations.append(duration_s)
        self.total_events += events
        self.batch_seconds.observe(duration_s)
        if self._last_start is not None and started > self._last_start:
            self.input_rate.set(rows_read / (started - self._last_start))
        self._last_start = started
        if duration_s > 0:
            self.processing_rate.set(events / duration_s)
        self.state_rows.set(state_rows)
        for part, n in lag.items():
            self.lag.labels(partition=part).set(n)
        self.events.inc(events)
        self.cases.inc(cases)

    def summary(self) -> dict[str, Any]:
        """Batch count, latency percentiles (seconds) and events per second of batch time."""
        d = np.array(self.durations) if self.durations else np.zeros(1)
        busy = float(d.sum())
        return {
            "batches": len(self.durations),
            "events_per_s_in_batches": round(self.total_events / busy, 1) if busy > 0 else 0.0,
            "batch_p50_s": round(float(np.percentile(d, 50)), 3),
            "batch_p99_s": round(float(np.percentile(d, 99)), 3),
            "batch_max_s": round(float(d.max()), 3),
        }


def now() -> float:
    """Monotonic seconds (batch start times)."""
    return time.monotonic()
