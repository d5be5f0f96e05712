"""Exact sliding distinct counts (``card_merchants.distinct(10m)``), vectorized by a join.

Same window definition as :mod:`riskstream.engine.features`. Distinct is not
subtractable, so each event is joined with the values its key saw in the window
(prior state rows plus batch rows ingested before or with it) and ``n_unique``
is taken per event. Cost grows with values per key per window, which is small
for the card/person dimensions these rules are written on.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from riskstream.engine.decode import SEQ, TIME
from riskstream.engine.features import Request
from riskstream.engine.metrics import CATEGORY
from riskstream.engine.tiers import KEY, start_expr

VALUE_STATE_SCHEMA: dict[str, pl.DataType] = {
    KEY: pl.String(),
    "b": pl.Int64(),
    CATEGORY: pl.String(),
}


def value_rows(contrib: pl.DataFrame, tier: str) -> pl.DataFrame:
    """The distinct (key, bucket, value) rows of a batch, kept as state for later windows."""
    return (
        contrib.lazy()
        .select(pl.col(KEY), start_expr(pl.col(TIME), tier).alias("b"), pl.col(CATEGORY))
        .unique()
        .collect()
    )


def compute_distinct(
    queries: pl.DataFrame,
    contrib: pl.DataFrame,
    state: pl.DataFrame,
    tier: str,
    requests: Sequence[Request],
) -> pl.DataFrame:
    """One column per request: distinct values of the same key in the window, per query row."""
    q = queries.select(
        pl.col(KEY),
        start_expr(pl.col(TIME), tier).alias("b"),
        pl.col(SEQ),
        pl.int_range(pl.len()).alias("_pos"),
    )
    max_w = max(r.window_ms for r in requests)
    seen = pl.concat(
        [
            state.select(KEY, "b", CATEGORY, pl.lit(-1, pl.Int64).alias("_s")),
            contrib.select(
                KEY,
                start_expr(pl.col(TIME), tier).alias("b"),
                CATEGORY,
                pl.col(SEQ).cast(pl.Int64).alias("_s"),
            ),
        ]
    )
    pairs = (
        q.filter(pl.col(KEY).is_not_null())
        .join(seen, on=KEY, suffix="_j")
        .filter(
            (pl.col("_s") <= pl.col(SEQ))
            & (pl.col("b_j") <= pl.col("b"))
            & (pl.col("b_j") > pl.col("b") - max_w)
        )
    )
    out = q.select("_pos")
    for req in requests:
        counts = (
            pairs.filter(pl.col("b_j") > pl.col("b") - req.window_ms)
            .group_by("_pos")
            .agg(pl.col(CATEGORY).n_unique().cast(pl.Int64).alias(req.name))
        )
        out = out.join(counts, on="_pos", how="left")
    return out.sort("_pos").drop("_pos").fill_null(0)
