"""What single-event scoring reads of a pipeline: a small typed protocol the pipeline implements.

The scorer never reaches into pipeline internals: it reads the rules, metrics, lists, decoder,
watermark and the feature groups' state through these members, and falls back to the batch
path (:meth:`ScoringView.evaluate_batch`) for what it does not decode itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import polars as pl

from riskstream.core.events import RawBatch
from riskstream.engine import features as feat
from riskstream.engine.decode import Decoder, Quarantined
from riskstream.engine.metrics import CompiledMetric
from riskstream.models.scoring import BatchScores, ModelSet
from riskstream.rules import CompiledExpr, ListRegistry


class RuleView(Protocol):
    """One enabled rule: its name and its compiled condition."""

    @property
    def name(self) -> str: ...

    @property
    def compiled(self) -> CompiledExpr: ...


class GroupView(Protocol):
    """The feature requests of one metric at one tier and the state frames they slide over.

    ``tail`` (numeric state) and ``values`` (distinct state) are frames sorted by key hash.
    """

    @property
    def numeric(self) -> list[feat.Request]: ...

    @property
    def distinct(self) -> list[feat.Request]: ...

    @property
    def tail(self) -> list[pl.DataFrame]: ...

    @property
    def values(self) -> list[pl.DataFrame]: ...


class ScoringView(Protocol):
    """The pipeline as the single-event scorer reads it (:class:`~riskstream.engine.pipeline.Pipeline`)."""

    @property
    def rules(self) -> Sequence[RuleView]: ...

    @property
    def models(self) -> ModelSet: ...

    @property
    def metrics(self) -> Sequence[CompiledMetric]: ...

    @property
    def lists(self) -> ListRegistry: ...

    @property
    def decoder(self) -> Decoder: ...

    @property
    def watermark(self) -> int | None: ...

    @property
    def next_seq(self) -> int: ...

    @property
    def feature_groups(self) -> Mapping[tuple[str, str], GroupView]:
        """(metric, tier) -> group; the same mapping object until the rules change."""
        ...

    def available_from(self) -> dict[str, int]:
        """First retained bucket start per tier at the current watermark."""
        ...

    def score_models(
        self, frame: pl.DataFrame, *, observe: bool = True
    ) -> tuple[pl.DataFrame, BatchScores | None]:
        """``frame`` with the models' score columns."""
        ...

    def evaluate_batch(
        self, lines_batch: RawBatch
    ) -> tuple[pl.DataFrame, list[Quarantined], dict[str, pl.Series]]:
        """The batch path on ``lines_batch``, state unchanged."""
        ...
