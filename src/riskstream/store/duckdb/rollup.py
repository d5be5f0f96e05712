"""Roll closed buckets up into coarser tiers inside the store, and keep the roll marks.

See :mod:`riskstream.core.layout` for the scheme. All of it is SQL over the store's
tables (no rows cross into Python except the rare distinct buckets that outgrow an
exact value list), in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import duckdb
import polars as pl

from riskstream.core import layout, sketch
from riskstream.core.stats import m2_merge_sql
from riskstream.core.tiers import TIERS
from riskstream.store.duckdb import slices

_PREFIX = layout.MARK_PREFIX


def read_marks(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The stored roll marks (tiers without one are complete in their own rows)."""
    rows = con.execute("SELECT k, v FROM meta WHERE starts_with(k, ?)", [_PREFIX]).fetchall()
    return layout.marks_from_meta({str(k): str(v) for k, v in rows})


def write_marks(
    con: duckdb.DuckDBPyConnection, ladder: Sequence[str], marks: Mapping[str, int]
) -> None:
    """Store ``marks`` and the ``tier_sources`` they imply for ``ladder``."""
    for tier, value in marks.items():
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [_PREFIX + tier, str(value)])
    con.execute("DELETE FROM tier_sources")
    rows: list[tuple[str, str, int, int, int, int]] = []
    for tier in ladder:
        t = TIERS[tier]
        for src, lo, hi in layout.sources(tier, ladder, marks):
            rows.append((tier, src, lo, hi, t.width_ms, t.offset_ms))
    con.executemany("INSERT INTO tier_sources VALUES (?, ?, ?, ?, ?, ?)", rows)


def configure(
    con: duckdb.DuckDBPyConnection, tiers: Sequence[str], watermark: int | None
) -> dict[str, int]:
    """Marks for ``tiers``: kept if stored; else "nothing rolled" in a store without data,
    and "complete up to the watermark's bucket" in one written before roll marks existed."""
    ladder = layout.ladder_of(tiers)
    marks = read_marks(con)
    for tier in ladder[1:]:
        if tier in marks:
            continue
        if watermark is None:
            marks[tier] = layout.NEVER
        else:
            marks[tier] = TIERS[tier].start(watermark) + TIERS[tier].width_ms
    marks = {t: v for t, v in marks.items() if t in ladder[1:]}
    write_marks(con, ladder, marks)
    return marks


def roll_up(
    con: duckdb.DuckDBPyConnection,
    watermark: int,
    tiers: Sequence[str],
    slot_of: Callable[[str, str], int],
    slice_rows: int = slices.SLICE_ROWS,
) -> dict[str, int]:
    """Roll every bucket closed before ``watermark``'s bucket into each coarser tier.

    Rows are rolled in key-id slices of about ``slice_rows`` source rows (a bucket's rows
    share its key id, so each slice makes whole buckets): working memory follows the slice,
    not the span rolled (see ``slices``). One transaction for all: the marks move with it.
    """
    ladder = layout.ladder_of(tiers)
    marks = {t: layout.mark(read_marks(con), ladder, t) for t in ladder[1:]}
    target = layout.next_marks(watermark, ladder, marks)
    for tier in ladder[1:]:
        old, new = marks[tier], target[tier]
        if new <= old:
            continue
        parts = [
            (src, max(lo, old), min(hi, new))
            for src, lo, hi in layout.sources(tier, ladder, marks)[1:]
            if max(lo, old) < min(hi, new)
        ]
        if parts:
            # Read per tier: rolling the finer tier may have just made its first slots.
            slots = con.execute("SELECT slot, metric, tier FROM slots").fetchall()
            _roll_tier(con, tier, parts, slots, slot_of, slice_rows)
        marks[tier] = new
        write_marks(con, ladder, marks)
    return marks


