"""Metric contributions of a batch and the pending (not yet checkpointed) buckets they make."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from riskstream.engine import sketch
from riskstream.engine.decode import SEQ, TIME
from riskstream.engine.tiers import KEY, START, VALUE, merge_partials, partials, start_expr
from riskstream.rules import CompiledExpr, ListValues
from riskstream.spec.model import MetricSpec

NUMERIC_VALUE_STATS = frozenset({"sum", "avg", "min", "max", "var", "stddev"})
CATEGORY = "c"


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
        dims = [pl.col(d).cast(pl.String) for d in self.spec.dimension]
        return dims[0] if len(dims) == 1 else pl.concat_str(dims, separator="|")

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
    """Buckets touched since the last checkpoint, per (metric, tier)."""

    partials: dict[tuple[str, str], list[pl.DataFrame]] = field(default_factory=dict)
    sketches: dict[tuple[str, str], list[pl.DataFrame]] = field(default_factory=dict)
    distributions: dict[tuple[str, str], list[pl.DataFrame]] = field(default_factory=dict)

    def add(self, metric: CompiledMetric, contrib: pl.DataFrame, tiers: Sequence[str]) -> None:
        """Fold one batch's contributions into every tier."""
        if not contrib.height:
            return
        stats = set(metric.spec.stats)
        for tier in tiers:
            slot = (metric.name, tier)
            self.partials.setdefault(slot, []).append(partials(contrib, tier))
            if "distinct" in stats:
                self._add_distinct(slot, contrib, tier)
            if "distribution" in stats:
                dist = (
                    contrib.lazy()
                    .with_columns(start_expr(pl.col(TIME), tier).alias(START))
                    .group_by(KEY, START, pl.col(CATEGORY).alias("category"))
                    .agg(pl.len().cast(pl.Int64).alias("count"))
                    .collect()
                )
                self.distributions.setdefault(slot, []).append(dist)

    def _add_distinct(self, slot: tuple[str, str], contrib: pl.DataFrame, tier: str) -> None:
        self.sketches.setdefault(slot, []).append(
            contrib.lazy()
            .with_columns(start_expr(pl.col(TIME), tier).alias(START))
            .group_by(KEY, START)
            .agg(pl.col(CATEGORY).unique().alias("vals"))
            .collect()
        )

    def frames(
        self,
    ) -> tuple[
        dict[tuple[str, str], pl.DataFrame],
        dict[tuple[str, str], pl.DataFrame],
        dict[tuple[str, str], pl.DataFrame],
    ]:
        """Merged partials, distinct value sets and distribution counts, per (metric, tier)."""
        parts = {slot: merge_partials(frames) for slot, frames in self.partials.items()}
        sketches = {
            slot: sketch.compact_values(frames) for slot, frames in self.sketches.items() if frames
        }
        dists = {
            slot: pl.concat(frames).group_by(KEY, START, "category").agg(pl.col("count").sum())
            for slot, frames in self.distributions.items()
            if frames
        }
        return parts, sketches, dists

    def compact(self) -> None:
        """Merge accumulated partial frames so many small batches do not pile up."""
        for slot, frames in self.partials.items():
            if len(frames) > 8:
                self.partials[slot] = [merge_partials(frames)]
        for slot, dframes in self.distributions.items():
            if len(dframes) > 8:
                self.distributions[slot] = [
                    pl.concat(dframes).group_by(KEY, START, "category").agg(pl.col("count").sum())
                ]

    def clear(self) -> None:
        """Forget everything (after it was checkpointed)."""
        self.partials.clear()
        self.sketches.clear()
        self.distributions.clear()
