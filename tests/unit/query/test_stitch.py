"""Stitched range plans against brute force over random events, tiers, retention and ranges."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from riskstream.core.tiers import TIER_MS, TIER_ORDER, available_from, bucket_start
from riskstream.query.stitch import plan_range

T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z, a Monday
DAY = 86_400_000


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[str], dict[str, int], list[tuple[int, float]], int, int]:
    tiers = draw(st.lists(st.sampled_from(TIER_ORDER), min_size=1, max_size=5, unique=True))
    tiers = sorted(tiers, key=TIER_ORDER.index)
    # Retention grows with the tier (as in every sane spec); the coarsest keeps everything.
    retention: dict[str, int] = {}
    floor = 0
    for tier in tiers:
        floor = max(floor, draw(st.sampled_from([1, 2, 5, 30, 200, 2000])) * TIER_MS[tier])
        retention[tier] = floor
    retention[tiers[-1]] = 400 * DAY
    span = draw(st.sampled_from([90_000, 4 * 3_600_000, 3 * DAY, 40 * DAY]))
    n = draw(st.integers(1, 80))
    times = draw(st.lists(st.integers(0, span), min_size=n, max_size=n))
    values = draw(st.lists(st.integers(-1000, 1000), min_size=n, max_size=n))
    events = [(T0 + t, v / 8) for t, v in zip(times, values, strict=True)]
    a = draw(st.integers(-span // 10, span + span // 10))
    b = draw(st.integers(-span // 10, span + span // 10))
    if draw(st.booleans()):  # second-aligned ranges are the common case
        a, b = a // 1000 * 1000, b // 1000 * 1000
    lo, hi = sorted((a, b))
    return tiers, retention, events, T0 + lo, T0 + hi + 1


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_plan_covers_effective_range_and_matches_brute_force(
    sc: tuple[list[str], dict[str, int], list[tuple[int, float]], int, int],
) -> None:
    tiers, retention, events, frm, to = sc
    watermark = max(t for t, _ in events)
    avail = available_from(watermark, tiers, retention)
    # What the store holds after compaction: every tier's buckets from its first retained start.
    buckets: dict[tuple[str, int], list[float]] = {}
    for t, v in events:
        for tier in tiers:
            start = bucket_start(t, tier)
            if start >= avail[tier]:
                buckets.setdefault((tier, start), []).append(v)
    plan = plan_range(frm, to, tiers, avail)
    # Segments are aligned, disjoint and contiguous over the effective range.
    cursor = plan.effective_from
    for seg in plan.segments:
        assert seg.start == cursor
        assert (
            bucket_start(seg.start, seg.tier) == seg.start
            and bucket_start(seg.end, seg.tier) == seg.end
        )
        assert seg.start >= avail[seg.tier]
        cursor = seg.end
    assert cursor == plan.effective_to
    # The effective range contains the (retained part of the) request, within one bucket of the edge tier.
    oldest = min(avail.values())
    width = TIER_MS[plan.resolution]
    assert plan.effective_from <= max(frm, oldest) < plan.effective_from + width
    assert plan.effective_to - width < to <= plan.effective_to
    picked = [
        v
        for seg in plan.segments
        for (tier, s), vs in buckets.items()
        if tier == seg.tier and seg.start <= s < seg.end
        for v in vs
    ]
    expected = [v for t, v in events if plan.effective_from <= t < plan.effective_to]
    assert len(picked) == len(expected)
    assert math.isclose(math.fsum(picked), math.fsum(expected), abs_tol=1e-9)
    if expected:
        assert min(picked) == min(expected) and max(picked) == max(expected)


def test_exact_when_seconds_are_retained() -> None:
    tiers = list(TIER_ORDER)
    retention = {
        "second": 2 * 3_600_000,
        "minute": 2 * DAY,
        "hour": 90 * DAY,
        "day": 1000 * DAY,
        "week": 3650 * DAY,
    }
    wm = T0 + 5 * 3_600_000
    avail = available_from(wm, tiers, retention)
    frm, to = T0 + 4 * 3_600_000 + 1_000, T0 + 5 * 3_600_000 - 59_000
    plan = plan_range(frm, to, tiers, avail)
    assert plan.exact_for(frm, to) and plan.resolution == "second"
    assert [s.tier for s in plan.segments] == ["second", "minute", "second"]


def test_old_edges_fall_back_to_coarser_tiers_and_say_so() -> None:
    tiers = list(TIER_ORDER)
    retention = {
        "second": 2 * 3_600_000,
        "minute": 2 * DAY,
        "hour": 90 * DAY,
        "day": 1000 * DAY,
        "week": 3650 * DAY,
    }
    wm = T0 + 10 * DAY
    avail = available_from(wm, tiers, retention)
    frm, to = T0 + 1_234, T0 + 10 * DAY - 5_500
    plan = plan_range(frm, to, tiers, avail)
    assert plan.resolution == "hour"
    assert plan.effective_from == T0 and not plan.exact_for(frm, to)
    assert plan.effective_to == T0 + 10 * DAY - 5_000
    assert {s.tier for s in plan.segments} >= {"week", "day", "hour"}


def test_short_retention_below_the_next_coarser_bucket_still_covers() -> None:
    # Hours kept 2 h only: the past between the last whole day and the retained hours
    # exists at day resolution alone, so ranges ending there round out to the day.
    tiers = list(TIER_ORDER)
    retention = {
        "second": 2_000,
        "minute": 120_000,
        "hour": 7_200_000,
        "day": 200 * DAY,
        "week": 400 * DAY,
    }
    wm = T0 + 203_773_699
    avail = available_from(wm, tiers, retention)
    plan = plan_range(T0 + 152_446_491, T0 + 245_676_810, tiers, avail)
    assert plan.resolution == "day" and plan.effective_to == T0 + 3 * DAY
    assert sum(s.end - s.start for s in plan.segments) == plan.effective_to - plan.effective_from
