"""Point reads for one (metric, key) behind a stitched plan, in one snapshot.

Every tier is complete in its own rows here (written eagerly), so the plan's segments
are read as they are, through the (metric, key, tier, start) primary keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import psycopg

from riskstream.store.protocol import KeyRows, PlanFor

_NUM = {
    "count": pl.Int64,
    "sum": pl.Float64,
    "min": pl.Float64,
    "max": pl.Float64,
    "m2": pl.Float64,
}


def key_rows(
    con: psycopg.Connection[Any],
    metric: str,
    key: str,
    plan_for: PlanFor,
    stats: Sequence[str],
) -> KeyRows:
    """Meta, then the rows of ``metric``/``key`` in the segments ``plan_for(meta)`` gives."""
    with con.transaction():
        con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        meta = {str(k): str(v) for k, v in con.execute("SELECT k, v FROM meta").fetchall()}
        segments = plan_for(meta)
        empty_num = pl.DataFrame(schema=_NUM)
        empty_dist = pl.DataFrame(schema={"category": pl.String, "count": pl.Int64})
        if not segments:
            return KeyRows(meta, empty_num, [], empty_dist)
        cond = " OR ".join("(tier = %s AND start >= %s AND start < %s)" for _ in segments)
        args: list[Any] = [metric, key]
        for tier, lo, hi in segments:
            args += [tier, lo, hi]
        where = f"metric = %s AND key = %s AND ({cond})"
        rows = con.execute(
            f"SELECT count, sum, min, max, m2 FROM buckets WHERE {where}",  # type: ignore[arg-type]
            args,
        ).fetchall()
        numeric = pl.DataFrame(rows, schema=_NUM, orient="row") if rows else empty_num
        sketches: list[tuple[list[str] | None, bytes | None]] = []
        if "distinct" in stats:
            sketches = [
                (list(v) if v is not None else None, bytes(h) if h is not None else None)
                for v, h in con.execute(
                    f"SELECT vals, hll FROM sketches WHERE {where}",  # type: ignore[arg-type]
                    args,
                ).fetchall()
            ]
        distribution = empty_dist
        if "distribution" in stats:
            drows = con.execute(
                f"SELECT category, count FROM distributions WHERE {where}",  # type: ignore[arg-type]
                args,
            ).fetchall()
            if drows:
                distribution = pl.DataFrame(
                    drows, schema={"category": pl.String, "count": pl.Int64}, orient="row"
                )
        return KeyRows(meta, numeric, sketches, distribution)
