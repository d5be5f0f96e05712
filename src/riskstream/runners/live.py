"""The ``LiveEngine`` protocol: what the HTTP API may ask of a running engine, and nothing more.

A runner implements it (the embedded runner through :class:`~riskstream.runners.embedded_live.
EmbeddedLive`); the API consumes it; ``cli.py`` hands one to the other. The API never sees a
runner's pipeline, checkpoint writer, sinks or lock: it reads typed views (:class:`LiveRule`,
:class:`RuleHits`, :class:`~riskstream.query.range.Pending`,
:class:`~riskstream.runners.stats.RunStats`) and calls the few operations below.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from riskstream.core.case import Case
from riskstream.core.events import RawBatch
from riskstream.engine.single import SingleScorer
from riskstream.models.scoring import ModelSet
from riskstream.query.index import RangeIndex
from riskstream.query.range import Pending
from riskstream.runners.stats import RunStats
from riskstream.sinks.base import SinkStats
from riskstream.spec.model import PipelineSpec

#: ``starting`` until the state is recovered from the store, ``running`` while the loop runs,
#: ``finished`` after it ended (the API may go on serving the store).
EngineState = Literal["starting", "running", "finished"]


@dataclass(frozen=True)
class LiveRule:
    """An enabled rule in force, in evaluation order: what it does and the features it reads."""

    name: str
    action: str
    score: float
    #: Names of the features its condition reads.
    features: tuple[str, ...]


@dataclass(frozen=True)
class RuleHits:
    """Hits counted by this run, and those not yet checkpointed (not in the store yet)."""

    this_run: dict[str, int]
    pending: dict[str, int]


class LiveEngine(Protocol):
    """A running engine as the API sees it."""

    @property
    def spec(self) -> PipelineSpec:
        """The spec in force (follows live reloads of rules and lists)."""
        ...

    @property
    def spec_path(self) -> Path | None:
        """The spec file the engine reloads (the rule lab writes approved rules into it)."""
        ...

    @property
    def data_dir(self) -> Path:
        """Where the run keeps its local files (and the embedded store)."""
        ...

    @property
    def store_dsn(self) -> str | None:
        """The PostgreSQL DSN the run writes to (``--store-dsn``), if given."""
        ...

    @property
    def state(self) -> EngineState:
        """Where the engine is in its life."""
        ...

    @property
    def stats(self) -> RunStats:
        """The run's counters (read without a lock: each field is a consistent value)."""
        ...

    def locked(self) -> AbstractContextManager[None]:
        """Hold the engine still: no batch or checkpoint changes its state meanwhile."""
        ...

    def try_locked(self) -> AbstractContextManager[bool]:
        """:meth:`locked` if nothing holds the engine now (yields True), else yields False at
        once: the API's event loop scores a decide request itself only when it costs no wait."""
        ...

    def settled(self) -> AbstractContextManager[None]:
        """:meth:`locked`, once the checkpoint in flight (if any) is written: engine state and
        store then agree (a failed checkpoint is the run's to report, not raised here)."""
        ...

    def watermark(self) -> int | None:
        """Largest event time processed."""
        ...

    def available_from(self) -> dict[str, int]:
        """First retained bucket start per tier at the watermark."""
        ...

    def pending(self) -> Pending:
        """Buckets processed but not yet checkpointed (call under :meth:`locked`)."""
        ...

    def range_index(self) -> RangeIndex | None:
        """The in-memory range index the engine keeps current (None: turned off). The API
        loads it under :meth:`settled` when it is not loaded, then reads it without a lock."""
        ...

    def rules(self) -> list[LiveRule]:
        """The enabled rules in force, in evaluation order (the order of a scorer's flags)."""
        ...

    def models(self) -> list[str]:
        """The models scoring events (their names)."""
        ...

    def model_set(self) -> ModelSet:
        """The models the engine scores with: versions, test metrics, live scores and drift
        (read-only for the API)."""
        ...

    def feature_metrics(self) -> set[str]:
        """The metrics whose features the rules and models read."""
        ...

    def rule_hits(self) -> RuleHits:
        """Rule hit counts of this run (call under :meth:`locked`)."""
        ...

    def sink_stats(self) -> list[tuple[str, SinkStats]]:
        """Per sink (by name), its delivery counters."""
        ...

    def scorer(self) -> SingleScorer:
        """Scores events one by one against the live state without changing it (call under
        :meth:`locked`); its flags follow :meth:`rules`."""
        ...

    def ingest(self, batch: RawBatch) -> list[Case]:
        """Process posted events like the stream's (checkpointed with it); the cases raised."""
        ...