def _roll_tier(
    con: duckdb.DuckDBPyConnection,
    tier: str,
    parts: list[tuple[str, int, int]],
    slots: list[tuple[int, str, str]],
    slot_of: Callable[[str, str], int],
    slice_rows: int,
) -> None:
    by_tier: dict[str, list[tuple[int, str]]] = {str(t): [] for _, _, t in slots}
    for slot, metric, src_tier in slots:
        by_tier[str(src_tier)].append((int(slot), str(metric)))
    src_rows = [
        (slot, slot_of(metric, tier), lo, hi)
        for src, lo, hi in parts
        for slot, metric in by_tier.get(src, [])
    ]
    if src_rows:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _src (slot USMALLINT, tslot USMALLINT, lo BIGINT, hi BIGINT)"
        )
        con.executemany("INSERT INTO _src VALUES (?, ?, ?, ?)", src_rows)
        st = TIERS[tier].start_sql("r.start")
        join = "JOIN _src s ON r.slot = s.slot AND r.start >= s.lo AND r.start < s.hi"
        for table in ("bucket_rows", "sketch_rows"):
            rows = f"SELECT r.kid FROM {table} r {join}"
            for lo, hi in slices.kid_ranges(con, rows, slice_rows=slice_rows):
                part = f"{join} AND r.kid >= {lo} AND r.kid < {hi}"
                if table == "bucket_rows":
                    _roll_buckets(con, st, part)
                else:
                    _roll_sketches(con, st, part)
        con.execute("DROP TABLE _src")
    dst = TIERS[tier].start_sql("r.start")
    cond = " OR ".join("(r.tier = ? AND r.start >= ? AND r.start < ?)" for _ in parts)
    args: list[object] = [tier]
    for src, lo, hi in parts:
        args += [src, lo, hi]
    con.execute(
        f"""INSERT INTO distribution_rows
        SELECT r.metric, ?, r.key, {dst}, r.category, sum(r.count)
        FROM distribution_rows r WHERE {cond} GROUP BY ALL""",
        args,
    )


def _roll_buckets(con: duckdb.DuckDBPyConnection, st: str, join: str) -> None:
    # Partials merge exactly (Chan et al.): m2 = sum(m2_i + n_i (mean_i - mean)^2).
    con.execute(
        f"""INSERT INTO bucket_rows
        WITH x AS (SELECT s.tslot, r.kid, {st} AS st, r.count, r.sum, r.min, r.max, r.m2
                   FROM bucket_rows r {join}),
             g AS (SELECT tslot, kid, st, sum(count) AS n, sum(sum) AS total
                   FROM x GROUP BY ALL)
        SELECT x.tslot, x.kid, x.st, any_value(g.n), any_value(g.total), min(x.min),
               max(x.max), {m2_merge_sql("x.count", "x.sum", "x.m2", "g.n", "g.total")}
        FROM x JOIN g USING (tslot, kid, st) GROUP BY x.tslot, x.kid, x.st"""
    )


def _roll_sketches(con: duckdb.DuckDBPyConnection, st: str, join: str) -> None:
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _sk AS
        SELECT s.tslot, r.kid, {st} AS st,
               list_distinct(flatten(list(r.vals))) AS vals,
               list(r.hll) FILTER (WHERE r.hll IS NOT NULL) AS hlls, sum(r.count) AS count
        FROM sketch_rows r {join}
        GROUP BY ALL"""
    )
    small = f"coalesce(len(hlls), 0) = 0 AND coalesce(len(vals), 0) <= {sketch.EXACT_LIMIT}"
    con.execute(
        f"INSERT INTO sketch_rows SELECT tslot, kid, st, vals, NULL, count FROM _sk WHERE {small}"
    )
    big = pl.from_arrow(
        con.sql(
            f"SELECT tslot, kid, st, vals, hlls, count FROM _sk WHERE NOT ({small})"
        ).to_arrow_table()
    )
    assert isinstance(big, pl.DataFrame)
    if big.height:
        blobs = [
            sketch.to_bytes(
                sketch.merge([sketch.sketch_of(vals or []), *(bytes(b) for b in hlls or [])])
            )
            for vals, hlls in big.select("vals", "hlls").iter_rows()
        ]
        out = big.select(
            pl.col("tslot").cast(pl.UInt16),
            pl.col("kid").cast(pl.UInt32),
            pl.col("st").cast(pl.Int64).alias("start"),
            pl.lit(None, pl.List(pl.String)).alias("vals"),
            pl.Series("hll", blobs, dtype=pl.Binary),
            pl.col("count").cast(pl.Int64),
        )
        con.register("_big", out.to_arrow())
        con.execute("INSERT INTO sketch_rows SELECT * FROM _big")
        con.unregister("_big")
    con.execute("DROP TABLE _sk")
