"""Cover a half-open range ``[from, to)`` with the largest whole buckets, finer tiers at the edges.

Pure and store-agnostic, so it is property-tested against brute force. A tier's
buckets are *available* from ``available_from[tier]`` on (older ones fell out
of retention); the answer is exact at the finest tier available at each edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from riskstream.spec.durations import TIER_MS, TIER_ORDER, bucket_start


@dataclass(frozen=True)
class Segment:
    """Whole buckets of ``tier`` with start in ``[start, end)``."""

    tier: str
    start: int
    end: int


@dataclass(frozen=True)
class Plan:
    """Segments covering ``[effective_from, effective_to)`` exactly, and the edge resolution."""

    segments: tuple[Segment, ...]
    effective_from: int
    effective_to: int
    resolution: str

    def exact_for(self, frm: int, to: int) -> bool:
        """True when the effective range is the requested one."""
        return (self.effective_from, self.effective_to) == (frm, to)


def ceil_to(t: int, tier: str) -> int:
    """Smallest bucket boundary of ``tier`` at or after ``t``."""
    s = bucket_start(t, tier)
    return s if s == t else s + TIER_MS[tier]


def available_from(
    watermark: int | None, tiers: Sequence[str], retention_ms: Mapping[Any, int]
) -> dict[str, int]:
    """First retained instant per tier, such that any edge can always be covered.

    Two invariants make the greedy cover always succeed: a tier's first instant is a
    bucket boundary of the next coarser tier, and it is never earlier than that
    coarser tier's (a finer tier cannot start before the tier that has to carry the
    range up to it). A retention shorter than the next coarser bucket therefore
    buys no finer resolution in the past, only beyond that boundary.
    """
    ladder = sorted(tiers, key=TIER_ORDER.index)
    if watermark is None:
        return {t: -(2**62) for t in ladder}
    out: dict[str, int] = {}
    for i in range(len(ladder) - 1, -1, -1):  # coarsest first
        tier = ladder[i]
        start = bucket_start(watermark - retention_ms[tier], tier)
        if i + 1 < len(ladder):
            coarser = ladder[i + 1]
            start = max(ceil_to(start, coarser), out[coarser])
        out[tier] = start
    return {t: out[t] for t in ladder}


def plan_range(frm: int, to: int, tiers: Sequence[str], avail: Mapping[str, int]) -> Plan:
    """Plan ``[frm, to)``: edges rounded outward to the finest tier available there, then a greedy cover."""
    ladder = sorted(tiers, key=TIER_ORDER.index)  # finest first
    if to <= frm:
        return Plan((), frm, frm, ladder[0])
    oldest = min(avail[t] for t in ladder)
    frm = max(frm, oldest)
    to = max(to, frm)
    t_from = _finest_available(frm, ladder, avail)
    t_to = _finest_available(to - 1, ladder, avail)
    eff_from = bucket_start(frm, t_from)
    eff_to = ceil_to(to, t_to)
    segments: list[Segment] = []
    _cover(eff_from, eff_to, ladder[::-1], avail, segments)
    resolution = max(t_from, t_to, key=TIER_ORDER.index)
    return Plan(tuple(sorted(segments, key=lambda s: s.start)), eff_from, eff_to, resolution)


def _finest_available(t: int, ladder: Sequence[str], avail: Mapping[str, int]) -> str:
    for tier in ladder:
        if t >= avail[tier]:
            return tier
    return ladder[-1]


def _cover(
    a: int, b: int, coarse_first: Sequence[str], avail: Mapping[str, int], out: list[Segment]
) -> None:
    if a >= b:
        return
    for tier in coarse_first:
        lo = ceil_to(max(a, avail[tier]), tier)
        hi = bucket_start(b, tier)
        if lo < hi:
            _cover(a, lo, coarse_first, avail, out)
            out.append(Segment(tier, lo, hi))
            _cover(hi, b, coarse_first, avail, out)
            return
    raise ValueError(f"range [{a}, {b}) cannot be covered by the retained tiers")
