"""The in-memory range index answers exactly as ``query_range`` on the store, and brute force.

Random event streams (out of order, late, several keys, short retentions so that ranges
cross tier boundaries and retention edges) go through the real pipeline into a real DuckDB
store in checkpoints, with roll-ups and retention compaction at random points; the index
follows the pipeline as its listener (and a second one is loaded from the store at the
end). After every batch, random ranges are answered by the index and by ``query_range``
over the store plus the engine's pending buckets, and compared with brute force.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskstream.core.events import RawBatch
from riskstream.core.tiers import TIER_ORDER, available_from
from riskstream.engine.pipeline import Pipeline
from riskstream.query.index import RangeIndex, indexable
from riskstream.query.range import Pending, query_range
from riskstream.spec.load import parse_spec
from riskstream.spec.model import PipelineSpec
from riskstream.store.duckdb import Store

T0 = 1_767_571_200_000  # a Monday
MIN = 60_000
HOUR = 3_600_000
DAY = 24 * HOUR
LATENESS = 3 * DAY
SPEC_TEXT = """\
name: r
tiers: [{tiers}]
retention: {{{retention}}}
event: {{time: t, id: id, max_lateness: 3d}}
metrics:
  m: {{dimension: [k], value: v, stats: [count, sum, avg, min, max, var, stddev]}}
  n: {{dimension: [k], stats: [count]}}
  d: {{dimension: [k], value: c, stats: [distinct]}}
