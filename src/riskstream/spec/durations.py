"""Moved: durations and the tier ladder live in :mod:`riskstream.core.tiers` (kept importable here)."""

from riskstream.core.tiers import (
    TIER_MS,
    TIER_ORDER,
    UNIT_MS,
    WEEK_OFFSET_MS,
    bucket_start,
    format_duration,
    parse_duration,
)

__all__ = [
    "TIER_MS",
    "TIER_ORDER",
    "UNIT_MS",
    "WEEK_OFFSET_MS",
    "bucket_start",
    "format_duration",
    "parse_duration",
]
