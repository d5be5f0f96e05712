"""A synthetic, deterministic payment event stream with labelled fraud patterns.

The stream is an endless sequence of events in emission (ingestion) order, defined by
``(seed, start_ms, rate_per_s)`` alone: ``events`` only cuts it, so N events are always a
prefix of N+1, and ``chunk`` only slices it. It is built in blocks of ``BLOCK_EVENTS``
events; block ``b`` has its own random generator (``PCG64(SeedSequence(seed, (1, b)))``)
and never looks at other blocks, so any position is reached without generating the ones
before it (cheap ``seek``). Inside a block everything is vectorized with numpy/polars:

* background traffic: arrival times of a Poisson process at ``rate_per_s``; cards by
  (mildly skewed) popularity, merchants by Zipf-like popularity, a shop of the merchant,
  a title from the merchant's category, log-normal amounts, ~4.5% declined;
* fraud episodes (``_patterns``) written over background slots at their wanted times,
  every event labelled 1 with its pattern name (~2.5% of events in all);
* lateness: ~2% of normal events carry an ``event_time`` seconds to minutes before their
  arrival, ~0.05% hours to days before (fraud episodes stay on time, so their shape holds).

Layout: this module is the public API; ``_stream`` builds and renders blocks, ``_patterns``
the fraud episodes, ``_population`` the cards/merchants/shops, ``_vocab`` the word lists.
"""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import polars as pl

from riskstream.core.events import RawBatch
from riskstream.errors import UsageError
from riskstream.synthetic._patterns import PATTERNS
from riskstream.synthetic._stream import (
    BLOCK_EVENTS,
    DEFAULT_RATE_PER_S,
    DEFAULT_START_MS,
    FIELDS,
    SCHEMA,
    Stream,
)
from riskstream.synthetic._vocab import BLACKLISTED_SHOPS, RISKY_KEYWORDS, VERIFIED_SHOPS

__all__ = [
    "BLACKLISTED_SHOPS",
    "BLOCK_EVENTS",
    "DEFAULT_RATE_PER_S",
    "DEFAULT_START_MS",
    "FIELDS",
    "PATTERNS",
    "RISKY_KEYWORDS",
    "SCHEMA",
    "VERIFIED_SHOPS",
    "GeneratorSource",
    "generate_frames",
    "generate_lines",
    "write_jsonl",
]

#: The partition name of ``GeneratorSource`` positions.
PARTITION = "generator"


def _check_count(name: str, value: int, minimum: int) -> None:
    """Refuse a count that is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def generate_frames(
    events: int,
    seed: int,
    *,
    start_ms: int = DEFAULT_START_MS,
    rate_per_s: float = DEFAULT_RATE_PER_S,
    chunk: int = 100_000,
) -> Iterator[pl.DataFrame]:
    """The first ``events`` events of the stream for ``seed``, in emission order, ``chunk`` rows
    per DataFrame (columns and types: ``SCHEMA``)."""
    _check_count("events", events, 0)
    _check_count("chunk", chunk, 1)
    stream = Stream(seed, start_ms, rate_per_s)
    return (stream.frame(pos, min(chunk, events - pos)) for pos in range(0, events, chunk))


def generate_lines(
    events: int,
    seed: int,
    *,
    start_ms: int = DEFAULT_START_MS,
    rate_per_s: float = DEFAULT_RATE_PER_S,
    chunk: int = 100_000,
) -> Iterator[list[bytes]]:
    """Like ``generate_frames`` but each chunk as compact JSON lines (no trailing newline)."""
    _check_count("events", events, 0)
    _check_count("chunk", chunk, 1)
    stream = Stream(seed, start_ms, rate_per_s)
    return (stream.lines(pos, min(chunk, events - pos)) for pos in range(0, events, chunk))


def write_jsonl(
    path: str | Path,
    events: int,
    seed: int,
    *,
    start_ms: int = DEFAULT_START_MS,
    rate_per_s: float = DEFAULT_RATE_PER_S,
    chunk: int = 100_000,
) -> int:
    """Write the stream as JSON lines to ``path`` (gzip when it ends with ``.gz``, with a fixed
    header so the bytes are reproducible); returns the number of events written."""
    _check_count("events", events, 0)
    _check_count("chunk", chunk, 1)
    stream = Stream(seed, start_ms, rate_per_s)
    path = Path(path)
    with path.open("wb") as raw:
        if not path.name.endswith(".gz"):
            for pos in range(0, events, chunk):
                stream.write(raw, pos, min(chunk, events - pos))
            return events
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz:
            for pos in range(0, events, chunk):
                buf = io.BytesIO()
                stream.write(buf, pos, min(chunk, events - pos))
                gz.write(buf.getbuffer())
    return events


def _parse_time(text: str) -> int:
    """Epoch milliseconds from ``text`` (an integer, or ISO-8601 with ``Z`` or an offset)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"bad time {text!r}: use epoch milliseconds or ISO-8601") from None
    if moment.tzinfo is None:
        raise UsageError(f"bad time {text!r}: ISO-8601 times need a zone, e.g. 'Z'")
    return int(moment.timestamp() * 1000)


