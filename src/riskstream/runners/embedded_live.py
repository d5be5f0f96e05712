"""The embedded runner seen through the ``LiveEngine`` protocol (what ``cli.py`` gives the API)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from riskstream.core.case import Case
from riskstream.core.events import RawBatch
from riskstream.engine.single import SingleScorer, scorer_for
from riskstream.models.scoring import ModelSet
from riskstream.query.index import RangeIndex
from riskstream.query.range import Pending
from riskstream.runners.embedded import EmbeddedRunner
from riskstream.runners.live import EngineState, LiveEngine, LiveRule, RuleHits
from riskstream.runners.stats import RunStats
from riskstream.sinks.base import HasStats, SinkStats
from riskstream.spec.model import PipelineSpec


class EmbeddedLive:
    """A :class:`LiveEngine` over an :class:`EmbeddedRunner` (running, or finished)."""

    def __init__(self, runner: EmbeddedRunner, *, index: bool = True) -> None:
        self._runner = runner
        #: Stitched range answers from memory (``query.index``), fed by the pipeline.
        self._index = RangeIndex(runner.spec) if index else None
        runner.pipeline.listener = self._index

    @property
    def spec(self) -> PipelineSpec:
        return self._runner.spec

    @property
    def spec_path(self) -> Path | None:
        return self._runner.spec_path

    @property
    def data_dir(self) -> Path:
        return self._runner.data_dir

    @property
    def store_dsn(self) -> str | None:
        return self._runner.store_dsn

    @property
    def state(self) -> EngineState:
        if self._runner.running:
            return "running"
        return "finished" if self._runner.stats.finished is not None else "starting"

    @property
    def stats(self) -> RunStats:
        return self._runner.stats

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._runner.lock:
            yield

    @contextmanager
    def try_locked(self) -> Iterator[bool]:
        got = self._runner.lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                self._runner.lock.release()

    @contextmanager
    def settled(self) -> Iterator[None]:
        with self._runner.lock:
            # A checkpoint in flight is in neither the store nor the pending state yet.
            self._runner.writer.wait(reraise=False)
            yield

    def watermark(self) -> int | None:
        return self._runner.pipeline.watermark

    def available_from(self) -> dict[str, int]:
        return self._runner.pipeline.available_from()

    def pending(self) -> Pending:
        pending = self._runner.pipeline.pending
        parts, sketches, dists = pending.frames()
        return Pending(parts, sketches, dists, dict(pending.rolled))

    def range_index(self) -> RangeIndex | None:
        return self._index

    def rules(self) -> list[LiveRule]:
        return [
            LiveRule(
                name=r.name,
                action=r.action,
                score=float(r.score),
                features=tuple(ref.name for ref in r.compiled.features),
            )
            for r in self._runner.pipeline.rules
        ]

    def models(self) -> list[str]:
        return list(self._runner.pipeline.models.models)

    def model_set(self) -> ModelSet:
        return self._runner.pipeline.models

    def feature_metrics(self) -> set[str]:
        return {metric for metric, _tier in self._runner.pipeline.feature_groups}

    def rule_hits(self) -> RuleHits:
        pipeline = self._runner.pipeline
        return RuleHits(dict(pipeline.rule_hits_total), pipeline.pending_rule_hits())

    def sink_stats(self) -> list[tuple[str, SinkStats]]:
        return [
            (str(getattr(sink, "name", type(sink).__name__)), sink.stats())
            for sink in list(self._runner.sinks)
            if isinstance(sink, HasStats)
        ]

    def scorer(self) -> SingleScorer:
        return scorer_for(self._runner.pipeline)

    def ingest(self, batch: RawBatch) -> list[Case]:
        return self._runner.ingest_api(batch)


def _implements_protocol(live: EmbeddedLive) -> LiveEngine:
    """mypy checks here that :class:`EmbeddedLive` implements ``LiveEngine``."""
    return live
