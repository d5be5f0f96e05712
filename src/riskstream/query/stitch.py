"""Cover a half-open range ``[from, to)`` with the largest whole buckets, finer tiers at the edges.

Pure and store-agnostic, so it is property-tested against brute force. A tier's
buckets are *available* from ``available_from[tier]`` on (older ones fell out
of retention); the answer is exact at the finest tier available at each edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from riskstream.core.tiers import TIER_ORDER, available_from, bucket_start, ceil_to

__all__ = ["Plan", "Segment", "available_from", "plan_range"]


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
