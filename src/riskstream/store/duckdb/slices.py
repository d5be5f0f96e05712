"""Key-id ranges that cut a table's rows into bounded slices, for upkeep in parts.

Why: a fold or a roll-up over the whole table builds hash tables (in DuckDB) and frames (in
Polars) as large as the table inside the engine process; measured on the 10M-event bench
stream, one fold of 12.6M rows raised the peak RSS by ~860 MiB. Both group rows by
(slot, key id, start), so running them on disjoint key-id ranges gives the same rows with
memory bounded by the slice.
"""

from __future__ import annotations

import duckdb

#: Rows per slice by default: ~40-50 MiB of upkeep working memory at the measured 80-100 bytes
#: per row.
SLICE_ROWS = 500_000
#: Key ids are UINTEGER: the last range ends past the largest one.
KID_END = 1 << 32
#: At most this many histogram groups are read to place the cuts.
_GROUPS = 4096


def kid_ranges(
    con: duckdb.DuckDBPyConnection,
    rows_sql: str,
    params: list[object] | None = None,
    slice_rows: int = SLICE_ROWS,
) -> list[tuple[int, int]]:
    """``[lo, hi)`` key-id ranges, in order and covering every id, each holding about
    ``slice_rows`` of the rows ``rows_sql`` selects (a query with a ``kid`` column).

    Cuts fall between groups of ids (at most ~4096 groups), so a group holding more than
    ``slice_rows`` rows makes one larger slice.
    """
    top = con.execute(f"SELECT max(kid) FROM ({rows_sql})", params or []).fetchone()
    if top is None or top[0] is None:
        return [(0, KID_END)]
    shift = max(0, int(top[0]).bit_length() - _GROUPS.bit_length() + 1)
    hist = con.execute(
        f"SELECT kid >> {shift} AS g, count(*) FROM ({rows_sql}) GROUP BY g ORDER BY g",
        params or [],
    ).fetchall()
    ranges: list[tuple[int, int]] = []
    lo, rows = 0, 0
    for group, n in hist:
        if rows and rows + int(n) > slice_rows:
            cut = int(group) << shift
            ranges.append((lo, cut))
            lo, rows = cut, 0
        rows += int(n)
    ranges.append((lo, KID_END))
    return ranges
