"""Brute-force feature and rule evaluation, independent of the engine (plain Python)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Default retention (the spec default) and tier widths, for the tier a window uses.
_TIERS = [("second", 1_000, 2 * 3_600_000), ("minute", 60_000, 2 * 86_400_000)]
_TIERS += [("hour", 3_600_000, 90 * 86_400_000)]


def tier_width(window_ms: int) -> int:
    """Width of the finest tier retaining the window whose width divides it."""
    for _, width, keep in _TIERS:
        if keep >= window_ms and window_ms % width == 0:
            return width
    raise ValueError(window_ms)


def features(
    events: Sequence[dict[str, Any]], key: str, value: str, window_ms: int
) -> list[tuple[int, float]]:
    """(count, sum) of ``value`` over same-key events ingested before or with each event,
    whose bucket lies in ``(b_e - W, b_e]``; ``events`` in ingestion order with ``t`` in ms."""
    width = tier_width(window_ms)
    seen: dict[Any, list[tuple[int, float]]] = {}
    out: list[tuple[int, float]] = []
    for e in events:
        b = e["t"] // width * width
        rows = seen.setdefault(e[key], [])
        rows.append((b, float(e[value])))
        inside = [v for bb, v in rows if b - window_ms < bb <= b]
        out.append((len(inside), sum(inside)))
    return out
