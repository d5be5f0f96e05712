"""Bucket partials and their merge against brute force."""

from __future__ import annotations

import math
import random

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from riskstream.core.stats import merge_partials, merge_rows, partials
from riskstream.core.tiers import TIER_ORDER, bucket_start


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("xyz"), st.integers(0, 30 * 86_400_000), st.integers(-(10**6), 10**6)
        ),
        min_size=1,
        max_size=200,
    ),
    st.sampled_from(TIER_ORDER),
    st.integers(1, 5),
)
def test_partials_merged_in_pieces_equal_brute_force(
    rows: list[tuple[str, int, int]], tier: str, pieces: int
) -> None:
    frame = pl.DataFrame(
        {"key": [r[0] for r in rows], "_t": [r[1] for r in rows], "v": [r[2] / 100 for r in rows]}
    )
    rnd = random.Random(len(rows) * pieces)
    idx = list(range(len(rows)))
    rnd.shuffle(idx)
    chunks = [frame[sorted(idx[i::pieces])] for i in range(pieces)]
    merged = merge_partials([partials(c, tier) for c in chunks if c.height])
    want: dict[tuple[str, int], list[float]] = {}
    for k, t, v in rows:
        want.setdefault((k, bucket_start(t, tier)), []).append(v / 100)
    assert merged.height == len(want)
    for row in merged.iter_rows(named=True):
        vals = want[(row["key"], row["start"])]
        mean = math.fsum(vals) / len(vals)
        assert row["count"] == len(vals)
        assert math.isclose(row["sum"], math.fsum(vals), abs_tol=1e-6)
        assert row["min"] == min(vals) and row["max"] == max(vals)
        assert math.isclose(
            row["m2"], math.fsum((v - mean) ** 2 for v in vals), rel_tol=1e-6, abs_tol=1e-6
        )


def test_weeks_start_on_monday() -> None:
    monday = 1_767_571_200_000  # 2026-01-05T00:00:00Z
    assert bucket_start(monday + 3 * 86_400_000 + 5, "week") == monday
    assert bucket_start(monday - 1, "week") == monday - 7 * 86_400_000


def test_merge_rows_groups_by_any_columns() -> None:
    frame = pl.DataFrame(
        {
            "g": [1, 1, 2],
            "count": [2, 1, 1],
            "sum": [4.0, 6.0, 1.0],
            "min": [1.0, 6.0, 1.0],
            "max": [3.0, 6.0, 1.0],
            "m2": [2.0, 0.0, 0.0],
        }
    )
    out = merge_rows(frame, ["g"]).sort("g")
    # values {1, 3, 6}: mean 10/3, m2 = sum of squared deviations
    assert out["count"].to_list() == [3, 1]
    assert math.isclose(out["m2"][0], (1 - 10 / 3) ** 2 + (3 - 10 / 3) ** 2 + (6 - 10 / 3) ** 2)
