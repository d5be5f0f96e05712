"""The stream machinery behind ``generator``: blocks, their fraud and lateness, rendering.

Block ``b`` of the stream has its own random generator (``PCG64(SeedSequence(seed, (1, b)))``)
and never looks at other blocks, so any position is reached without generating the ones
before it. Rendering to columns or JSON text is pure polars expressions over pool indices.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import IO

import numpy as np
import polars as pl

from riskstream.synthetic._patterns import PATTERNS, inject
from riskstream.synthetic._population import (
    N_COUNTRIES,
    N_MERCHANTS,
    BoolArr,
    FloatArr,
    IntArr,
    Population,
    population,
)
from riskstream.synthetic._vocab import COUNTRIES, CURRENCIES, normal_titles, risky_titles

#: 2026-01-05T00:00:00Z in epoch milliseconds: the default time of the first event.
DEFAULT_START_MS = 1_767_571_200_000
#: Average events per second of event time.
DEFAULT_RATE_PER_S = 200.0
#: Events per independently seeded block (a property of the stream, not of ``chunk``).
BLOCK_EVENTS = 100_000
_TEXT_ROWS = 25_000  # rows rendered to JSON text at a time

SCHEMA = pl.Schema(
    {
        "event_id": pl.String,
        "event_time": pl.Int64,
        "card_id": pl.String,
        "person_id": pl.String,
        "merchant_id": pl.String,
        "shop_id": pl.String,
        "amount": pl.Float64,
        "currency": pl.String,
        "card_country": pl.String,
        "ip_country": pl.String,
        "product_title": pl.String,
        "status": pl.String,
        "label": pl.Int64,
        "pattern": pl.String,
    }
)
FIELDS: tuple[str, ...] = tuple(SCHEMA.names())

_DECLINE_RATE = 0.045
_FOREIGN_IP_RATE = 0.03
_FOREIGN_CURRENCY = (0.92, 0.05, 0.03)  # home currency, USD, EUR
_LATE_RATE = 0.02  # seconds to minutes late
_VERY_LATE_RATE = 0.0005  # hours to days late
_LATE_MS = (2_000.0, 300_000.0)
_VERY_LATE_MS = (3_600_000.0, 3 * 86_400_000.0)


@dataclass(frozen=True)
class _Block:
    """One block of the stream as integer/float columns (entity ordinals, not ids)."""

    arrival_ms: IntArr
    event_time: IntArr
    card: IntArr
    merchant: IntArr
    shop: IntArr
    amount: FloatArr
    title: IntArr
    declined: BoolArr
    ip_shift: IntArr
    currency_mode: IntArr
    pattern: IntArr
    label: IntArr


def _free_slots(wanted: IntArr, size: int) -> IntArr:
    """Strictly increasing slots as close as possible to the sorted ``wanted`` ones, in range."""
    k = np.arange(len(wanted), dtype=np.int64)
    slots = np.maximum.accumulate(wanted - k) + k  # push collisions later
    return np.minimum(slots, size - len(wanted) + k)  # and keep the tail inside the block


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> FloatArr:
    """``n`` values spread evenly in log space between ``bounds``."""
    return np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]), n))


def _make_block(pop: Population, seed: int, index: int, start_ms: int, rate: float) -> _Block:
    """Generate block ``index``: background traffic, fraud episodes, then lateness."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(1, index))))
    n = BLOCK_EVENTS
    block_ms = n * 1000.0 / rate
    gaps = np.cumsum(rng.standard_exponential(n + 1))  # a Poisson process with n arrivals
    offsets = gaps[:-1] * (block_ms / gaps[-1])
    arrival = np.floor(start_ms + index * block_ms + offsets).astype(np.int64)

    card = pop.cards(rng, n)
    merchant = pop.merchants(rng, n)
    shop = pop.shops_of(rng, merchant)
    amount = pop.amounts(rng, n)
    title = pop.titles_of(rng, merchant)
    declined = rng.random(n) < _DECLINE_RATE
    ip_shift = np.where(rng.random(n) < _FOREIGN_IP_RATE, pop.other_country_shift(rng, n), 0)
    currency_mode = rng.choice(3, size=n, p=_FOREIGN_CURRENCY).astype(np.int64)
    pattern = np.zeros(n, dtype=np.int64)
    label = np.zeros(n, dtype=np.int64)

    fraud = inject(pop, rng, n, block_ms)
    slots = _free_slots(np.searchsorted(offsets, fraud.at_ms).astype(np.int64), n)
    card[slots] = fraud.card
    merchant[slots] = fraud.merchant
    shop[slots] = fraud.shop
    amount[slots] = fraud.amount
    title[slots] = fraud.title
    declined[slots] = fraud.declined
    ip_shift[slots] = fraud.ip_shift
    pattern[slots] = fraud.pattern
    label[slots] = fraud.label

    draw = rng.random(n)
    normal = label == 0
    late = normal & (draw < _LATE_RATE)
    very_late = normal & (draw >= _LATE_RATE) & (draw < _LATE_RATE + _VERY_LATE_RATE)
    delay = np.zeros(n, dtype=np.int64)
    delay[late] = np.round(_log_uniform(rng, _LATE_MS, int(late.sum())))
    delay[very_late] = np.round(_log_uniform(rng, _VERY_LATE_MS, int(very_late.sum())))
    return _Block(
        arrival_ms=arrival,
        event_time=arrival - delay,
        card=card,
        merchant=merchant,
        shop=shop,
        amount=amount,
        title=title,
        declined=declined,
        ip_shift=ip_shift,
        currency_mode=currency_mode,
        pattern=pattern,
        label=label,
    )


