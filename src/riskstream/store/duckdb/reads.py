"""Reads of the DuckDB store: meta, positions, the case outbox, buckets, and point reads.

Point reads for one (metric, key) fetch the physical rows behind a stitched plan, in one
snapshot. Readers that scan the ``buckets`` views join every stored row with the key and slot
dictionaries; a stitched query needs only one key's rows, so it resolves the key id and
the slots first and filters the compact tables directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import polars as pl

from riskstream.core import layout
from riskstream.core.case import Case
from riskstream.store.duckdb.keys import KeyDictionary
from riskstream.store.protocol import KeyRows, PlanFor, Segment
from riskstream.store.shared import case_from_body


def _frame(con: duckdb.DuckDBPyConnection, sql: str, args: list[Any]) -> pl.DataFrame:
    out = pl.from_arrow(con.sql(sql, params=args).to_arrow_table())
    assert isinstance(out, pl.DataFrame)
    return out


def read_key_rows(
    con: duckdb.DuckDBPyConnection,
    tiers: Sequence[str],
    metric: str,
    key: str,
    segments: Sequence[Segment] | None,
    plan_for: PlanFor | None = None,
    kid_of: Callable[[duckdb.DuckDBPyConnection, str], int | None] = lambda con, key: None,
    stats: Sequence[str] = ("distinct", "distribution"),
) -> KeyRows:
    """Rows of ``metric``/``key`` whose tier bucket lies in ``segments`` (tier, start, end).

    ``plan_for(meta)`` may compute the segments from the meta read in this snapshot.
    """
    meta = {str(k): str(v) for k, v in con.execute("SELECT k, v FROM meta").fetchall()}
    if segments is None:
        assert plan_for is not None, "key_rows needs segments or plan_for"
        segments = plan_for(meta)
    phys = layout.physical(segments, layout.ladder_of(tiers), layout.marks_from_meta(meta))
    empty_num = pl.DataFrame(
        schema={
            "count": pl.Int64,
            "sum": pl.Float64,
            "min": pl.Float64,
            "max": pl.Float64,
            "m2": pl.Float64,
        }
    )
    empty_dist = pl.DataFrame(schema={"category": pl.String, "count": pl.Int64})
    if not phys:
        return KeyRows(meta, empty_num, [], empty_dist)
    slots = {
        str(t): int(s)
        for s, t in con.execute(
            "SELECT slot, tier FROM slots WHERE metric = ?", [metric]
        ).fetchall()
    }
    kid = kid_of(con, key)
    conds, args = [], []
    for src, a, b in phys:
        if src in slots:
            conds.append("(slot = ? AND start >= ? AND start < ?)")
            args += [slots[src], a, b]
    numeric, sketches = empty_num, []
    if kid is not None and conds:
        where = f"kid = ? AND ({' OR '.join(conds)})"
        kargs = [kid, *args]
        numeric = _frame(
            con,
            f"SELECT count, sum, min, max, m2 FROM bucket_rows WHERE {where} UNION ALL "
            f"SELECT count, 0.0, NULL, NULL, 0.0 FROM sketch_rows WHERE {where} "
            "AND count IS NOT NULL",
            kargs + kargs,
        )
        sketches = (
            []
            if "distinct" not in stats
            else [
                (v, bytes(h) if h is not None else None)
                for v, h in con.execute(
                    f"SELECT vals, hll FROM sketch_rows WHERE {where}", kargs
                ).fetchall()
            ]
        )
    if "distribution" not in stats:
        return KeyRows(meta, numeric, sketches, empty_dist)
    dconds, dargs = [], []
    for src, a, b in phys:
        dconds.append("(tier = ? AND start >= ? AND start < ?)")
        dargs += [src, a, b]
    distribution = _frame(
        con,
        "SELECT category, count FROM distribution_rows WHERE metric = ? AND key = ? "
        f"AND ({' OR '.join(dconds)})",
        [metric, key, *dargs],
    )
    return KeyRows(meta, numeric, sketches, distribution)


class Reads(KeyDictionary):
    """Reads of meta, positions, sink marks, the case outbox and buckets."""

    def meta(self) -> dict[str, str]:
        """All meta keys (schema_version, watermark, next_seq, quarantine_bytes ...)."""
        with self.connect() as con:
            return dict(con.execute("SELECT k, v FROM meta").fetchall())

    def positions(self, source: str) -> dict[str, int]:
        """Stored positions of ``source`` by partition."""
        with self.connect() as con:
            rows = con.execute(
                "SELECT part, pos FROM positions WHERE source = ?", [source]
            ).fetchall()
        return {str(p): int(v) for p, v in rows}

    def sink_marks(self) -> dict[str, int]:
        """Per sink, the highest case seq known delivered."""
        with self.connect() as con:
            return {
                str(s): int(q)
                for s, q in con.execute("SELECT sink, seq FROM sink_marks").fetchall()
            }

    def cases_after(self, seq: int, limit: int | None = None) -> list[Case]:
        """Outbox cases with seq greater than ``seq``, in order."""
        sql = "SELECT seq, body FROM cases WHERE seq > ? ORDER BY seq"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self.connect() as con:
            rows = con.execute(sql, [seq]).fetchall()
        return [case_from_body(int(s), str(b)) for s, b in rows]

    def key_rows(
        self, tiers: Sequence[str], metric: str, key: str, plan_for: PlanFor, stats: Sequence[str]
    ) -> KeyRows:
        """Rows of ``metric``/``key`` inside ``plan_for(meta)``, in one snapshot (:func:`read_key_rows`)."""
        with self.connect() as con:
            return read_key_rows(con, tiers, metric, key, None, plan_for, self.key_id, stats)

    def select(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query (used by the query and API layers)."""
        with self.connect() as con:
            return con.execute(sql, list(args)).fetchall()

    def frame(self, sql: str, args: Sequence[Any] = ()) -> pl.DataFrame:
        """Run a read query into a Polars frame."""
        with self.connect() as con:
            return pl.from_arrow(con.sql(sql, params=list(args)).to_arrow_table())  # type: ignore[return-value]