"""
Stream = tuple[
    list[str], dict[str, str], list[dict[str, object]], list[int], list[int], list[tuple[int, int]]
]
#: Retention choices per tier: short, so that queries cross tier boundaries and retention edges.
RETENTIONS = {
    "second": ["2m", "30m"],
    "minute": ["1h", "12h"],
    "hour": ["2d", "10d"],
    "day": ["20d", "60d"],
    "week": ["1y"],
}


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    tiers = draw(st.lists(st.sampled_from(TIER_ORDER), min_size=1, max_size=5, unique=True))
    tiers = sorted(tiers, key=TIER_ORDER.index)
    retention = {t: draw(st.sampled_from(RETENTIONS[t])) for t in tiers}
    span = draw(st.sampled_from([5 * MIN, 6 * HOUR, 3 * DAY, 20 * DAY]))
    n = draw(st.integers(1, 100))
    base = sorted(draw(st.lists(st.integers(0, span), min_size=n, max_size=n)))
    events = []
    for i, t in enumerate(base):
        late = draw(st.integers(0, 8)) == 0
        shift = draw(st.integers(0, min(t, 2 * DAY))) if late else 0
        events.append(
            {
                "id": f"e{i}",
                "t": T0 + t - shift,
                "k": draw(st.sampled_from(["a", "b", "c", "é|x"])),
                "v": draw(st.integers(-50, 50)) / 4,
                "c": draw(st.sampled_from(["x", "y"])),
            }
        )
    cuts = sorted(set([*draw(st.lists(st.integers(1, n), max_size=6)), n]))
    # Per batch: 0 no checkpoint, 1 checkpoint, 2 checkpoint then roll-up and retention.
    steps = [draw(st.integers(0, 2)) for _ in cuts]
    steps[-1] = max(steps[-1], 1)
    ranges = draw(st.lists(st.tuples(st.integers(0, 10**12), st.integers(0, 10**12)), max_size=3))
    return tiers, retention, events, cuts, steps, ranges


def _spec(tiers: list[str], retention: dict[str, str]) -> PipelineSpec:
    text = SPEC_TEXT.format(
        tiers=", ".join(tiers), retention=", ".join(f"{t}: {retention[t]}" for t in tiers)
    )
    return parse_spec(text)


def _live_pending(pipe: Pipeline) -> Pending:
    parts, sketches, dists = pipe.pending.frames()
    return Pending(parts, sketches, dists, dict(pipe.pending.rolled))


def _kept(events: list[dict[str, object]]) -> list[dict[str, object]]:
    """The events the decoder keeps (it quarantines those older than max_lateness)."""
    kept: list[dict[str, object]] = []
    seen: int | None = None
    for e in events:
        t = int(str(e["t"]))
        if seen is not None and t < seen - LATENESS:
            continue
        seen = t if seen is None else max(seen, t)
        kept.append(e)
    return kept


def _ranges(
    spec: PipelineSpec,
    wm: int | None,
    times: list[int],
    raw: list[tuple[int, int]],
    *,
    edges: bool = True,
) -> list[tuple[int, int]]:
    """Random ranges over the data, and ranges starting or ending at each retention edge."""
    lo_t, hi_t = min(times) - DAY, max(times) + HOUR
    out = [(lo_t + a % (hi_t - lo_t), 0) for a, _ in raw]
    out = [(f, f + 1 + b % (hi_t - f)) for (f, _), (_, b) in zip(out, raw, strict=True)]
    for edge in spec.available_from(wm).values() if edges else ():
        if lo_t < edge < hi_t:
            out += [(edge - 1, hi_t), (edge, hi_t), (edge + 1, edge + 2 * HOUR), (lo_t, edge)]
            # Edges at random milliseconds within an hour of the retention edge.
            for a, b in raw[:2]:
                frm = edge - HOUR + a % (2 * HOUR)
                out.append((frm, frm + 1 + b % (2 * HOUR)))
    return out


def _same(index: dict[str, Any] | None, store: dict[str, Any]) -> None:
    """The index's answer equals the store's: floats to rounding (merge order differs)."""
    assert index is not None
    for name in ("var", "stddev"):
        a, b = index.pop(name, None), store.pop(name, None)
        index["stats"].pop(name, None), store["stats"].pop(name, None)
        assert (a is None) == (b is None)
        if a is not None:
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (name, a, b)
    assert index == store


def _brute(out: dict[str, Any], kept: list[dict[str, object]], key: str) -> None:
    lo, hi = out["effective"]["from"], out["effective"]["to"]
    vals = [float(str(e["v"])) for e in kept if e["k"] == key and lo <= int(str(e["t"])) < hi]
    assert out["count"] == len(vals)
    if "sum" in out:
        assert out["sum"] == sum(vals)  # quarters: exact in any order
        assert out["min"] == (min(vals) if vals else None)
        assert out["max"] == (max(vals) if vals else None)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(streams())
def test_index_answers_as_the_store_and_brute_force(
    tmp_path_factory: pytest.TempPathFactory, stream: Stream
) -> None:
    tiers, retention, events, cuts, steps, raw = stream
    spec = _spec(tiers, retention)
    tmp: Path = tmp_path_factory.mktemp("i")
    store = Store(tmp)
    pipe = Pipeline(spec)
    pipe.pending.set_rolled(store.configure_tiers(spec.tiers))
    index = RangeIndex(spec)
    index.load(store, None)
    pipe.listener = index
    lines = [json.dumps(e).encode() for e in events]
    start = 0
    for cut, step in zip(cuts, steps, strict=True):
        pipe.process(RawBatch(lines[start:cut], [f"f@{i}" for i in range(start, cut)]))
        if step:
            store.write_checkpoint(pipe.take_checkpoint("f", {"f": cut}, []))
        if step == 2 and pipe.watermark is not None:
            pipe.pending.set_rolled(store.roll_up(pipe.watermark, spec.tiers))
            retention = {t: spec.retention_ms(t) for t in spec.tiers}
            store.compact_before(available_from(pipe.watermark, spec.tiers, retention))
        start = cut
        kept = _kept(events[:cut])
        times = [int(str(e["t"])) for e in kept]
        pending = _live_pending(pipe)
        last = cut == cuts[-1]
        # After every batch the random ranges; after the last one the retention edges too.
        ranges = _ranges(spec, pipe.watermark, times, raw, edges=last)
        for frm, to in ranges:
            for metric in ("m", "n") if last else ("m",):
                for key in ("a", "é|x", "zz") if last else ("a",):
                    want = query_range(spec, store, metric, key, frm, to, pending=pending)
                    got = index.answer(metric, key, frm, to)
                    _brute(want, kept, key)
                    _same(got, want)
    # Loaded from the store at the end, it answers the same (everything is checkpointed).
    fresh = RangeIndex(spec, ["m"])
    fresh.load(store, None)
    for frm, to in _ranges(spec, pipe.watermark, times, raw):
        for key in ("a", "é|x"):
            _same(fresh.answer("m", key, frm, to), index.answer("m", key, frm, to))
    assert fresh.answer("n", "a", T0, T0 + 1) is None  # not kept: the store answers


def test_only_numeric_metrics_are_indexed() -> None:
    spec = _spec(["second", "minute"], {"second": "2m", "minute": "1h"})
    assert indexable(spec) == ["m", "n"]
    with pytest.raises(ValueError, match="cannot index d: only metrics with numeric stats"):
        RangeIndex(spec, ["m", "d"])
    assert RangeIndex(spec).answer("m", "a", T0, T0 + 1) is None  # not loaded yet
