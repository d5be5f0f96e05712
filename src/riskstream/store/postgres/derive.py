"""Coarse tiers derived from the finest tier inside the store's write (several engines, one truth).

The DuckDB store rolls coarse tiers up lazily behind roll marks, and the engine adds late
deltas for buckets already rolled. With several engines that scheme races: marks moved by
one engine are unknown to another until it reads them again, so its late rows would miss
the coarse tiers. Here the engine still writes only the finest tier (the marks it is given
are "nothing rolled"), and the store derives every coarse tier's partials from the
checkpoint's finest partials before writing, so every tier is complete in its own rows
whatever any engine believes. Coarse frames an engine sends are ignored (they are what this
derives). Vectorized: one group-by per (metric, coarse tier).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import polars as pl

from riskstream.core.checkpoint import Checkpoint
from riskstream.core.stats import merge_rows
from riskstream.core.tiers import start_expr

_NUMERIC = ["count", "sum", "min", "max", "m2"]


def derive(cp: Checkpoint, ladder: Sequence[str]) -> Checkpoint:
    """``cp`` with each coarse tier of ``ladder`` recomputed from its finest-tier frames."""
    finest, coarse = ladder[0], list(ladder[1:])
    partials: dict[tuple[str, str], pl.DataFrame] = {}
    sketches: dict[tuple[str, str], pl.DataFrame] = {}
    distributions: dict[tuple[str, str], pl.DataFrame] = {}
    for (metric, tier), f in cp.partials.items():
        if tier != finest:
            continue
        base = f.select("key", "start", *_NUMERIC)
        partials[(metric, tier)] = base
        for t in coarse:
            moved = base.with_columns(start_expr(pl.col("start"), t).alias("start"))
            partials[(metric, t)] = merge_rows(moved, ["key", "start"]).select(
                "key", "start", *_NUMERIC
            )
    for (metric, tier), f in cp.sketches.items():
        if tier != finest:
            continue
        base = f.select("key", "start", "vals", "hll")
        sketches[(metric, tier)] = base
        for t in coarse:
            # Sketch rows are appended and merged by readers: re-labelled, not merged here.
            sketches[(metric, t)] = base.with_columns(start_expr(pl.col("start"), t).alias("start"))
    for (metric, tier), f in cp.distributions.items():
        if tier != finest:
            continue
        base = f.select("key", "start", "category", "count")
        distributions[(metric, tier)] = base
        for t in coarse:
            distributions[(metric, t)] = (
                base.with_columns(start_expr(pl.col("start"), t).alias("start"))
                .group_by("key", "start", "category")
                .agg(pl.col("count").sum())
            )
    return replace(cp, partials=partials, sketches=sketches, distributions=distributions)