@dataclass(frozen=True)
class _Render:
    """Polars expressions that turn raw block columns into public columns or JSON text.

    ``fragments`` gives, per field, the text ``"key":value`` (the first with ``{``, the last
    with ``}``), mostly gathered from pre-rendered pools, so that joining them with commas
    (``concat_str`` or the CSV writer with ``quote_style="never"``) yields compact JSON lines
    without any per-row Python.
    """

    columns: dict[str, pl.Expr]
    fragments: list[pl.Expr]
    json_line: pl.Expr

    @staticmethod
    def for_population(pop: Population) -> _Render:
        """Pools and expressions for ``pop``."""
        countries = [c for c, _, _ in COUNTRIES]
        pools: dict[str, list[str]] = {  # categorical strings, indexed by the raw column
            "merchant_id": [f"merchant_{i:04d}" for i in range(1, N_MERCHANTS + 1)],
            "shop_id": [f"shop_{n}" for n in pop.shop_number.tolist()],
            "currency": list(CURRENCIES),
            "card_country": countries,
            "ip_country": countries,
            "product_title": list(normal_titles()[0] + risky_titles()),
            "status": ["succeeded", "declined"],
            "pattern": list(PATTERNS),
        }
        padded = {"event_id": ("ev-", 9), "card_id": ("card_", 7), "person_id": ("person_", 6)}
        columns: dict[str, pl.Expr] = {}
        fragments: list[pl.Expr] = []
        for i, name in enumerate(FIELDS):
            head = ("{" if i == 0 else "") + json.dumps(name) + ":"
            tail = "}" if i == len(FIELDS) - 1 else ""
            index = pl.col(name)
            if name in pools:  # gather the value, and its pre-rendered (escaped) fragment
                values = pools[name]
                rendered = [head + json.dumps(v, ensure_ascii=False) + tail for v in values]
                columns[name] = pl.lit(pl.Series(values, dtype=pl.String)).gather(index)
                fragment = pl.lit(pl.Series(rendered, dtype=pl.String)).gather(index)
            elif name == "label":  # 0 or 1: a number, rendered from a two-entry pool
                columns[name] = index
                fragment = pl.lit(pl.Series([f"{head}0{tail}", f"{head}1{tail}"])).gather(index)
            elif name in padded:  # ids: prefix + zero-padded number, plain ASCII
                prefix, width = padded[name]
                digits = index.cast(pl.String).str.zfill(width)
                columns[name] = pl.lit(prefix) + digits
                fragment = pl.concat_str([pl.lit(f'{head}"{prefix}'), digits, pl.lit(f'"{tail}')])
            else:  # event_time, amount: numbers as polars prints them (shortest round trip)
                columns[name] = index
                fragment = pl.concat_str([pl.lit(head), index.cast(pl.String), pl.lit(tail)])
            fragments.append(fragment.alias(name))
        columns = {name: expr.alias(name) for name, expr in columns.items()}
        return _Render(columns, fragments, pl.concat_str(fragments, separator=",").alias("line"))