class GeneratorSource:
    """The synthetic stream as a bounded ``Source``: positions are event indices in partition
    ``"generator"``, so a checkpointed run resumes exactly where it stopped."""

    DEFAULT_EVENTS = 100_000
    DEFAULT_SEED = 7

    def __init__(
        self,
        events: int = DEFAULT_EVENTS,
        seed: int = DEFAULT_SEED,
        *,
        start_ms: int = DEFAULT_START_MS,
        rate_per_s: float = DEFAULT_RATE_PER_S,
        until_end: bool = True,
    ) -> None:
        _check_count("events", events, 0)
        self._stream = Stream(seed, start_ms, rate_per_s)
        self.events = events
        self.until_end = until_end
        self._next = 0
        name = f"generator:?events={events}&seed={seed}"
        if start_ms != DEFAULT_START_MS:
            name += f"&start={start_ms}"
        if rate_per_s != DEFAULT_RATE_PER_S:
            rate = float(rate_per_s)
            name += f"&rate={int(rate) if rate.is_integer() else rate!r}"
        self.name = name

    @classmethod
    def from_uri(cls, uri: str, *, until_end: bool = True) -> GeneratorSource:
        """Open ``generator:?events=N&seed=S[&rate=R][&start=T]`` (defaults: 100000 events, seed 7)."""
        parts = urlsplit(uri)
        if parts.scheme != "generator":
            raise UsageError(f"not a generator source: {uri!r}")
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
        unknown = sorted(set(query) - {"events", "seed", "rate", "start"})
        if unknown:
            raise UsageError(f"{uri}: unknown parameter {unknown[0]!r} (events, seed, rate, start)")

        def last(key: str) -> str | None:
            values = query.get(key)
            return values[-1] if values else None

        try:
            events = int(last("events") or cls.DEFAULT_EVENTS)
            seed = int(last("seed") or cls.DEFAULT_SEED)
            rate = float(last("rate") or DEFAULT_RATE_PER_S)
        except ValueError:
            raise UsageError(f"{uri}: events and seed must be integers, rate a number") from None
        start_text = last("start")
        start = DEFAULT_START_MS if start_text is None else _parse_time(start_text)
        try:
            return cls(events, seed, start_ms=start, rate_per_s=rate, until_end=until_end)
        except ValueError as exc:
            raise UsageError(f"{uri}: {exc}") from None

    def seek(self, positions: Mapping[str, int]) -> None:
        """Continue at event index ``positions["generator"]`` (0 when absent)."""
        position = positions.get(PARTITION, 0)
        _check_count("generator position", position, 0)
        self._next = min(position, self.events)

    def read_batch(self, max_events: int, timeout_s: float) -> RawBatch | None:
        """Up to ``max_events`` JSON lines; None after the last event (an empty batch after a
        ``timeout_s`` wait when not ``until_end``)."""
        if self._next >= self.events:
            if self.until_end:
                return None
            time.sleep(max(timeout_s, 0.0))  # an endless wait for events that never come
        n = max(0, min(max_events, self.events - self._next))
        if n == 0:
            return RawBatch(lines=[], positions=[], resume={PARTITION: self._next}, received_ms=[])
        pos = self._next
        lines = self._stream.lines(pos, n)
        self._next = pos + n
        return RawBatch(
            lines=lines,
            positions=[f"{PARTITION}@{i}" for i in range(pos, pos + n)],
            resume={PARTITION: self._next},
            received_ms=self._stream.arrival(pos, n),
        )

    def close(self) -> None:
        """Nothing to release; drops the cached block."""
        self._stream.forget()
