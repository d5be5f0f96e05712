"""Durations (``30s 5m 1h 7d``) and the tier ladder, in epoch milliseconds."""

from __future__ import annotations

import re
from typing import Final

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


def bucket_start(t_ms: int, tier: str) -> int:
    """Start (ms) of the ``tier`` bucket holding instant ``t_ms``."""
    width = TIER_MS[tier]
    offset = WEEK_OFFSET_MS if tier == "week" else 0
    return ((t_ms - offset) // width) * width + offset
