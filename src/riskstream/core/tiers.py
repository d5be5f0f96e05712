"""Durations (``30s 5m 1h 7d``), the tier ladder and each tier's bucket arithmetic, in epoch ms.

A :class:`Tier` is the one definition of a granularity: its width, its offset (weeks start
on Monday 00:00 UTC) and the bucket start of an instant in three forms that must agree --
Python (:meth:`Tier.start`), Polars (:meth:`Tier.start_expr`) and SQL (:meth:`Tier.start_sql`).
:func:`available_from` is the one definition of what retention keeps.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import polars as pl

UNIT_MS: Final[dict[str, int]] = {
    "ms": 1,
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 365 * 86_400_000,
}

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w|y)\s*$")

#: Tier name -> bucket width in ms, finest first. Weeks start on Monday 00:00 UTC.
TIER_MS: Final[dict[str, int]] = {
    "second": 1_000,
    "minute": 60_000,
    "hour": 3_600_000,
    "day": 86_400_000,
    "week": 604_800_000,
}
TIER_ORDER: Final[tuple[str, ...]] = tuple(TIER_MS)

#: 1970-01-01 was a Thursday; Monday 1970-01-05 is 4 days later.
WEEK_OFFSET_MS: Final[int] = 4 * 86_400_000

#: An instant before every real one ("everything retained", "nothing rolled yet").
NEVER: Final[int] = -(2**62)


@dataclass(frozen=True)
class Tier:
    """One granularity: buckets ``[offset + k*width, offset + (k+1)*width)``."""

    name: str
    width_ms: int
    offset_ms: int = 0

    def start(self, t_ms: int) -> int:
        """Start (ms) of the bucket holding instant ``t_ms``."""
        return ((t_ms - self.offset_ms) // self.width_ms) * self.width_ms + self.offset_ms

    def ceil(self, t_ms: int) -> int:
        """Smallest bucket boundary at or after ``t_ms``."""
        s = self.start(t_ms)
        return s if s == t_ms else s + self.width_ms

    def start_expr(self, time: pl.Expr) -> pl.Expr:
        """Bucket start of each instant in ``time`` (a Polars Int64 expression)."""
        if self.offset_ms:
            return ((time - self.offset_ms) // self.width_ms) * self.width_ms + self.offset_ms
        return (time // self.width_ms) * self.width_ms

    def start_sql(self, column: str) -> str:
        """SQL for the bucket start of the instant in ``column`` (``//`` is integer division)."""
        w, off = self.width_ms, self.offset_ms
        if off:
            return f"(({column} - {off}) // {w} * {w} + {off})"
        return f"({column} // {w} * {w})"


#: Every tier by name, finest first.
TIERS: Final[dict[str, Tier]] = {
    name: Tier(name, width, WEEK_OFFSET_MS if name == "week" else 0)
    for name, width in TIER_MS.items()
}


def tier(name: str) -> Tier:
    """The tier called ``name`` (KeyError for an unknown name)."""
    return TIERS[name]


def ladder_of(tiers: Sequence[str]) -> list[str]:
    """``tiers`` finest first."""
    return sorted(tiers, key=TIER_ORDER.index)


def bucket_start(t_ms: int, tier_name: str) -> int:
    """Start (ms) of the ``tier_name`` bucket holding instant ``t_ms``."""
    return TIERS[tier_name].start(t_ms)


def start_expr(time: pl.Expr, tier_name: str) -> pl.Expr:
    """Bucket start (ms) of each instant in ``time`` for ``tier_name``."""
    return TIERS[tier_name].start_expr(time)


def ceil_to(t: int, tier_name: str) -> int:
    """Smallest bucket boundary of ``tier_name`` at or after ``t``."""
    return TIERS[tier_name].ceil(t)


def grid_offset(step_ms: int) -> int:
    """Offset of a grid of ``step_ms`` steps: week-aligned steps start on Mondays like weeks."""
    return WEEK_OFFSET_MS if step_ms % TIER_MS["week"] == 0 else 0


def available_from(
    watermark: int | None, tiers: Sequence[str], retention_ms: Mapping[str, int]
) -> dict[str, int]:
    """First retained instant per tier, such that any edge can always be covered.

    Two invariants make the greedy cover always succeed: a tier's first instant is a
    bucket boundary of the next coarser tier, and it is never earlier than that
    coarser tier's (a finer tier cannot start before the tier that has to carry the
    range up to it). A retention shorter than the next coarser bucket therefore
    buys no finer resolution in the past, only beyond that boundary.
    """
    ladder = ladder_of(tiers)
    if watermark is None:
        return {t: NEVER for t in ladder}
    out: dict[str, int] = {}
    for i in range(len(ladder) - 1, -1, -1):  # coarsest first
        name = ladder[i]
        start = bucket_start(watermark - retention_ms[name], name)
        if i + 1 < len(ladder):
            coarser = ladder[i + 1]
            start = max(ceil_to(start, coarser), out[coarser])
        out[name] = start
    return {t: out[t] for t in ladder}


def parse_duration(text: str) -> int:
    """Parse ``30s``/``5m``/``1h``/``7d``/``2w``/``3y`` into milliseconds; ValueError if malformed."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(
            f"bad duration {text!r} (expected a number and a unit: ms s m h d w y, e.g. 30s 5m 1h 7d)"
        )
    value = int(m.group(1))
    if value <= 0:
        raise ValueError(f"bad duration {text!r}: must be positive")
    return value * UNIT_MS[m.group(2)]


def format_duration(ms: int) -> str:
    """Shortest exact text for ``ms`` (60000 -> ``1m``, 90000 -> ``90s``)."""
    for unit in ("w", "d", "h", "m", "s"):
        size = UNIT_MS[unit]
        if ms % size == 0 and ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
