"""The ``Store`` protocol: everything the runners, queries and the API ask of a store.

A backend (``store/duckdb``, ``store/postgres``) implements it over the core types
(:class:`~riskstream.core.checkpoint.Checkpoint`, :class:`~riskstream.core.case.Case`,
bucket frames whose columns are those of :mod:`riskstream.core.stats`); nothing outside
``store/`` writes SQL. The contract test suite ``tests/unit/store/test_store_contract.py``
runs every backend through the same checks: it is the definition of this protocol.

Bucket frames:

* numeric partials -- ``key, start, count, sum, min, max, m2`` (one row per stored
  partial; several rows of one bucket are merged by the reader, :func:`core.stats.merge_rows`);
* distinct rows -- ``vals`` (exact value list, at most ``core.sketch.EXACT_LIMIT``) or ``hll``
  (a serialized sketch); distribution rows -- ``category, count``.

A coarse tier's buckets read the same whether they were written, rolled up or are still
the finer tier's rows (:mod:`riskstream.core.layout`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import polars as pl

from riskstream.core.case import Case, CaseQuery, Decision, StoredCase
from riskstream.core.checkpoint import Checkpoint
from riskstream.core.lab import RuleVersion

#: ``(tier, start, end)``: whole buckets of ``tier`` with start in ``[start, end)``.
Segment = tuple[str, int, int]
#: Computes the segments of a query from the meta read in the same snapshot.
PlanFor = Callable[[Mapping[str, str]], Sequence[Segment]]


@dataclass(frozen=True)
class KeyRows:
    """Everything stored for one (metric, key) inside a plan, plus the meta it was read with."""

    meta: dict[str, str]
    #: ``count, sum, min, max, m2``: every partial row inside the plan.
    numeric: pl.DataFrame
    #: Per distinct row: its exact value list or its serialized sketch.
    sketches: list[tuple[list[str] | None, bytes | None]]
    #: ``category, count``.
    distribution: pl.DataFrame


class BucketReader(Protocol):
    """The one read a stitched range query needs (``query.range.query_range``)."""

    def key_rows(
        self, tiers: Sequence[str], metric: str, key: str, plan_for: PlanFor, stats: Sequence[str]
    ) -> KeyRows:
        """The rows of ``metric``/``key`` inside the plan ``plan_for(meta)``, meta and rows read
        in one consistent snapshot. Distinct and distribution rows only if in ``stats``."""
        ...


@runtime_checkable
class Store(BucketReader, Protocol):
    """A store of buckets, source positions, the case outbox and queue, and run state."""

    @property
    def read_only(self) -> bool:
        """True when this handle cannot write (a query service over another process's store)."""
        ...

    @property
    def shared(self) -> bool:
        """True when several engines write this store (cases travel in the bucket checkpoint)."""
        ...

    @property
    def concurrent_commits(self) -> bool:
        """True when a small commit (the case outbox) runs beside a checkpoint in flight
        instead of waiting for it."""
        ...

    # ---- the checkpoint (one transaction) ----------------------------------------------

    def write_checkpoint(self, cp: Checkpoint) -> None:
        """Write everything in ``cp`` atomically: all of it lands, or none of it (StoreError)."""
        ...

    # ---- run state -----------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """All meta keys (schema_version, watermark, next_case_seq, quarantine_bytes, roll marks)."""
        ...

    def positions(self, source: str) -> dict[str, int]:
        """Stored resume positions of ``source`` by partition."""
        ...

    def sink_marks(self) -> dict[str, int]:
        """Per sink, the highest case seq known delivered."""
        ...

    def rename_sink_mark(self, old: str, new: str) -> None:
        """Move the delivery mark of sink ``old`` to ``new`` (keeping the higher); drop ``old``."""
        ...

    def throttles(self) -> dict[tuple[str, str], int]:
        """``(rule, throttle key) -> until (ms)`` of ``once_per`` rules."""
        ...

    def rule_hits(self) -> dict[str, int]:
        """Checkpointed hit count per rule."""
        ...

    # ---- buckets -------------------------------------------------------------------------

    def buckets(
        self, metric: str, tier: str, key: str | None, start_from: int, start_to: int
    ) -> pl.DataFrame:
        """Numeric partials (``key, start, count, sum, min, max, m2``) of ``metric`` at ``tier``
        with start in ``[start_from, start_to)``, of one key or (``key=None``) every key."""
        ...

    def key_rows(
        self, tiers: Sequence[str], metric: str, key: str, plan_for: PlanFor, stats: Sequence[str]
    ) -> KeyRows:
        """The rows of ``metric``/``key`` inside the plan ``plan_for(meta)``, meta and rows read
        in one consistent snapshot. Distinct and distribution rows only if in ``stats``."""
        ...

    def feature_values(self, metric: str, tier: str, since: int) -> pl.DataFrame:
        """Values behind distinct features (``key, b, c``) with bucket ``b >= since``."""
        ...

    # ---- cases and decisions -------------------------------------------------------------

    def cases_after(self, seq: int, limit: int | None = None) -> list[Case]:
        """Outbox cases with seq greater than ``seq``, in order (what sinks re-deliver)."""
        ...

    def find_cases(self, query: CaseQuery, limit: int, offset: int) -> tuple[int, list[StoredCase]]:
        """How many cases match ``query``, and one page of them, newest event first."""
        ...

    def get_case(self, case_id: str) -> StoredCase | None:
        """One case of the queue, or None."""
        ...

    def decisions(self, case_id: str) -> list[Decision]:
        """The decisions recorded on ``case_id``, oldest first."""
        ...

    def record_decision(self, case_id: str, decision: Decision) -> bool:
        """Record ``decision`` (and the status it implies, ``core.case.STATUS_OF_DECISION``)
        in one transaction; False when there is no such case."""
        ...

    # ---- the rule lab: labels and rule versions ------------------------------------------

    def labels(self) -> pl.DataFrame:
        """The latest label per event id (``core.lab.LABEL_SCHEMA``: ``event_id``, ``label``
        1 fraud / 0 not), from imported labels and analysts' decisions, the latest by time."""
        ...

    def add_labels(self, frame: pl.DataFrame, source: str, at_ms: int) -> int:
        """Append ``frame`` (``event_id``, ``label``) as labels from ``source``; the count."""
        ...

    def case_hits(self, from_ms: int | None, to_ms: int | None) -> pl.DataFrame:
        """``rule, event_id`` of the stored cases with event time in ``[from_ms, to_ms)``."""
        ...

    def rule_versions(self, rule: str) -> list[RuleVersion]:
        """Every recorded version of ``rule``, newest first."""
        ...

    def add_rule_version(
        self,
        rule: str,
        body: dict[str, Any],
        *,
        author: str,
        status: str,
        at_ms: int,
        summary: dict[str, Any] | None = None,
        diff: str = "",
        note: str = "",
    ) -> int:
        """Append a version of ``rule`` (numbered 1, 2, ... per rule); its number."""
        ...

    def set_rule_status(
        self,
        rule: str,
        version: int,
        status: str,
        *,
        approved_by: str | None = None,
        approved_ms: int | None = None,
    ) -> None:
        """Set a version's status (``live`` supersedes the live version) and its approver."""
        ...

    # ---- maintenance ---------------------------------------------------------------------

    def ping(self) -> None:
        """Raise StoreError when the store cannot be read (readiness)."""
        ...

    def configure_tiers(self, tiers: Sequence[str]) -> dict[str, int]:
        """Set up lazy roll-up for the spec's ``tiers``; the roll marks (``core.layout``)."""
        ...

    def roll_up(self, watermark: int, tiers: Sequence[str]) -> dict[str, int]:
        """Roll buckets closed before ``watermark``'s into coarser tiers; the new marks."""
        ...

    def roll_marks(self) -> dict[str, int]:
        """The stored roll marks."""
        ...

    def compact_before(
        self,
        available_from: dict[str, int],
        value_horizons: dict[tuple[str, str], int] | None = None,
    ) -> int:
        """Drop rows no tier can reach any more (retention) and distinct-feature values older
        than their horizon; the number of bucket rows dropped."""
        ...

    def fold_when_grown(self, factor: float = 2.0, at_least: int = 100_000) -> bool:
        """Fold the rows of each bucket into one when the tables have grown enough; True if done."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
