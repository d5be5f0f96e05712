"""Prometheus metrics: one registry per app; runner counters are read at scrape time.

Series (``_total`` added to counters by the client library):

* ``riskstream_events_total``, ``riskstream_batches_total``, ``riskstream_checkpoints_total``
* ``riskstream_source_lag{partition}`` (events behind the end of the source)
* ``riskstream_batch_seconds`` / ``riskstream_checkpoint_seconds`` histograms
* ``riskstream_cases_total{rule,action}``, ``riskstream_quarantined_total{reason}``
* ``riskstream_sink_deliveries_total{sink,state}`` (delivered/retried/dead_lettered),
  ``riskstream_sink_in_flight{sink}``
* ``riskstream_watermark_ms``, ``riskstream_runner_up`` (1 while the runner is running)
* ``riskstream_decide_seconds`` histogram, ``riskstream_decide_total{action}``
* ``riskstream_model_info``, ``riskstream_model_score`` histogram, ``riskstream_model_psi``
  (score distribution and drift of the spec's models: :mod:`riskstream.api.modelview`)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from riskstream.api.context import ApiContext, engine_state
from riskstream.api.modelview import ModelCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_DECIDE_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

K = TypeVar("K")


def _copy(d: Mapping[K, Any]) -> dict[K, Any]:
    """Copy a dict another thread may be growing (retry the rare 'changed size' race)."""
    for _ in range(5):
        try:
            return dict(d)
        except RuntimeError:
            continue
    return {}


class RunnerCollector(Collector):
    """Reads the engine's ``stats`` and its sinks' counters when Prometheus scrapes."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        engine = self.ctx.engine
        up = GaugeMetricFamily("riskstream_runner_up", "1 while the engine runner is running")
        up.add_metric([], 1.0 if engine_state(engine) == "running" else 0.0)
        yield up
        if engine is None:
            return
        stats = engine.stats
        yield CounterMetricFamily("riskstream_events", "Events processed", value=stats.events)
        yield CounterMetricFamily(
            "riskstream_batches", "Micro-batches processed", value=stats.batches
        )
        yield CounterMetricFamily(
            "riskstream_checkpoints", "Checkpoints written", value=stats.checkpoints
        )
        lag = GaugeMetricFamily(
            "riskstream_source_lag", "Events behind the end of the source", labels=["partition"]
        )
        for part, value in sorted(_copy(stats.lag).items()):
            lag.add_metric([str(part)], float(value))
        yield lag
        actions = {name: r.action for name, r in engine.spec.rules.items()}
        cases = CounterMetricFamily(
            "riskstream_cases", "Cases raised by this run", labels=["rule", "action"]
        )
        for rule, n in sorted(_copy(stats.cases_by_rule).items()):
            cases.add_metric([rule, actions.get(rule, "unknown")], float(n))
        yield cases
        quarantined = CounterMetricFamily(
            "riskstream_quarantined", "Events quarantined", labels=["reason"]
        )
        for reason, n in sorted(_copy(stats.quarantined).items()):
            quarantined.add_metric([reason], float(n))
        yield quarantined
        deliveries = CounterMetricFamily(
            "riskstream_sink_deliveries",
            "Case deliveries by sink and outcome",
            labels=["sink", "state"],
        )
        in_flight = GaugeMetricFamily(
            "riskstream_sink_in_flight", "Cases handed to a sink, not settled", labels=["sink"]
        )
        for name, s in engine.sink_stats():
            for state, value in (
                ("delivered", s.delivered),
                ("retried", s.retried),
                ("dead_lettered", s.dead_lettered),
            ):
                deliveries.add_metric([name, state], float(value))
            in_flight.add_metric([name], float(s.in_flight))
        yield deliveries
        yield in_flight
        wm = engine.watermark()
        if wm is not None:
            watermark = GaugeMetricFamily(
                "riskstream_watermark_ms", "Largest event time seen (epoch ms)"
            )
            watermark.add_metric([], float(wm))
            yield watermark


class ApiMetrics:
    """The app's registry, its histograms, and a sampler turning runner timings into observations."""

    def __init__(self, ctx: ApiContext, sample_every_s: float = 0.05) -> None:
        self.ctx = ctx
        self.registry = CollectorRegistry()
        self.registry.register(RunnerCollector(ctx))
        self.registry.register(ModelCollector(ctx))
        self.batch_seconds = Histogram(
            "riskstream_batch_seconds",
            "Time to process one micro-batch",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.checkpoint_seconds = Histogram(
            "riskstream_checkpoint_seconds",
            "Time to write one checkpoint",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decide_seconds = Histogram(
            "riskstream_decide_seconds",
            "Engine time of POST /v1/decide",
            buckets=_DECIDE_BUCKETS,
            registry=self.registry,
        )
        self.decide_total = Counter(
            "riskstream_decide", "Decisions made, by action", ["action"], registry=self.registry
        )
        self._every = sample_every_s
        self._seen = (0, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe_decide(self, seconds: float, action: str) -> None:
        """Count one decision."""
        self.decide_seconds.observe(seconds)
        self.decide_total.labels(action).inc()

    def sample(self) -> None:
        """Observe the latest batch/checkpoint durations if new ones happened since the last sample."""
        engine = self.ctx.engine
        if engine is None:
            return
        with self._lock:
            stats = engine.stats
            batches, checkpoints = stats.batches, stats.checkpoints
            if batches != self._seen[0] and stats.last_batch_s > 0:
                self.batch_seconds.observe(stats.last_batch_s)
            if checkpoints != self._seen[1] and stats.last_checkpoint_s > 0:
                self.checkpoint_seconds.observe(stats.last_checkpoint_s)
            self._seen = (batches, checkpoints)

    def start(self) -> None:
        """Sample in a daemon thread until :meth:`stop`."""
        if self.ctx.engine is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name="riskstream-api-metrics", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the sampler."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self.sample()

    def exposition(self) -> bytes:
        """The Prometheus text format."""
        self.sample()
        return generate_latest(self.registry)
