"""Sliding features against a brute-force reading of their definition."""

from __future__ import annotations

import itertools
import math

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from riskstream.engine import features as feat

STATS = ("count", "sum", "avg", "min", "max", "var")


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[tuple[str, int, float, bool]], list[int], list[int]]:
    n = draw(st.integers(1, 60))
    events = []
    t = 1_000_000
    for _ in range(n):
        t += draw(st.integers(0, 3000))
        jitter = draw(st.sampled_from([0, 0, 0, -1500, -4000, -20000]))
        events.append(
            (
                draw(st.sampled_from(["a", "b", "c"])),
                t + jitter,
                float(draw(st.integers(-50, 500))) / 4,
                draw(st.booleans()) or draw(st.booleans()),  # contributes (where clause) ~75%
            )
        )
    cuts = sorted(set(draw(st.lists(st.integers(1, n), max_size=4))))
    windows = draw(
        st.lists(
            st.sampled_from([1000, 2000, 5000, 10000, 60000]), min_size=1, max_size=3, unique=True
        )
    )
    return events, cuts, windows


def brute(
    events: list[tuple[str, int, float, bool]], i: int, window: int, stat: str
) -> float | None:
    key, t, _, _ = events[i]
    b = t // 1000 * 1000
    vals = [
        v
        for (k, tj, v, c) in events[: i + 1]
        if c and k == key and b - window < tj // 1000 * 1000 <= b
    ]
    if stat == "count":
        return float(len(vals))
    if stat == "sum":
        return math.fsum(vals)
    if not vals:
        return None
    if stat == "avg":
        return math.fsum(vals) / len(vals)
    if stat == "min":
        return min(vals)
    if stat == "max":
        return max(vals)
    mean = math.fsum(vals) / len(vals)
    return math.fsum((v - mean) ** 2 for v in vals) / len(vals)


@settings(max_examples=150, deadline=None)
@given(streams())
def test_features_equal_brute_force(
    data: tuple[list[tuple[str, int, float, bool]], list[int], list[int]],
) -> None:
    events, cuts, windows = data
    requests = [feat.Request(f"{s}{w}", s, w) for s in STATS for w in windows]
    state = pl.DataFrame(schema=feat.STATE_SCHEMA)
    bounds = [0, *cuts, len(events)]
    got: dict[str, list[float | None]] = {r.name: [] for r in requests}
    for lo, hi in itertools.pairwise(bounds):
        if lo == hi:
            continue
        part = events[lo:hi]
        queries = pl.DataFrame(
            {"key": [e[0] for e in part], "_t": [e[1] for e in part], "_seq": list(range(lo, hi))},
            schema={"key": pl.String, "_t": pl.Int64, "_seq": pl.Int64},
        )
        contrib = pl.DataFrame(
            {
                "key": [e[0] for e in part if e[3]],
                "_t": [e[1] for e in part if e[3]],
                "_seq": [lo + j for j, e in enumerate(part) if e[3]],
                "v": [e[2] for e in part if e[3]],
            },
            schema={"key": pl.String, "_t": pl.Int64, "_seq": pl.Int64, "v": pl.Float64},
        )
        out = feat.compute(queries, contrib, state, "second", requests)
        for r in requests:
            got[r.name].extend(out[r.name].to_list())
        state = pl.concat([state, feat.state_rows(contrib, "second")])
    for r in requests:
        for i in range(len(events)):
            want = brute(events, i, r.window_ms, r.stat)
            have = got[r.name][i]
            if want is None:
                assert have is None, (r.name, i)
            else:
                assert have is not None and math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-9), (
                    r.name,
                    i,
                    have,
                    want,
                )


def test_null_keys_get_zero_counts_and_no_averages() -> None:
    queries = pl.DataFrame(
        {"key": [None, "a"], "_t": [1000, 2000], "_seq": [0, 1]},
        schema={"key": pl.String, "_t": pl.Int64, "_seq": pl.Int64},
    )
    contrib = pl.DataFrame({"key": ["a"], "_t": [2000], "_seq": [1], "v": [5.0]})
    state = pl.DataFrame(schema=feat.STATE_SCHEMA)
    out = feat.compute(
        queries,
        contrib,
        state,
        "second",
        [feat.Request("c", "count", 5000), feat.Request("a", "avg", 5000)],
    )
    assert out["c"].to_list() == [0, 1]
    assert out["a"].to_list() == [None, 5.0]


@settings(max_examples=100, deadline=None)
@given(
    streams(), st.lists(st.sampled_from(["m1", "m2", "m3", "m4", "m5"]), min_size=60, max_size=60)
)
def test_distinct_features_equal_brute_force(
    data: tuple[list[tuple[str, int, float, bool]], list[int], list[int]], values: list[str]
) -> None:
    from riskstream.engine import distinct_features as dfeat

    events, cuts, windows = data
    requests = [feat.Request(f"d{w}", "distinct", w) for w in windows]
    state = pl.DataFrame(schema=dfeat.VALUE_STATE_SCHEMA)
    bounds = [0, *cuts, len(events)]
    got: dict[str, list[int]] = {r.name: [] for r in requests}
    for lo, hi in itertools.pairwise(bounds):
        if lo == hi:
            continue
        part = list(enumerate(events[lo:hi], start=lo))
        queries = pl.DataFrame(
            {
                "key": [e[0] for _, e in part],
                "_t": [e[1] for _, e in part],
                "_seq": [i for i, _ in part],
            },
            schema={"key": pl.String, "_t": pl.Int64, "_seq": pl.Int64},
        )
        contrib = pl.DataFrame(
            {
                "key": [e[0] for _, e in part if e[3]],
                "_t": [e[1] for _, e in part if e[3]],
                "_seq": [i for i, e in part if e[3]],
                "c": [values[i] for i, e in part if e[3]],
            },
            schema={"key": pl.String, "_t": pl.Int64, "_seq": pl.Int64, "c": pl.String},
        )
        out = dfeat.compute_distinct(queries, contrib, state, "second", requests)
        for r in requests:
            got[r.name].extend(out[r.name].to_list())
        state = pl.concat([state, dfeat.value_rows(contrib, "second")])
    for r in requests:
        for i, (key, t, _, _) in enumerate(events):
            b = t // 1000 * 1000
            want = {
                values[j]
                for j, (k, tj, _, c) in enumerate(events[: i + 1])
                if c and k == key and b - r.window_ms < tj // 1000 * 1000 <= b
            }
            assert got[r.name][i] == len(want), (r.name, i)
