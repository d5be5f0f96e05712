"""Bucket partial aggregates per tier, vectorized, and their exact merge.

A numeric partial is ``(count, sum, min, max, m2)`` where ``m2`` is the sum of
squared deviations from the bucket mean; partials merge exactly (Chan et al.),
so any union of buckets gives count/sum/min/max exactly and var to rounding.
"""

from __future__ import annotations

import polars as pl

from riskstream.spec.durations import TIER_MS, WEEK_OFFSET_MS

KEY = "key"
START = "start"
VALUE = "v"
PARTIAL_SCHEMA: dict[str, pl.DataType] = {
    KEY: pl.String(),
    START: pl.Int64(),
    "count": pl.Int64(),
    "sum": pl.Float64(),
    "min": pl.Float64(),
    "max": pl.Float64(),
    "m2": pl.Float64(),
}


def start_expr(time: pl.Expr, tier: str) -> pl.Expr:
    """Bucket start (ms) of each instant in ``time`` for ``tier``; weeks start Monday UTC."""
    width = TIER_MS[tier]
    if tier == "week":
        return ((time - WEEK_OFFSET_MS) // width) * width + WEEK_OFFSET_MS
    return (time // width) * width


def partials(contrib: pl.DataFrame, tier: str, time_col: str = "_t") -> pl.DataFrame:
    """Aggregate contributions (``key``, time, ``v``) into one partial per (key, bucket start)."""
    return partials_lazy(contrib.lazy(), tier, time_col).collect()


def partials_lazy(
    contrib: pl.LazyFrame, tier: str, time_col: str = "_t", extra: list[pl.Expr] | None = None
) -> pl.LazyFrame:
    """The query behind :func:`partials` (to collect several in parallel); ``extra``
    aggregations are appended after the partial's columns."""
    v = pl.col(VALUE)
    return contrib.group_by(KEY, start_expr(pl.col(time_col), tier).alias(START)).agg(
        pl.len().cast(pl.Int64).alias("count"),
        v.sum().alias("sum"),
        v.min().alias("min"),
        v.max().alias("max"),
        # var(ddof=0) * n is the sum of squared deviations, and a fast aggregation.
        (v.var(ddof=0) * pl.len()).fill_null(0.0).alias("m2"),
        *(extra or []),
    )


def merge_partials(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Merge partials sharing (key, start) into one row each, exactly for count/sum/min/max."""
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema=PARTIAL_SCHEMA)
    if len(frames) == 1:
        return frames[0]
    both = pl.concat([f.select(list(PARTIAL_SCHEMA)) for f in frames], how="vertical_relaxed")
    return merge_rows(both, [KEY, START])


def merge_rows(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Merge all rows of ``frame`` with equal ``by`` columns (the Chan/parallel variance merge)."""
    n = pl.col("count")
    mean_i = pl.col("sum") / n
    grand_n = n.sum().over(by)
    grand_mean = pl.col("sum").sum().over(by) / grand_n
    return (
        frame.lazy()
        .with_columns((pl.col("m2") + n * (mean_i - grand_mean) ** 2).alias("_m2c"))
        .group_by(by)
        .agg(
            n.sum().alias("count"),
            pl.col("sum").sum().alias("sum"),
            pl.col("min").min().alias("min"),
            pl.col("max").max().alias("max"),
            pl.col("_m2c").sum().alias("m2"),
        )
        .collect()
    )