def _raw(pop: Population, block: _Block, first_index: int, lo: int, hi: int) -> pl.DataFrame:
    """Rows ``[lo, hi)`` of a block (whose first event is ``first_index``) as numbers and pool
    indices, one column per public field."""
    card = block.card[lo:hi]
    country = pop.card_country[card]
    mode = block.currency_mode[lo:hi]
    currency = np.where(
        mode == 0,
        pop.currency_of_country[country],
        np.where(mode == 1, CURRENCIES.index("USD"), CURRENCIES.index("EUR")),
    )
    return pl.DataFrame(
        {
            "event_id": np.arange(first_index + lo, first_index + hi, dtype=np.int64),
            "event_time": block.event_time[lo:hi],
            "card_id": pop.card_number[card],
            "person_id": pop.card_person[card] + 1,
            "merchant_id": block.merchant[lo:hi],
            "shop_id": block.shop[lo:hi],
            "amount": block.amount[lo:hi],
            "currency": currency,
            "card_country": country,
            "ip_country": (country + block.ip_shift[lo:hi]) % N_COUNTRIES,
            "product_title": block.title[lo:hi],
            "status": block.declined[lo:hi].astype(np.int64),
            "label": block.label[lo:hi],
            "pattern": block.pattern[lo:hi],
        }
    )


@lru_cache(maxsize=4)
def world(seed: int) -> tuple[Population, _Render]:
    """The population of ``seed`` and its renderer (built once per seed, ~0.3 s)."""
    pop = population(seed)
    return pop, _Render.for_population(pop)


class Stream:
    """Random access to the endless stream for one ``(seed, start_ms, rate)``; caches one block."""

    def __init__(self, seed: int, start_ms: int, rate_per_s: float) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not (isinstance(rate_per_s, int | float) and 0 < rate_per_s < math.inf):
            raise ValueError(f"rate_per_s must be a positive number, got {rate_per_s!r}")
        if isinstance(start_ms, bool) or not isinstance(start_ms, int):
            raise ValueError(f"start_ms must be integer epoch milliseconds, got {start_ms!r}")
        self.seed = seed
        self.start_ms = start_ms
        self.rate = float(rate_per_s)
        self.pop, self.render = world(seed)
        self._cached: tuple[int, _Block] | None = None

    def block(self, index: int) -> _Block:
        """Block ``index``, generated on first use."""
        if self._cached is None or self._cached[0] != index:
            self._cached = (
                index,
                _make_block(self.pop, self.seed, index, self.start_ms, self.rate),
            )
        return self._cached[1]

    def forget(self) -> None:
        """Drop the cached block (memory)."""
        self._cached = None

    def raw(self, pos: int, n: int) -> pl.DataFrame:
        """Events ``[pos, pos + n)`` as ordinals/numbers (see ``_raw``), across blocks."""
        parts: list[pl.DataFrame] = []
        end = pos + n
        while pos < end:
            index = pos // BLOCK_EVENTS
            first = index * BLOCK_EVENTS
            hi = min(end, first + BLOCK_EVENTS)
            parts.append(_raw(self.pop, self.block(index), first, pos - first, hi - first))
            pos = hi
        if len(parts) == 1:
            return parts[0]
        return pl.concat(parts) if parts else _raw(self.pop, self.block(0), 0, 0, 0)

    def frame(self, pos: int, n: int) -> pl.DataFrame:
        """Events ``[pos, pos + n)`` as a DataFrame with ``SCHEMA``."""
        return self.raw(pos, n).select(**self.render.columns)

    def _text_pieces(self, pos: int, n: int) -> Iterator[pl.DataFrame]:
        """Raw rows in pieces of at most ``_TEXT_ROWS`` (keeps text buffers small and reused)."""
        for start in range(pos, pos + n, _TEXT_ROWS):
            yield self.raw(start, min(_TEXT_ROWS, pos + n - start))

    def lines(self, pos: int, n: int) -> list[bytes]:
        """Events ``[pos, pos + n)`` as compact JSON lines without newlines."""
        lines: list[bytes] = []
        for raw in self._text_pieces(pos, n):
            line = raw.select(self.render.json_line).to_series().cast(pl.Binary)
            lines.extend(line.to_list())
        return lines

    def write(self, out: IO[bytes], pos: int, n: int) -> None:
        """Write events ``[pos, pos + n)`` to ``out`` as newline-ended JSON lines."""
        for raw in self._text_pieces(pos, n):
            text = raw.select(self.render.fragments)
            text.write_csv(out, include_header=False, quote_style="never", separator=",")

    def arrival(self, pos: int, n: int) -> list[int]:
        """Arrival (ingestion) times in ms of events ``[pos, pos + n)``."""
        out: list[int] = []
        end = pos + n
        while pos < end:
            index = pos // BLOCK_EVENTS
            first = index * BLOCK_EVENTS
            hi = min(end, first + BLOCK_EVENTS)
            out.extend(self.block(index).arrival_ms[pos - first : hi - first].tolist())
            pos = hi
        return out
