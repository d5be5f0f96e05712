"""Feature tails: only the stat columns the requests read, cut at the first retained bucket;
features through the whole pipeline equal a brute-force recomputation over every event."""

from __future__ import annotations

import math

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from riskstream.core.events import RawBatch
from riskstream.core.tiers import TIER_MS, bucket_start
from riskstream.engine.pipeline import Pipeline
from riskstream.spec.load import parse_spec

NOW = 1_767_600_000_000
MIN = 60_000

SPEC = """\
name: tails
event:
  time: ts
  id: id
  max_lateness: 30m
  fields: {card: str, amount: float}
tiers: [second, minute, hour, day, week]
retention: {second: 2m, minute: 1h, hour: 2d, day: 30d, week: 1y}
metrics:
  card: {dimension: [card], value: amount, stats: [count, sum, avg, min, max, var]}
rules:
  short: {when: "card.count(1m) >= 0 and card.max(1m) > -1", action: tag}
  mid: {when: "card.sum(10m) >= 0 and card.min(10m) >= 0 and card.avg(10m) >= 0", action: tag}
  long: {when: "card.count(3h) > 0", action: tag}
"""

#: feature -> (stat, window ms, tier)
FEATURES = {
    "card.count(1m)": ("count", MIN, "second"),
    "card.max(1m)": ("max", MIN, "second"),
    "card.sum(10m)": ("sum", 10 * MIN, "minute"),
    "card.min(10m)": ("min", 10 * MIN, "minute"),
    "card.avg(10m)": ("avg", 10 * MIN, "minute"),
    "card.count(3h)": ("count", 180 * MIN, "hour"),
}


def _brute(
    spec_events: list[tuple[str, int, float]], cuts: list[int], p: Pipeline
) -> list[dict[str, float | None]]:
    """Per event, every feature over the earlier-or-same events of its key in its window:
    those of its own batch, and of earlier batches only in buckets still retained at the
    watermark before its batch."""
    out: list[dict[str, float | None]] = []
    wm: int | None = None
    i = k = 0
    while i < len(spec_events):
        j = min(len(spec_events), i + cuts[k % len(cuts)])
        avail = p.spec.available_from(wm)
        for e in range(i, j):
            card, t, _ = spec_events[e]
            row: dict[str, float | None] = {}
            for name, (stat, w, tier) in FEATURES.items():
                b = bucket_start(t, tier)
                vals = [
                    a
                    for x, (c, tt, a) in enumerate(spec_events[: e + 1])
                    if c == card
                    and b - w < bucket_start(tt, tier) <= b
                    and (x >= i or bucket_start(tt, tier) >= avail[tier])
                ]
                if stat == "count":
                    row[name] = len(vals)
                elif stat == "sum":
                    row[name] = sum(vals)
                elif stat == "avg":
                    row[name] = sum(vals) / len(vals) if vals else None
                else:
                    row[name] = (min if stat == "min" else max)(vals) if vals else None
            out.append(row)
        times = [t for _, t, _ in spec_events[i:j]]
        wm = max([*times, wm] if wm is not None else times)
        i, k = j, k + 1
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.integers(-3 * MIN, MIN),  # jitter around a clock that moves 10 s per event
            st.sampled_from([1.0, 2.5, 7.0, 40.0]),
        ),
        min_size=1,
        max_size=90,
    ),
    st.lists(st.integers(1, 4), min_size=1, max_size=5),
)
# dense keys across many batches: the tails are compacted and cut while still read
@example([("a", 0, 1.0)] * 90, [1])
@example([("ab"[i % 2], -((i * 37) % 150) * 1000, 2.5 + i % 3) for i in range(90)], [2, 1, 3])
def test_features_over_pruned_and_cut_tails_equal_brute_force(
    raw: list[tuple[str, int, float]], cuts: list[int]
) -> None:
    start = NOW - 200 * MIN
    events = [(c, start + i * 10_000 + jitter, a) for i, (c, jitter, a) in enumerate(raw)]
    p = Pipeline(parse_spec(SPEC), clock=lambda: NOW)
    expected = _brute(events, cuts, p)
    got: list[dict[str, float | None]] = []
    i = k = 0
    while i < len(events):
        j = min(len(events), i + cuts[k % len(cuts)])
        lines = [
            orjson.dumps({"id": f"e{x}", "ts": t, "card": c, "amount": a})
            for x, (c, t, a) in enumerate(events[i:j], start=i)
        ]
        out = p.process(RawBatch(lines, [f"f@{x}" for x in range(i, j)]))
        assert not out.quarantined  # jitter stays inside max_lateness
        assert out.frame is not None
        got += out.frame.select(list(FEATURES)).to_dicts()
        i, k = j, k + 1
        for (_, tier), group in p._groups.items():
            avail = p.available_from()[tier]
            for frame in group.tail:
                # only the columns the requests read, and (once compacted) nothing expired
                assert set(frame.columns) - {"key", "b", "_h"} == set(group.columns)
    for e, (want, have) in enumerate(zip(expected, got, strict=True)):
        for name in FEATURES:
            w, h = want[name], have[name]
            if w is None:
                assert h is None, (e, name, h)
            else:
                assert h is not None and math.isclose(h, w, rel_tol=1e-9), (e, name, w, h)
    assert avail is not None


def test_tails_keep_only_what_requests_read() -> None:
    p = Pipeline(parse_spec(SPEC), clock=lambda: NOW)
    cols = {tier: g.columns for (_, tier), g in p._groups.items()}
    assert cols == {
        "second": ("count", "max"),
        "minute": ("count", "sum", "min"),
        "hour": ("count",),
    }


def test_tails_are_cut_at_the_first_retained_bucket() -> None:
    """The 1-minute window keeps 1 m + min(lateness, retention) = 3 m in theory, but buckets
    older than the second tier's retention (2 m) never count: the tail drops them."""
    p = Pipeline(parse_spec(SPEC), clock=lambda: NOW)
    t0 = NOW - 60 * MIN
    for i in range(40):  # 40 batches: the tail is compacted (past 16 frames) twice
        line = orjson.dumps({"id": f"e{i}", "ts": t0 + i * 10_000, "card": "a", "amount": 1.0})
        p.process(RawBatch([line], [f"f@{i}"]))
    group = p._groups[("card", "second")]
    oldest = min(int(f["b"].min()) for f in group.tail)  # type: ignore[arg-type]
    assert oldest >= p.available_from()["second"] - 16 * 10_000 - TIER_MS["second"]
    assert oldest > (p.watermark or 0) - group.horizon_ms


def test_a_reload_that_needs_new_state_says_so() -> None:
    p = Pipeline(parse_spec(SPEC), clock=lambda: NOW)
    p.process(RawBatch([orjson.dumps({"id": "e", "ts": NOW, "card": "a", "amount": 1.0})], ["f@0"]))
    p.reload(parse_spec(SPEC.replace("card.count(1m) >= 0", "card.count(1m) >= 1")))
    assert not p.stale_state  # same features
    p.reload(parse_spec(SPEC.replace("card.count(1m) >= 0", "card.var(1m) >= 0")))
    assert p.stale_state  # sums of squares were not kept
    p.restore({}, {}, {})
    assert not p.stale_state
