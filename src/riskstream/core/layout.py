"""Where each tier's buckets live while coarse tiers are rolled up lazily.

A checkpoint writes the finest tier only (plus *deltas*, below). A coarse tier ``T``
holds complete buckets for starts before its *roll mark* ``rolled[T]``; from the mark
on, its buckets are the next finer tier's, re-bucketed to ``T``'s width (recursively).
Compaction rolls closed buckets up and moves the marks forward. A late contribution
whose ``T`` bucket lies before ``rolled[T]`` is written to ``T`` directly (a delta), so
every tier is complete wherever it is read. Why: a sparse key (a card seen once a
minute) would otherwise cost one row per tier per checkpoint, five times the finest
tier's rows; rolled up, each coarse bucket is written once, inside the store.

Pure functions over a ladder (tier names, finest first) and the marks, so they are
property-tested against brute force.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from riskstream.core.tiers import NEVER, bucket_start, ladder_of

#: Marks below/above every real instant: "nothing rolled yet" / "complete everywhere".
ALWAYS: Final[int] = 2**62
__all__ = [
    "ALWAYS",
    "MARK_PREFIX",
    "NEVER",
    "drop_floors",
    "ladder_of",
    "mark",
    "marks_from_meta",
    "next_marks",
    "physical",
    "sources",
]


def mark(rolled: Mapping[str, int], ladder: Sequence[str], tier: str) -> int:
    """``tier``'s roll mark; the finest tier is complete everywhere; a missing mark too."""
    if tier == ladder[0]:
        return ALWAYS
    return rolled.get(tier, ALWAYS)


def sources(
    tier: str, ladder: Sequence[str], rolled: Mapping[str, int]
) -> list[tuple[str, int, int]]:
    """Physical ``(tier, lo, hi)`` row ranges (by row start) that make up ``tier``'s buckets.

    ``tier``'s own rows below its mark, then each finer tier's rows from where the coarser
    ones stop to its own mark, down to the finest tier (complete everywhere). The ranges
    are disjoint and, in order, cover every instant once.
    """
    i = list(ladder).index(tier)
    hi = mark(rolled, ladder, tier)
    out = [(tier, NEVER, hi)]
    lo = hi
    for j in range(i - 1, -1, -1):
        if lo >= ALWAYS:
            break
        finer = ladder[j]
        top = mark(rolled, ladder, finer)
        if top > lo:
            out.append((finer, lo, top))
            lo = top
    return out


def physical(
    segments: Sequence[tuple[str, int, int]], ladder: Sequence[str], rolled: Mapping[str, int]
) -> list[tuple[str, int, int]]:
    """The physical ``(tier, start, end)`` row ranges behind tier-bucket ``segments``."""
    out: list[tuple[str, int, int]] = []
    for tier, start, end in segments:
        for src, lo, hi in sources(tier, ladder, rolled):
            a, b = max(start, lo), min(end, hi)
            if a < b:
                out.append((src, a, b))
    return out


#: Meta keys holding the roll marks: ``rolled.<tier>``.
MARK_PREFIX: Final[str] = "rolled."


def marks_from_meta(meta: Mapping[str, str]) -> dict[str, int]:
    """The roll marks stored in the store's meta."""
    return {k[len(MARK_PREFIX) :]: int(v) for k, v in meta.items() if k.startswith(MARK_PREFIX)}


def next_marks(watermark: int, ladder: Sequence[str], rolled: Mapping[str, int]) -> dict[str, int]:
    """Marks after rolling up every bucket that closed before ``watermark``'s bucket.

    Marks never move back, and a coarse tier rolls only what its finer tiers can give.
    """
    out: dict[str, int] = {}
    for tier in ladder[1:]:
        old = mark(rolled, ladder, tier)
        new = bucket_start(watermark, tier)
        out[tier] = max(old, new) if old < ALWAYS else old
    return out


def drop_floors(
    ladder: Sequence[str], rolled: Mapping[str, int], available: Mapping[str, int]
) -> dict[str, int]:
    """Per tier, the row start below which its rows can be deleted.

    A tier ``X`` is read from its availability on (queries) and from its mark on (roll-ups
    into it); through :func:`sources` that reaches finer tiers' rows. Keep every row any
    tier can still reach, and the tier's own retained rows.
    """
    floors = dict((t, available[t]) for t in ladder)
    for x in ladder:
        for src, lo, hi in sources(x, ladder, rolled):
            start = max(lo, min(available[x], mark(rolled, ladder, x)))
            if start < hi:
                floors[src] = min(floors[src], start)
    return floors
