"""Metric contributions of a batch and the pending (not yet checkpointed) buckets they make."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from riskstream.core import layout, sketch
from riskstream.core.keys import CODE, KEY, key_expr
from riskstream.core.stats import CATEGORY, NUMERIC_VALUE_STATS, START, VALUE, partial_aggs
from riskstream.core.tiers import bucket_start, start_expr
from riskstream.engine.decode import SEQ, TIME
from riskstream.rules import CompiledExpr, ListValues
from riskstream.spec.model import MetricSpec

__all__ = ["CATEGORY", "CODE", "NUMERIC_VALUE_STATS", "CompiledMetric", "Pending"]


@dataclass
class CompiledMetric:
    """A metric ready to run: how to key, filter and value a batch."""

    name: str
    spec: MetricSpec
    where: CompiledExpr | None

    @property
    def numeric(self) -> bool:
        """Whether the value feeds numeric stats (else it is a category/identifier)."""
        return bool(NUMERIC_VALUE_STATS & set(self.spec.stats))

    def key_expr(self) -> pl.Expr:
        """Key: the dimension value, or the values joined by ``|`` for several fields."""
        return key_expr(self.spec.dimension)

    def contributions(self, frame: pl.DataFrame, lists: ListValues) -> pl.DataFrame:
        """Rows of ``frame`` that count for this metric: ``key``, ``_t``, ``_seq``, ``v``, ``c``."""
        lf = frame.lazy()
        if self.where is not None:
            lf = lf.filter(self.where.expr(lists).fill_null(False))
        cols = [self.key_expr().alias(KEY), pl.col(TIME), pl.col(SEQ)]
        value = self.spec.value
        if value is not None and self.numeric:
            cols.append(pl.col(value).cast(pl.Float64, strict=False).alias(VALUE))
        else:
            cols.append(pl.lit(None, pl.Float64).alias(VALUE))
        if value is not None:
            cols.append(pl.col(value).cast(pl.String).alias(CATEGORY))
        else:
            cols.append(pl.lit(None, pl.String).alias(CATEGORY))
        out = lf.select(cols).filter(pl.col(KEY).is_not_null())
        if value is not None:
            out = out.filter(
                pl.col(VALUE).is_not_null() if self.numeric else pl.col(CATEGORY).is_not_null()
            )
        return out.collect()


@dataclass
class Pending:
    """Contributions since the last checkpoint, aggregated into buckets per (metric, tier) on demand.

    Batches only append their contribution rows (cheap); the per-tier group-bys run once per
    checkpoint (or when the API asks for pending buckets), all metric x tier aggregations in one
    parallel ``collect_all``, instead of once per batch followed by a merge of the partials.
    """

    contributions: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    #: Roll marks of the store (``core.layout``): a coarse tier gets only the contributions
    #: before its mark (late deltas); the rest reaches it by roll-up from the finer tiers.
    #: Empty: every tier gets every contribution.
    rolled: dict[str, int] = field(default_factory=dict)
    _shape: dict[str, tuple[frozenset[str], tuple[str, ...]]] = field(default_factory=dict)
    _cache: (
        tuple[
            dict[tuple[str, str], pl.DataFrame],
            dict[tuple[str, str], pl.DataFrame],
            dict[tuple[str, str], pl.DataFrame],
        ]
        | None
    ) = None

    def add(self, metric: CompiledMetric, contrib: pl.DataFrame, tiers: Sequence[str]) -> None:
        """Keep one batch's contributions (aggregated at the next :meth:`frames`)."""
        if not contrib.height:
            return
        self._shape[metric.name] = (frozenset(metric.spec.stats), tuple(tiers))
        self.contributions.setdefault(metric.name, []).append(
            contrib.select(KEY, TIME, VALUE, CATEGORY)
        )
        self._cache = None

    def frames(
        self,
    ) -> tuple[
        dict[tuple[str, str], pl.DataFrame],
        dict[tuple[str, str], pl.DataFrame],
        dict[tuple[str, str], pl.DataFrame],
    ]:
        """Partials, distinct value sets and distribution counts, one row per (key, start), per (metric, tier)."""
        if self._cache is None:
            self._cache = self._aggregate()
        return self._cache

    @property
    def partials(self) -> dict[tuple[str, str], list[pl.DataFrame]]:
        """Pending numeric partials per (metric, tier), as a one-frame list."""
        return {slot: [f] for slot, f in self.frames()[0].items()}

    @property
    def sketches(self) -> dict[tuple[str, str], list[pl.DataFrame]]:
        """Pending distinct value sets per (metric, tier), as a one-frame list."""
        return {slot: [f] for slot, f in self.frames()[1].items()}

    @property
    def distributions(self) -> dict[tuple[str, str], list[pl.DataFrame]]:
        """Pending distribution counts per (metric, tier), as a one-frame list."""
        return {slot: [f] for slot, f in self.frames()[2].items()}

    def _aggregate(
        self,
    ) -> tuple[
        dict[tuple[str, str], pl.DataFrame],
        dict[tuple[str, str], pl.DataFrame],
        dict[tuple[str, str], pl.DataFrame],
    ]:
        jobs: list[tuple[str, tuple[str, str], pl.LazyFrame]] = []
        for name, frames in self.contributions.items():
            if not frames:
                continue
            stats, tiers = self._shape[name]
            contrib = frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=False)
            ladder = layout.ladder_of(tiers)
            t_min = contrib[TIME].min()
            assert isinstance(t_min, int)
            # A dense code per key of this checkpoint (``_code``) rides along in every frame,
            # so the store maps keys to its ids once per key, not once per bucket row.
            codes = contrib.select(pl.col(KEY).unique()).with_row_index(CODE)
            contrib = contrib.join(codes, on=KEY, how="left")
            for tier in tiers:
                slot = (name, tier)
                mark = layout.mark(self.rolled, ladder, tier)
                if bucket_start(t_min, tier) >= mark:
                    continue  # no late deltas: roll-up brings these buckets
                source = contrib.lazy()
                if mark < layout.ALWAYS:
                    source = source.filter(start_expr(pl.col(TIME), tier) < mark)
                # Grouped by the integer code (faster than by the key text); the key rides along.
                start = start_expr(pl.col(TIME), tier).alias(START)
                jobs.append(
                    (
                        "p",
                        slot,
                        source.group_by(CODE, start)
                        .agg(pl.col(KEY).first(), *partial_aggs(pl.col(VALUE)))
                        .select(KEY, START, "count", "sum", "min", "max", "m2", CODE),
                    )
                )
                if "distinct" in stats:
                    jobs.append(
                        (
                            "s",
                            slot,
                            source.filter(pl.col(CATEGORY).is_not_null())
                            .group_by(CODE, start)
                            .agg(pl.col(KEY).first(), pl.col(CATEGORY).unique().alias("vals"))
                            .select(KEY, START, "vals", CODE),
                        )
                    )
                if "distribution" in stats:
                    jobs.append(
                        (
                            "d",
                            slot,
                            source.group_by(
                                KEY,
                                start_expr(pl.col(TIME), tier).alias(START),
                                pl.col(CATEGORY).alias("category"),
                            ).agg(pl.len().cast(pl.Int64).alias("count")),
                        )
                    )
        done = pl.collect_all([lf for _, _, lf in jobs]) if jobs else []
        parts: dict[tuple[str, str], pl.DataFrame] = {}
        sketches: dict[tuple[str, str], pl.DataFrame] = {}
        dists: dict[tuple[str, str], pl.DataFrame] = {}
        for (kind, slot, _), frame in zip(jobs, done, strict=True):
            if kind == "p":
                parts[slot] = frame
            elif kind == "s":
                sketches[slot] = sketch.finish_values(frame)
            else:
                dists[slot] = frame
        return parts, sketches, dists

    def set_rolled(self, marks: dict[str, int]) -> None:
        """New roll marks (after a roll-up in the store; nothing is pending then)."""
        self.rolled = dict(marks)
        self._cache = None

    def compact(self) -> None:
        """Concatenate accumulated contribution frames so many small batches do not pile up."""
        for name, frames in self.contributions.items():
            if len(frames) > 8:
                self.contributions[name] = [pl.concat(frames)]

    def clear(self) -> None:
        """Forget everything (after it was checkpointed)."""
        self.contributions.clear()
        self._cache = None
