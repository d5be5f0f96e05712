"""Lazy roll-up of coarse tiers: every tier, as readers see it, equals brute force.

Random event streams (out of order, late, several keys) go through the real pipeline
into a real DuckDB store in checkpoints, with roll-ups and retention compaction at
random points; then every retained bucket of every tier, and stitched range queries,
are compared with a brute-force aggregation of the same events.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskstream.core import layout
from riskstream.core.events import RawBatch
from riskstream.core.tiers import TIER_ORDER, available_from, bucket_start
from riskstream.engine.pipeline import Pipeline
from riskstream.query.range import query_range
from riskstream.spec.load import parse_spec
from riskstream.store.duckdb import Store

T0 = 1_767_571_200_000  # a Monday
HOUR = 3_600_000
SPEC_TEXT = """\
name: r
tiers: [{tiers}]
retention: {{{retention}}}
event: {{time: t, id: id, max_lateness: 3d}}
metrics:
  m: {{dimension: [k], value: v, stats: [count, sum, min, max, var]}}
  d: {{dimension: [k], value: c, stats: [distinct]}}
  p: {{dimension: [k], value: c, stats: [distribution]}}
"""


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[str], list[dict[str, object]], list[int], list[bool]]:
    tiers = draw(st.lists(st.sampled_from(TIER_ORDER), min_size=2, max_size=5, unique=True))
    tiers = sorted(tiers, key=TIER_ORDER.index)
    span = draw(st.sampled_from([5 * 60_000, 6 * HOUR, 3 * 24 * HOUR, 20 * 24 * HOUR]))
    n = draw(st.integers(1, 120))
    base = sorted(draw(st.lists(st.integers(0, span), min_size=n, max_size=n)))
    events = []
    for i, t in enumerate(base):
        late = draw(st.integers(0, 10)) == 0
        shift = draw(st.integers(0, min(t, 2 * 24 * HOUR))) if late else 0
        events.append(
            {
                "id": f"e{i}",
                "t": T0 + t - shift,
                "k": draw(st.sampled_from("abc")),
                "v": draw(st.integers(-50, 50)) / 4,
                "c": draw(st.sampled_from(["x", "y", "z", "w"])),
            }
        )
    cuts = sorted(set([*draw(st.lists(st.integers(1, n), max_size=6)), n]))
    rolls = [draw(st.booleans()) for _ in cuts]
    return tiers, events, cuts, rolls


def _spec(tiers: list[str]) -> str:
    # Short fine retention so compaction drops rows while coarser tiers still read them.
    ret = {"second": "30m", "minute": "12h", "hour": "10d", "day": "3y", "week": "10y"}
    return SPEC_TEXT.format(
        tiers=", ".join(tiers), retention=", ".join(f"{t}: {ret[t]}" for t in tiers)
    )


def _run(
    tmp: Path, tiers: list[str], events: list[dict[str, object]], cuts: list[int], rolls: list[bool]
) -> tuple[Store, Pipeline, list[dict[str, object]]]:
    spec = parse_spec(_spec(tiers))
    store = Store(tmp)
    # Upkeep in key-id slices: one key per slice, two, or all at once (the default size).
    store.slice_rows = (1, 2, store.slice_rows)[len(events) % 3]
    pipe = Pipeline(spec)
    pipe.pending.set_rolled(store.configure_tiers(spec.tiers))
    lines = [json.dumps(e).encode() for e in events]
    start = 0
    for cut, roll in zip(cuts, rolls, strict=True):
        batch = RawBatch(lines[start:cut], [f"f@{i}" for i in range(start, cut)])
        pipe.process(batch)
        store.write_checkpoint(pipe.take_checkpoint("f", {"f": cut}, []))
        start = cut
        if roll and pipe.watermark is not None:
            pipe.pending.set_rolled(store.roll_up(pipe.watermark, spec.tiers))
            retention = {t: spec.retention_ms(t) for t in spec.tiers}
            store.compact_before(available_from(pipe.watermark, spec.tiers, retention))
    # The decoder quarantines events older than max_lateness behind the watermark.
    kept: list[dict[str, object]] = []
    seen = None
    for e in events:
        t = int(e["t"])  # type: ignore[call-overload]
        if seen is not None and t < seen - 3 * 24 * HOUR:
            continue
        seen = t if seen is None else max(seen, t)
        kept.append(e)
    return store, pipe, kept


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(streams())
def test_every_retained_bucket_of_every_tier_equals_brute_force(
    tmp_path_factory: pytest.TempPathFactory,
    stream: tuple[list[str], list[dict[str, object]], list[int], list[bool]],
) -> None:
    tiers, events, cuts, rolls = stream
    store, pipe, kept = _run(tmp_path_factory.mktemp("s"), tiers, events, cuts, rolls)
    spec = pipe.spec
    retention = {t: spec.retention_ms(t) for t in spec.tiers}
    avail = available_from(pipe.watermark, spec.tiers, retention)
    for tier in tiers:
        want: dict[tuple[str, int], list[float]] = defaultdict(list)
        cats: dict[tuple[str, int], set[str]] = defaultdict(set)
        for e in kept:
            b = bucket_start(int(e["t"]), tier)  # type: ignore[call-overload]
            if b >= avail[tier]:
                want[(str(e["k"]), b)].append(float(e["v"]))  # type: ignore[arg-type]
                cats[(str(e["k"]), b)].add(str(e["c"]))
        rows = store.select(
            "SELECT key, start, sum(count), sum(sum), min(min), max(max) FROM buckets "
            "WHERE metric = 'm' AND tier = ? AND start >= ? GROUP BY key, start",
            [tier, avail[tier]],
        )
        got = {(k, s): (c, t, lo, hi) for k, s, c, t, lo, hi in rows}
        assert set(got) == set(want), tier
        for bucket, vals in want.items():
            c, t, lo, hi = got[bucket]
            assert c == len(vals)
            assert math.isclose(t, sum(vals), abs_tol=1e-9)
            assert (lo, hi) == (min(vals), max(vals))
        dist = store.select(
            "SELECT key, start, sum(count) FROM buckets WHERE metric = 'd' AND tier = ? "
            "AND start >= ? GROUP BY key, start",
            [tier, avail[tier]],
        )
        assert {(k, s): c for k, s, c in dist} == {b: len(v) for b, v in want.items()}
        sk = store.select(
            "SELECT key, start, flatten(list(vals)) FROM sketches WHERE metric = 'd' "
            "AND tier = ? AND start >= ? GROUP BY key, start",
            [tier, avail[tier]],
        )
        assert {(k, s): set(v) for k, s, v in sk} == cats


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(streams(), st.integers(0, 10**9), st.integers(0, 10**9))
def test_stitched_queries_over_rolled_tiers_equal_brute_force(
    tmp_path_factory: pytest.TempPathFactory,
    stream: tuple[list[str], list[dict[str, object]], list[int], list[bool]],
    a: int,
    b: int,
) -> None:
    tiers, events, cuts, rolls = stream
    store, pipe, kept = _run(tmp_path_factory.mktemp("q"), tiers, events, cuts, rolls)
    times = [int(e["t"]) for e in kept]  # type: ignore[call-overload]
    lo_t, hi_t = min(times), max(times) + 1
    frm = lo_t + a % (hi_t - lo_t + 1)
    to = frm + 1 + b % (hi_t - frm + HOUR)
    for key in "abc":
        out = query_range(pipe.spec, store, "m", key, frm, to)
        eff = (out["effective"]["from"], out["effective"]["to"])
        inside = [e for e in kept if e["k"] == key and eff[0] <= int(e["t"]) < eff[1]]  # type: ignore[call-overload]
        assert out["count"] == len(inside)
        assert math.isclose(out["sum"], sum(float(e["v"]) for e in inside), abs_tol=1e-9)  # type: ignore[arg-type]
        if inside:
            assert out["min"] == min(float(e["v"]) for e in inside)  # type: ignore[arg-type]
        d = query_range(pipe.spec, store, "d", key, frm, to)
        assert d["effective"] == out["effective"]
        assert d["distinct"] == len({e["c"] for e in inside})
        p = query_range(pipe.spec, store, "p", key, frm, to)
        want: dict[str, int] = defaultdict(int)
        for e in inside:
            want[str(e["c"])] += 1
        assert p["distribution"] == dict(sorted(want.items()))


def test_marks_and_sources_cover_each_instant_once() -> None:
    ladder = ["second", "minute", "hour", "day", "week"]
    marks = {"minute": T0 + 7 * 60_000, "hour": T0 + HOUR, "day": layout.NEVER, "week": T0}
    for tier in ladder:
        parts = layout.sources(tier, ladder, marks)
        edges = [(lo, hi) for _, lo, hi in parts]
        assert edges[0][0] == layout.NEVER and edges[-1][1] == layout.ALWAYS
        assert all(a[1] == b[0] for a, b in itertools.pairwise(edges))
        assert parts[-1][0] == "second"
    nxt = layout.next_marks(T0 + 3 * HOUR + 5, ladder, marks)
    assert nxt == {"minute": T0 + 3 * HOUR, "hour": T0 + 3 * HOUR, "day": T0, "week": T0}
