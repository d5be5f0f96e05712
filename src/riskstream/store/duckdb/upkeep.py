"""Upkeep of the stored buckets: roll-up into coarser tiers, folding appended rows, retention."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import duckdb
import polars as pl

from riskstream.core import layout, sketch
from riskstream.core.stats import m2_merge_sql
from riskstream.errors import StoreError
from riskstream.store.duckdb import rollup, slices
from riskstream.store.duckdb.connection import first_line
from riskstream.store.duckdb.keys import KeyDictionary


class Upkeep(KeyDictionary):
    """Roll-up, fold and retention, each in its own transaction(s)."""

    #: Rows per slice of the fold and the roll-up (tests set it small to cut at every key).
    slice_rows: int = slices.SLICE_ROWS

    def configure_tiers(self, tiers: Sequence[str]) -> dict[str, int]:
        """Set up lazy roll-up for the spec's ``tiers``; returns the roll marks (core.layout)."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            row = con.execute("SELECT v FROM meta WHERE k = 'watermark'").fetchone()
            marks = rollup.configure(con, tiers, int(row[0]) if row else None)
            con.execute("COMMIT")
        return marks

    def roll_up(self, watermark: int, tiers: Sequence[str]) -> dict[str, int]:
        """Roll buckets closed before ``watermark``'s into coarser tiers; the new marks."""
        try:
            with self.connect() as con:
                con.execute("BEGIN TRANSACTION")
                try:
                    d = self._ids(con)
                    marks = rollup.roll_up(
                        con,
                        watermark,
                        tiers,
                        lambda m, t: self._slot(con, d, m, t),
                        self.slice_rows,
                    )
                    con.execute("COMMIT")
                except BaseException:
                    self._dict = None
                    con.execute("ROLLBACK")
                    raise
        except duckdb.Error as exc:
            raise StoreError(f"roll-up failed: {first_line(exc)}") from None
        return marks

    def roll_marks(self) -> dict[str, int]:
        """The stored roll marks."""
        with self.connect() as con:
            return rollup.read_marks(con)

    def fold_when_grown(self, factor: float = 2.0, at_least: int = 100_000) -> bool:
        """:meth:`fold` once the tables hold ``factor`` times the rows of the last fold.

        Folding scans whole tables while readers are correct without it (they merge the
        rows of a bucket), so it runs at geometrically spaced sizes: linear work in total
        instead of a full scan at every compaction.
        """
        with self.connect() as con:
            rows = con.execute(
                "SELECT (SELECT count(*) FROM bucket_rows) + (SELECT count(*) FROM sketch_rows), "
                "(SELECT v FROM meta WHERE k = 'folded_rows')"
            ).fetchall()[0]
        total, last = int(rows[0]), int(rows[1] or 0)
        if total < max(at_least, factor * last):
            return False
        self.fold()
        with self.connect() as con:
            after = con.execute(
                "SELECT (SELECT count(*) FROM bucket_rows) + (SELECT count(*) FROM sketch_rows)"
            ).fetchall()[0][0]
            con.execute("INSERT OR REPLACE INTO meta VALUES ('folded_rows', ?)", [str(after)])
        return True

    def fold(self) -> None:
        """Fold the rows of each bucket into one (appends leave one row per checkpoint).

        In key-id slices of about :attr:`slice_rows` rows, one transaction each: every row
        of a bucket has the same key id, so a slice folds whole buckets, and readers merge
        the rows of a bucket whether it is folded or not (a crash between slices is fine).
        Done at once, the fold's working memory grows with the table (see ``slices``).
        """
        with self.connect() as con:
            for table, fold_slice in (
                ("bucket_rows", self._fold_buckets),
                ("value_rows", self._fold_values),
                ("sketch_rows", self._fold_sketches),
            ):
                sql = f"SELECT kid FROM {table}"
                for lo, hi in slices.kid_ranges(con, sql, slice_rows=self.slice_rows):
                    _transaction(con, partial(fold_slice, lo=lo, hi=hi))
            _transaction(con, self._fold_distributions)

    @staticmethod
    def _fold_buckets(con: duckdb.DuckDBPyConnection, lo: int, hi: int) -> None:
        keys = "slot, kid, start"
        match = "t.slot = d.slot AND t.kid = d.kid AND t.start = d.start"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _dup AS SELECT {keys} FROM bucket_rows
            WHERE kid >= {lo} AND kid < {hi} GROUP BY ALL HAVING count(*) > 1"""
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _folded AS
            SELECT {keys}, sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
                   {m2_merge_sql("count", "sum", "m2", "gcount", "gsum")} AS m2
            FROM (SELECT b.*, sum(b.sum) OVER w AS gsum, sum(b.count) OVER w AS gcount
                  FROM (SELECT * FROM bucket_rows WHERE kid >= {lo} AND kid < {hi}) b
                  SEMI JOIN _dup USING ({keys})
                  WINDOW w AS (PARTITION BY {keys}))
            GROUP BY {keys}"""
        )
        con.execute(
            f"DELETE FROM bucket_rows t USING _dup d WHERE t.kid >= {lo} AND t.kid < {hi} AND {match}"
        )
        con.execute("INSERT INTO bucket_rows SELECT * FROM _folded")
        con.execute("DROP TABLE _folded")
        con.execute("DROP TABLE _dup")

    @staticmethod
    def _fold_values(con: duckdb.DuckDBPyConnection, lo: int, hi: int) -> None:
        where = f"kid >= {lo} AND kid < {hi}"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _folded AS SELECT DISTINCT * FROM value_rows WHERE {where}"
        )
        con.execute(f"DELETE FROM value_rows WHERE {where}")
        con.execute("INSERT INTO value_rows SELECT * FROM _folded")
        con.execute("DROP TABLE _folded")

    @staticmethod
    def _fold_distributions(con: duckdb.DuckDBPyConnection) -> None:
        # Keyed by text (no key ids) and small: the bench spec has none.
        dkeys = "metric, tier, key, start"
        dmatch = "t.metric = d.metric AND t.tier = d.tier AND t.key = d.key AND t.start = d.start"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _dup AS SELECT {dkeys}, category FROM distribution_rows
            GROUP BY ALL HAVING count(*) > 1"""
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _folded AS SELECT {dkeys}, category, sum(count) AS count
            FROM distribution_rows SEMI JOIN _dup USING ({dkeys}, category) GROUP BY ALL"""
        )
        con.execute(
            f"DELETE FROM distribution_rows t USING _dup d WHERE {dmatch} AND t.category = d.category"
        )
        con.execute("INSERT INTO distribution_rows SELECT * FROM _folded")
        con.execute("DROP TABLE _folded")
        con.execute("DROP TABLE _dup")

    @staticmethod
    def _fold_sketches(con: duckdb.DuckDBPyConnection, lo: int, hi: int) -> None:
        part = f"kid >= {lo} AND kid < {hi}"
        dup = (
            f"{part} AND (slot, kid, start) IN (SELECT (slot, kid, start) FROM sketch_rows "
            f"WHERE {part} GROUP BY ALL HAVING count(*) > 1)"
        )
        rows = pl.from_arrow(
            con.sql(
                f"SELECT slot, kid AS key, start, vals, hll, count FROM sketch_rows WHERE {dup}"
            ).to_arrow_table()
        )
        assert isinstance(rows, pl.DataFrame)
        if not rows.height:
            return
        counts = rows.group_by("slot", "key", "start").agg(
            pl.when(pl.col("count").is_not_null().any()).then(pl.col("count").sum()).alias("count")
        )
        key_type = rows.schema["key"]
        folded = []
        for (slot,), group in rows.group_by("slot"):
            exact = group.filter(pl.col("hll").is_null())
            frames = [exact.select("key", "start", "vals")] if exact.height else []
            merged = sketch.compact_values(frames) if frames else pl.DataFrame()
            with_hll = group.filter(pl.col("hll").is_not_null())
            if with_hll.height:
                blobs: dict[tuple[int, int], list[Any]] = {}
                for key, start, blob in with_hll.select("key", "start", "hll").iter_rows():
                    blobs.setdefault((key, start), []).append(bytes(blob))
                keep = []
                if merged.height:
                    for key, start, vals, blob in merged.iter_rows():
                        if (key, start) in blobs:
                            blobs[(key, start)].append(
                                sketch.sketch_of(vals or []) if vals else bytes(blob)
                            )
                        else:
                            keep.append((key, start, vals, blob))
                rows_hll = [
                    (k, s, None, sketch.to_bytes(sketch.merge(parts)))
                    for (k, s), parts in blobs.items()
                ]
                merged = pl.DataFrame(
                    keep + rows_hll,
                    schema={
                        "key": key_type,
                        "start": pl.Int64,
                        "vals": pl.List(pl.String),
                        "hll": pl.Binary,
                    },
                    orient="row",
                )
            folded.append(
                merged.select(pl.lit(slot, pl.UInt16).alias("slot"), "key", "start", "vals", "hll")
            )
        out = (
            pl.concat(folded)
            .join(counts.cast({"slot": pl.UInt16}), on=["slot", "key", "start"], how="left")
            .select("slot", pl.col("key").alias("kid"), "start", "vals", "hll", "count")
        )
        con.execute(f"DELETE FROM sketch_rows WHERE {dup}")
        con.register("_f", out.to_arrow())
        con.execute("INSERT INTO sketch_rows SELECT * FROM _f")
        con.unregister("_f")

    def compact_before(
        self,
        available_from: dict[str, int],
        value_horizons: dict[tuple[str, str], int] | None = None,
    ) -> int:
        """Drop buckets older than each tier's first retained instant (see ``query.stitch``)
        and distinct-feature values older than their window horizon."""
        dropped = 0
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            ladder = layout.ladder_of(list(available_from))
            # Rows a coarser tier still reads through its roll mark stay (core.layout).
            available_from = layout.drop_floors(ladder, rollup.read_marks(con), available_from)
            for (metric, tier), cutoff in (value_horizons or {}).items():
                con.execute(
                    "DELETE FROM value_rows WHERE slot IN "
                    "(SELECT slot FROM slots WHERE metric = ? AND tier = ?) AND b < ?",
                    [metric, tier, cutoff],
                )
            for tier, cutoff in available_from.items():
                for table in ("bucket_rows", "sketch_rows"):
                    row = con.execute(
                        f"DELETE FROM {table} WHERE slot IN (SELECT slot FROM slots WHERE tier = ?) "
                        "AND start < ?",
                        [tier, cutoff],
                    ).fetchone()
                    dropped += int(row[0]) if row else 0
                row = con.execute(
                    "DELETE FROM distribution_rows WHERE tier = ? AND start < ?", [tier, cutoff]
                ).fetchone()
                dropped += int(row[0]) if row else 0
            con.execute("COMMIT")
        return dropped


def _transaction(
    con: duckdb.DuckDBPyConnection, work: Callable[[duckdb.DuckDBPyConnection], None]
) -> None:
    """``work(con)`` in one transaction: it commits, or rolls back and raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        work(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
