"""Raw events as sources deliver them (:class:`RawBatch`) and the time formats events and users write.

Times are epoch milliseconds or ISO-8601; one list of accepted ISO layouts
(:data:`ISO_FORMATS`) serves the decoder, the Kafka time-range reader and the
command line / API (:func:`parse_time`, :func:`iso`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import polars as pl

from riskstream.errors import UsageError

#: ISO-8601 layouts accepted in event time fields (Polars ``strptime`` syntax; UTC if no zone).
ISO_FORMATS: Final[tuple[str, ...]] = (
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%Y-%m-%dT%H:%M:%S%:z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S",
)


@dataclass
class RawBatch:
    """Raw events in source order.

    ``positions[i]`` is where event ``i`` came from, as text for quarantine
    (``file.jsonl@1234`` byte offset, ``payments/2@981`` partition and offset).
    ``resume`` maps each partition name to the position to resume from after this
    batch (file: next byte offset; Kafka: next offset); it goes into the checkpoint.
    """

    lines: list[bytes]
    positions: list[str]
    resume: dict[str, int] = field(default_factory=dict)
    #: Kafka message timestamps or receive times (ms), parallel to ``lines``, when known.
    received_ms: list[int] | None = None
    #: index -> full length of a line the source cut short (longer than ``event.max_bytes``:
    #: only a prefix is kept, the event is quarantined as oversized).
    truncated: dict[int, int] | None = None


def iso_time_expr(text: pl.Expr) -> pl.Expr:
    """Epoch ms of ISO-8601 text in any of :data:`ISO_FORMATS` (null where none fits)."""
    return pl.coalesce(
        [
            text.str.to_datetime(fmt, strict=False, time_zone="UTC", time_unit="ms")
            for fmt in ISO_FORMATS
        ]
    ).dt.epoch("ms")


def time_expr(text: pl.Expr) -> pl.Expr:
    """Epoch ms from a String column: a number (ms, floored) or one of the ISO-8601 layouts."""
    as_number = text.cast(pl.Float64, strict=False)
    return (
        pl.when(as_number.is_not_null() & as_number.is_finite())
        .then(as_number.floor().cast(pl.Int64, strict=False))
        .otherwise(iso_time_expr(text))
    )


def iso(ms: int) -> str:
    """Epoch ms as ISO-8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str | int) -> int:
    """Epoch milliseconds or ISO-8601 (``Z`` or an offset; no zone means UTC) -> epoch ms."""
    if isinstance(text, int):
        return text
    s = str(text).strip()
    if s.lstrip("-").isdigit():
        return int(s)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"bad time {s!r}: use epoch milliseconds or ISO-8601 like 2026-01-05T10:00:00Z"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
