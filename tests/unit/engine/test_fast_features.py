"""The vectorized sliding features against brute force, on the shapes the fast paths meet.

Many keys, null keys, late and out-of-order events, windows at the tier's width, state split
over several key-sorted tail frames read back with ``gather_keys`` (as the pipeline does),
state rows of keys absent from the batch, large magnitudes far back in the state, and a
degenerate key hash that makes every key collide (the exact fallback must give the same
answers).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskstream.core import keys as corekeys
from riskstream.core.tiers import TIER_MS, WEEK_OFFSET_MS
from riskstream.engine import distinct_features as dfeat
from riskstream.engine import features as feat

STATS = ("count", "sum", "avg", "min", "max", "var", "stddev")


@dataclass(frozen=True)
class Event:
    key: str | None
    t: int
    v: float
    counts: bool  # passes the metric's where clause
    c: str | None  # the value a distinct metric counts


@dataclass(frozen=True)
class Case:
    events: list[Event]
    cuts: list[int]
    tier: str
    windows: list[int]
    via_tail: bool  # state read back from key-sorted tail frames with gather_keys
    asked: tuple[tuple[str, int], ...] = ()  # (stat, window) requests; () = all of them

    def requests(self) -> list[feat.Request]:
        pairs = self.asked or tuple(itertools.product(STATS, self.windows))
        return [feat.Request(f"{s}{w}", s, w) for s, w in pairs]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    tier = draw(st.sampled_from(["second", "second", "minute"]))
    width = TIER_MS[tier]
    nkeys = draw(st.integers(1, 40))
    keys = [f"k{i}" for i in range(nkeys)]
    n = draw(st.integers(1, 80))
    t = 1_700_000_000_000
    events = []
    for _ in range(n):
        t += draw(st.integers(0, 3 * width))
        late = draw(st.sampled_from([0, 0, 0, 0, 1, 2, 5, 30, 200]))
        key = draw(st.sampled_from(keys)) if draw(st.integers(0, 9)) else None
        events.append(
            Event(
                key,
                t - late * width // 2,
                draw(st.sampled_from([0.0, 1.0, -2.5, 0.1, 1e6, 123.25, 7.0])),
                draw(st.integers(0, 3)) > 0,
                draw(st.sampled_from(["m1", "m2", "m3", "m4", None])),
            )
        )
    cuts = sorted(set(draw(st.lists(st.integers(1, n), max_size=5))))
    windows = draw(
        st.lists(
            st.sampled_from([width, 2 * width, 5 * width, 60 * width]),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    asked = draw(
        st.one_of(
            st.just(()),
            st.lists(
                st.tuples(st.sampled_from(STATS), st.sampled_from(windows)),
                min_size=1,
                max_size=6,
                unique=True,
            ).map(tuple),
        )
    )
    return Case(events, cuts, tier, windows, draw(st.booleans()), asked)


def bucket(t: int, tier: str) -> int:
    width = TIER_MS[tier]
    off = WEEK_OFFSET_MS if tier == "week" else 0
    return (t - off) // width * width + off


def visible(case: Case, i: int, window: int) -> list[Event]:
    e = case.events[i]
    b = bucket(e.t, case.tier)
    return [
        x
        for x in case.events[: i + 1]
        if x.counts
        and e.key is not None
        and x.key == e.key
        and b - window < bucket(x.t, case.tier) <= b
    ]


def brute(case: Case, i: int, window: int, stat: str) -> float | None:
    vals = [x.v for x in visible(case, i, window)]
    if stat == "count":
        return float(len(vals))
    if stat == "sum":
        return math.fsum(vals)
    if not vals:
        return None
    mean = math.fsum(vals) / len(vals)
    if stat == "avg":
        return mean
    if stat == "min":
        return min(vals)
    if stat == "max":
        return max(vals)
    var = math.fsum((v - mean) ** 2 for v in vals) / len(vals)
    return math.sqrt(var) if stat == "stddev" else var


def batches(case: Case) -> Iterator[tuple[int, pl.DataFrame, pl.DataFrame]]:
    bounds = [0, *case.cuts, len(case.events)]
    for lo, hi in itertools.pairwise(bounds):
        if lo == hi:
            continue
        part = case.events[lo:hi]
        queries = pl.DataFrame(
            {"key": [e.key for e in part], "_t": [e.t for e in part], "_seq": list(range(lo, hi))},
            schema={"key": pl.String, "_t": pl.Int64, "_seq": pl.Int64},
        )
        rows = [(lo + j, e) for j, e in enumerate(part) if e.counts and e.key is not None]
        contrib = pl.DataFrame(
            {
                "key": [e.key for _, e in rows],
                "_t": [e.t for _, e in rows],
                "_seq": [s for s, _ in rows],
                "v": [e.v for _, e in rows],
                "c": [e.c for _, e in rows],
            },
            schema={
                "key": pl.String,
                "_t": pl.Int64,
                "_seq": pl.Int64,
                "v": pl.Float64,
                "c": pl.String,
            },
        )
        yield lo, queries, contrib


def run_numeric(case: Case) -> dict[str, list[float | None]]:
    requests = case.requests()
    tail: list[pl.DataFrame] = []
    got: dict[str, list[float | None]] = {r.name: [] for r in requests}
    for _, queries, contrib in batches(case):
        if case.via_tail:
            state = corekeys.gather_keys(tail, queries["key"], feat.STATE_SCHEMA)
        else:
            state = pl.concat([pl.DataFrame(schema=feat.STATE_SCHEMA), *tail], how="diagonal")
            state = state.select(list(feat.STATE_SCHEMA))
        out = feat.compute(queries, contrib.drop("c"), state, case.tier, requests)
        assert out.columns == [r.name for r in requests]
        for r in requests:
            want = pl.Int64 if r.stat == "count" else pl.Float64
            assert out[r.name].dtype == want
            got[r.name].extend(out[r.name].to_list())
        rows = feat.state_rows(contrib.drop("c"), case.tier)
        tail.append(corekeys.keyed(rows) if case.via_tail else rows)
    return got


def check_numeric(case: Case) -> None:
    got = run_numeric(case)
    for r in case.requests():
        s, w = r.stat, r.window_ms
        for i in range(len(case.events)):
            want = brute(case, i, w, s)
            have = got[f"{s}{w}"][i]
            if want is None:
                assert have is None, (s, w, i, have)
                continue
            assert have is not None, (s, w, i)
            if s == "stddev":  # sqrt magnifies the rounding of a variance near 0
                assert math.isclose(have**2, want**2, rel_tol=1e-9, abs_tol=1e-6), (s, w, i)
            else:
                assert math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-9), (s, w, i, have, want)


def run_distinct(case: Case) -> dict[str, list[int]]:
    requests = [feat.Request(f"d{w}", "distinct", w) for w in case.windows]
    tail: list[pl.DataFrame] = []
    got: dict[str, list[int]] = {r.name: [] for r in requests}
    for _, queries, contrib in batches(case):
        if case.via_tail:
            state = corekeys.gather_keys(tail, queries["key"], dfeat.VALUE_STATE_SCHEMA)
        else:
            state = pl.concat([pl.DataFrame(schema=dfeat.VALUE_STATE_SCHEMA), *tail])
        out = dfeat.compute_distinct(queries, contrib, state, case.tier, requests)
        assert out.columns == [r.name for r in requests]
        for r in requests:
            assert out[r.name].dtype == pl.Int64
            got[r.name].extend(out[r.name].to_list())
        rows = dfeat.value_rows(contrib, case.tier).select(list(dfeat.VALUE_STATE_SCHEMA))
        tail.append(corekeys.keyed(rows) if case.via_tail else rows)
    return got


def check_distinct(case: Case) -> None:
    got = run_distinct(case)
    for w in case.windows:
        for i in range(len(case.events)):
            want = len({x.c for x in visible(case, i, w)})
            assert got[f"d{w}"][i] == want, (w, i)


@contextmanager
def colliding_hash() -> Iterator[None]:
    """Every key hashes to its length: collisions everywhere, so the exact paths must hold."""
    saved = corekeys.key_hash

    def weak(keys: pl.Series) -> np.ndarray:  # type: ignore[type-arg]
        return keys.str.len_bytes().fill_null(0).cast(pl.UInt64).to_numpy()

    corekeys.key_hash = weak  # type: ignore[assignment]
    try:
        yield
    finally:
        corekeys.key_hash = saved  # type: ignore[assignment]


@settings(max_examples=150, deadline=None)
@given(cases())
def test_numeric_features_equal_brute_force(case: Case) -> None:
    check_numeric(case)


@settings(max_examples=120, deadline=None)
@given(cases())
def test_distinct_features_equal_brute_force(case: Case) -> None:
    check_distinct(case)


@settings(max_examples=40, deadline=None)
@given(cases())
def test_features_exact_when_key_hashes_collide(case: Case) -> None:
    # gather_keys and keyed still use the real hash (their frames' _h); only the codes of
    # compute / compute_distinct see the colliding one.
    case = Case(case.events, case.cuts, case.tier, case.windows, False, case.asked)
    with colliding_hash():
        check_numeric(case)
        check_distinct(case)


def test_state_keys_colliding_with_batch_keys_are_dropped() -> None:
    # "k1" and "zz" hash alike under the weak hash; the state row of "zz" must not count.
    queries = pl.DataFrame(
        {"key": ["k1", None, "k1"], "_t": [5_000, 5_500, 6_000], "_seq": [10, 11, 12]},
        schema={"key": pl.String, "_t": pl.Int64, "_seq": pl.Int64},
    )
    contrib = pl.DataFrame(
        {"key": ["k1"], "_t": [6_000], "_seq": [12], "v": [2.0], "c": ["x"]},
        schema={
            "key": pl.String,
            "_t": pl.Int64,
            "_seq": pl.Int64,
            "v": pl.Float64,
            "c": pl.String,
        },
    )
    state = pl.DataFrame(
        {
            "key": ["zz", "k1", "other"],
            "b": [4_000, 3_000, 4_000],
            "count": [5, 1, 7],
            "sum": [50.0, 1.0, 70.0],
            "sumsq": [500.0, 1.0, 700.0],
            "min": [10.0, 1.0, 10.0],
            "max": [10.0, 1.0, 10.0],
        },
        schema=feat.STATE_SCHEMA,
    )
    values = pl.DataFrame(
        {"key": ["zz", "k1", None], "b": [4_000, 3_000, 4_000], "c": ["a", "y", "b"]},
        schema=dfeat.VALUE_STATE_SCHEMA,
    )
    requests = [feat.Request("n", "count", 10_000), feat.Request("s", "sum", 10_000)]
    drequests = [feat.Request("d", "distinct", 10_000)]
    plain = feat.compute(queries, contrib.drop("c"), state, "second", requests)
    dplain = dfeat.compute_distinct(queries, contrib, values, "second", drequests)
    with colliding_hash():
        weak = feat.compute(queries, contrib.drop("c"), state, "second", requests)
        dweak = dfeat.compute_distinct(queries, contrib, values, "second", drequests)
    for out in (plain, weak):
        assert out["n"].to_list() == [1, 0, 2]
        assert out["s"].to_list() == [1.0, 0.0, 3.0]
    for out in (dplain, dweak):
        assert out["d"].to_list() == [1, 0, 2]


def test_sums_stay_accurate_next_to_huge_values() -> None:
    # A huge sum far back in the state: plain float64 prefix differences would lose the
    # small values of the window, and a long double one most of a variance; the compensated
    # prefixes must not.
    rng = np.random.default_rng(3)
    nb = 2000
    state = pl.DataFrame(
        {
            "key": ["a"] * nb,
            "b": [1_000 * i for i in range(nb)],
            "count": [1] * nb,
            "sum": [1e9 if i < 1000 else float(x) for i, x in enumerate(rng.random(nb) / 10)],
            "sumsq": [0.0] * nb,
            "min": [0.0] * nb,
            "max": [0.0] * nb,
        },
        schema=feat.STATE_SCHEMA,
    )
    state = state.with_columns(sumsq=pl.col("sum") ** 2, min=pl.col("sum"), max=pl.col("sum"))
    t = 1_000 * nb
    queries = pl.DataFrame({"key": ["a"], "_t": [t], "_seq": [0]})
    contrib = pl.DataFrame({"key": ["a"], "_t": [t], "_seq": [0], "v": [0.125]})
    window = 500_000
    requests = [
        feat.Request("s", "sum", window),
        feat.Request("a", "avg", window),
        feat.Request("v", "var", window),
    ]
    out = feat.compute(queries, contrib, state, "second", requests)
    sums = [*state.filter(pl.col("b") > t - window)["sum"].to_list(), 0.125]
    mean = math.fsum(sums) / len(sums)
    var = math.fsum((x - mean) ** 2 for x in sums) / len(sums)
    assert math.isclose(out["s"][0], math.fsum(sums), rel_tol=1e-12)
    assert math.isclose(out["a"][0], mean, rel_tol=1e-12)
    assert math.isclose(out["v"][0], var, rel_tol=1e-6)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 6)), max_size=60),
)
def test_in_order_equals_its_definition(rows: list[tuple[int, int]]) -> None:
    code = np.array([c for c, _ in rows], dtype=np.int64)
    b = np.array([x for _, x in rows], dtype=np.int64)
    got = feat._in_order(code, b)
    for i, (c, x) in enumerate(rows):
        earlier = [y for d, y in rows[:i] if d == c]
        assert got[i] == all(x >= y for y in earlier), i


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=80),
    st.lists(st.tuples(st.integers(0, 80), st.integers(0, 80)), min_size=1, max_size=40),
)
def test_sparse_table_range_min_max(values: list[float], ranges: list[tuple[int, int]]) -> None:
    arr = np.array(values)
    lo = np.array([min(a, b, len(values)) for a, b in ranges], dtype=np.int64)
    hi = np.array([min(max(a, b), len(values)) for a, b in ranges], dtype=np.int64)
    longest = int((hi - lo).max())
    mins = feat._SparseTable(arr, np.minimum, math.inf, longest).query(lo, hi)
    maxs = feat._SparseTable(arr, np.maximum, -math.inf, longest).query(lo, hi)
    for i in range(len(lo)):
        part = values[lo[i] : hi[i]]
        assert mins[i] == (min(part) if part else math.inf)
        assert maxs[i] == (max(part) if part else -math.inf)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from([f"k{i}" for i in range(30)]), max_size=40), max_size=5),
    st.lists(st.one_of(st.none(), st.sampled_from([f"k{i}" for i in range(40)])), max_size=30),
    st.booleans(),
)
def test_gather_keys_equals_a_filter(
    frames_keys: list[list[str]], wanted: list[str | None], keyed_first: bool
) -> None:
    frames = []
    for i, keys in enumerate(frames_keys):
        frame = pl.DataFrame(
            {"key": keys, "b": list(range(len(keys))), "tag": [i] * len(keys)},
            schema={"key": pl.String, "b": pl.Int64, "tag": pl.Int64},
        )
        frames.append(corekeys.keyed(frame) if keyed_first else frame)
    # One large frame (many rows per key) takes the binary-search path.
    big = pl.DataFrame(
        {"key": [f"k{i % 40}" for i in range(2000)], "b": list(range(2000)), "tag": [99] * 2000}
    )
    frames.append(big)
    schema = {"key": pl.String(), "b": pl.Int64(), "tag": pl.Int64()}
    got = corekeys.gather_keys(frames, pl.Series(wanted, dtype=pl.String), schema)
    assert got.columns == list(schema)
    want_keys = {k for k in wanted if k is not None}
    every = pl.concat([f.select(list(schema)) for f in frames])
    want = every.filter(pl.col("key").is_in(list(want_keys)))
    assert sorted(got.rows()) == sorted(want.rows())
    for f in frames if want_keys else []:  # frames that were searched are left key-sorted
        if f.height:
            assert corekeys.HASH in f.columns and f[corekeys.HASH].flags["SORTED_ASC"]


def test_empty_batches_and_requests() -> None:
    schema = {"key": pl.String, "_t": pl.Int64, "_seq": pl.Int64}
    empty_q = pl.DataFrame(schema=schema)
    empty_c = pl.DataFrame(schema={**schema, "v": pl.Float64, "c": pl.String})
    state = pl.DataFrame(schema=feat.STATE_SCHEMA)
    reqs = [feat.Request("n", "count", 1000), feat.Request("m", "max", 1000)]
    out = feat.compute(empty_q, empty_c.drop("c"), state, "second", reqs)
    assert out.height == 0 and out.columns == ["n", "m"]
    assert out.dtypes == [pl.Int64, pl.Float64]
    dout = dfeat.compute_distinct(
        empty_q,
        empty_c,
        pl.DataFrame(schema=dfeat.VALUE_STATE_SCHEMA),
        "second",
        [feat.Request("d", "distinct", 1000)],
    )
    assert dout.height == 0 and dout.columns == ["d"]
    nulls = pl.DataFrame({"key": [None, None], "_t": [1, 2], "_seq": [0, 1]}, schema=schema)
    out = feat.compute(nulls, empty_c.drop("c"), state, "second", reqs)
    assert out["n"].to_list() == [0, 0] and out["m"].to_list() == [None, None]
    assert corekeys.gather_keys([], pl.Series(["a"]), feat.STATE_SCHEMA).columns == list(
        feat.STATE_SCHEMA
    )


@pytest.mark.parametrize("tier", ["minute", "hour", "week"])
def test_windows_at_tier_widths(tier: str) -> None:
    width = TIER_MS[tier]
    events = [
        Event("a", 10 * width + 5, 1.0, True, "x"),
        Event("a", 11 * width, 2.0, True, "y"),
        Event("b", 11 * width + 1, 4.0, True, "x"),
        Event("a", 10 * width + 7, 8.0, True, "z"),  # late: bucket below an earlier row
        Event("a", 12 * width - 1, 16.0, True, "x"),
        Event("a", 13 * width, 32.0, False, "w"),
    ]
    case = Case(events, [2, 4], tier, [width, 2 * width], via_tail=True)
    check_numeric(case)
    check_distinct(case)


def test_distinct_reads_contributions_by_their_own_key_and_seq() -> None:
    # Contributions normally are query rows (same _seq, same key); one that is not (another
    # key, or a _seq outside the batch's queries) still counts under its own key.
    queries = pl.DataFrame(
        {"key": ["a", "a", "b"], "_t": [1_000, 2_000, 2_000], "_seq": [1, 3, 4]},
        schema={"key": pl.String, "_t": pl.Int64, "_seq": pl.Int64},
    )
    contrib = pl.DataFrame(
        {
            "key": ["a", "b", "a"],
            "_t": [1_000, 2_000, 1_500],
            "_seq": [1, 3, 2],
            "v": [1.0, 1.0, 1.0],
            "c": ["x", "y", "z"],
        }
    )
    state = pl.DataFrame(schema=dfeat.VALUE_STATE_SCHEMA)
    for hashing in (contextmanager(lambda: iter([None]))(), colliding_hash()):
        with hashing:
            out = dfeat.compute_distinct(
                queries, contrib, state, "second", [feat.Request("d", "distinct", 10_000)]
            )
        assert out["d"].to_list() == [1, 2, 1]


def test_late_rows_pair_only_with_their_own_key() -> None:
    # A late row near the end of the batch whose window reaches past every bucket: the rows
    # it is paired with must still be those of its own key, whatever key sorts next.
    keys = [f"k{i}" for i in range(12)]
    events = [Event(k, 20_000, 1.0, True, "x") for k in keys]
    events += [Event(k, 19_000, 2.0, True, "y") for k in keys]  # late: below the row above
    events += [Event(k, 19_500, 4.0, True, "z") for k in reversed(keys)]
    case = Case(events, [], "second", [60_000, 3_600_000], via_tail=False)
    check_numeric(case)
    check_distinct(case)
