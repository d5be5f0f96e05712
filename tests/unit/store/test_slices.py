"""Key-id slices of the upkeep: contiguous, covering every id, bounded, against brute force."""

from __future__ import annotations

import itertools
from collections import Counter

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from riskstream.store.duckdb.slices import KID_END, kid_ranges


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 20_000), max_size=400),
    st.integers(1, 50),
)
def test_ranges_cover_every_id_once_and_hold_at_most_a_slice(kids: list[int], size: int) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (kid UINTEGER)")
    if kids:
        con.executemany("INSERT INTO t VALUES (?)", [(k,) for k in kids])
    ranges = kid_ranges(con, "SELECT kid FROM t", slice_rows=size)
    assert ranges[0][0] == 0 and ranges[-1][1] == KID_END
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in itertools.pairwise(ranges))
    count = Counter(kids)
    top = max(kids, default=0)
    shift = max(0, top.bit_length() - 12)  # ids are grouped by id >> shift (<= 4096 groups)
    for lo, hi in ranges:
        rows = sum(n for k, n in count.items() if lo <= k < hi)
        groups = {k >> shift for k in count if lo <= k < hi}
        # Over the size only when one group alone is: cuts fall between groups.
        assert rows <= size or len(groups) == 1
    # Greedy: a range and the next group's rows would not have fitted in one slice.
    assert len(ranges) <= max(1, 2 * len(kids) // size + 1)
