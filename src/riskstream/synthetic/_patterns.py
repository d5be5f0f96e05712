"""Labelled fraud episodes, built vectorized for one block of the synthetic stream.

Each pattern draws a Poisson number of episodes, expands them to events with
``np.repeat`` and returns columns that the generator writes over background events
at the right times. No Python loop per event, nor per episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from riskstream.synthetic._population import (
    N_MERCHANTS,
    BoolArr,
    FloatArr,
    IntArr,
    Population,
    money,
)

#: Pattern names; the index is the pattern code used internally (0 = normal traffic).
PATTERNS: tuple[str, ...] = (
    "none",
    "card_testing",
    "velocity_spike",
    "card_many_merchants",
    "risky_product",
    "blacklisted_shop",
    "country_mismatch",
)

# name: (share of all events, episode size min..max, episode duration min..max in seconds)
_SHAPES: dict[str, tuple[float, int, int, float, float]] = {
    "card_testing": (0.006, 10, 30, 15.0, 50.0),
    "velocity_spike": (0.005, 8, 20, 60.0, 240.0),
    "card_many_merchants": (0.004, 10, 16, 120.0, 420.0),
    "risky_product": (0.004, 1, 2, 0.0, 120.0),
    "blacklisted_shop": (0.003, 1, 5, 30.0, 600.0),
    "country_mismatch": (0.003, 1, 3, 30.0, 300.0),
}
#: Share of events that are legit sales of risky-worded items at verified shops (label 0).
VERIFIED_RISKY_SHARE = 0.0015


@dataclass
class Injected:
    """Events to write over background slots; ``at_ms`` is the wanted offset in the block."""

    at_ms: FloatArr
    card: IntArr
    merchant: IntArr
    shop: IntArr
    amount: FloatArr
    title: IntArr
    declined: BoolArr
    ip_shift: IntArr
    pattern: IntArr
    label: IntArr

    @staticmethod
    def concat(parts: list[Injected]) -> Injected:
        """All parts as one, sorted by wanted time (stable, so episodes keep their order)."""
        cols = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS}
        order = np.argsort(cols["at_ms"], kind="stable")
        return Injected(**{name: col[order] for name, col in cols.items()})


_FIELDS = tuple(Injected.__dataclass_fields__)


@dataclass
class _Episodes:
    """Event-level scaffold of a set of episodes: which episode, rank inside it, wanted time."""

    count: int
    ep: IntArr  # event -> episode
    rank: IntArr  # event -> 0-based rank inside its episode
    at_ms: FloatArr


def _episodes(rng: np.random.Generator, name: str, block_events: int, block_ms: float) -> _Episodes:
    """Draw episodes of ``name`` for one block; durations are capped to fit inside the block."""
    share, size_lo, size_hi, dur_lo, dur_hi = _SHAPES[name]
    mean_size = (size_lo + size_hi) / 2.0
    count = int(rng.poisson(share * block_events / mean_size))
    sizes = rng.integers(size_lo, size_hi + 1, count)
    duration = np.minimum(rng.uniform(dur_lo * 1000.0, dur_hi * 1000.0, count), 0.9 * block_ms)
    start = rng.random(count) * (block_ms - duration)
    ep = np.repeat(np.arange(count, dtype=np.int64), sizes)
    first = np.cumsum(sizes) - sizes
    rank = np.arange(len(ep), dtype=np.int64) - first[ep]
    # Stratified offsets: strictly increasing inside an episode, spread over its duration.
    at_ms = start[ep] + (rank + rng.random(len(ep))) / sizes[ep] * duration[ep]
    return _Episodes(count, ep, rank, at_ms)


def _ip_shift(pop: Population, rng: np.random.Generator, count: int, p_foreign: float) -> IntArr:
    """Per-episode IP country shift: 0 (home) or, with ``p_foreign``, another country."""
    foreign = rng.random(count) < p_foreign
    return np.where(foreign, pop.other_country_shift(rng, count), 0)


def _build(
    name: str,
    e: _Episodes,
    *,
    card: IntArr,
    merchant: IntArr,
    shop: IntArr,
    amount: FloatArr,
    title: IntArr,
    declined: BoolArr,
    ip_shift: IntArr,
) -> Injected:
    """Package event-level columns of one pattern, all labelled fraud."""
    n = len(e.ep)
    return Injected(
        at_ms=e.at_ms,
        card=card,
        merchant=merchant,
        shop=shop,
        amount=amount,
        title=title,
        declined=declined,
        ip_shift=ip_shift,
        pattern=np.full(n, PATTERNS.index(name), dtype=np.int64),
        label=np.ones(n, dtype=np.int64),
    )


def inject(
    pop: Population, rng: np.random.Generator, block_events: int, block_ms: float
) -> Injected:
    """All fraud episodes (plus legit risky-worded sales at verified shops) of one block."""
    parts: list[Injected] = []

    # card_testing: a stolen card probes one (random, often small) merchant with tiny amounts.
    e = _episodes(rng, "card_testing", block_events, block_ms)
    n = len(e.ep)
    ep_merchant = rng.integers(0, N_MERCHANTS, e.count)
    ep_shop = pop.shops_of(rng, ep_merchant)
    merchant = ep_merchant[e.ep]
    parts.append(
        _build(
            "card_testing",
            e,
            card=pop.cards(rng, e.count)[e.ep],
            merchant=merchant,
            shop=ep_shop[e.ep],
            amount=money(rng.uniform(0.5, 3.0, n), 0.5, 3.0),
            title=pop.titles_of(rng, merchant),
            declined=rng.random(n) < 0.65,
            ip_shift=_ip_shift(pop, rng, e.count, 0.3)[e.ep],
        )
    )

    # velocity_spike: one card, many normal purchases at one to three merchants.
    e = _episodes(rng, "velocity_spike", block_events, block_ms)
    n = len(e.ep)
    pool = pop.merchants(rng, e.count * 3).reshape(e.count, 3)
    used = rng.integers(1, 4, e.count)
    merchant = pool[e.ep, (rng.random(n) * used[e.ep]).astype(np.int64)]
    parts.append(
        _build(
            "velocity_spike",
            e,
            card=pop.cards(rng, e.count)[e.ep],
            merchant=merchant,
            shop=pop.shops_of(rng, merchant),
            amount=pop.amounts(rng, n),
            title=pop.titles_of(rng, merchant),
            declined=rng.random(n) < 0.10,
            ip_shift=np.zeros(n, dtype=np.int64),
        )
    )

    # card_many_merchants: one card at distinct merchants (an arithmetic walk mod a prime).
    e = _episodes(rng, "card_many_merchants", block_events, block_ms)
    n = len(e.ep)
    origin = rng.integers(0, N_MERCHANTS, e.count)
    step = rng.integers(1, N_MERCHANTS, e.count)
    merchant = (origin[e.ep] + e.rank * step[e.ep]) % N_MERCHANTS
    parts.append(
        _build(
            "card_many_merchants",
            e,
            card=pop.cards(rng, e.count)[e.ep],
            merchant=merchant,
            shop=pop.shops_of(rng, merchant),
            amount=pop.amounts(rng, n),
            title=pop.titles_of(rng, merchant),
            declined=rng.random(n) < 0.15,
            ip_shift=_ip_shift(pop, rng, e.count, 0.2)[e.ep],
        )
    )

    # risky_product: risky-worded titles at ordinary (not verified, not blacklisted) shops.
    e = _episodes(rng, "risky_product", block_events, block_ms)
    n = len(e.ep)
    shop = pop.normal_shop_ids[rng.integers(0, len(pop.normal_shop_ids), e.count)][e.ep]
    parts.append(
        _build(
            "risky_product",
            e,
            card=pop.cards(rng, e.count)[e.ep],
            merchant=pop.shop_owner[shop],
            shop=shop,
            amount=pop.amounts(rng, n),
            title=pop.risky(rng, n),
            declined=rng.random(n) < 0.05,
            ip_shift=_ip_shift(pop, rng, e.count, 0.1)[e.ep],
        )
    )

    # blacklisted_shop: several cards buying ordinary items at a blocked shop.
    e = _episodes(rng, "blacklisted_shop", block_events, block_ms)
    n = len(e.ep)
    shop = pop.blacklisted[rng.integers(0, len(pop.blacklisted), e.count)][e.ep]
    merchant = pop.shop_owner[shop]
    parts.append(
        _build(
            "blacklisted_shop",
            e,
            card=pop.cards(rng, n),
            merchant=merchant,
            shop=shop,
            amount=pop.amounts(rng, n),
            title=pop.titles_of(rng, merchant),
            declined=rng.random(n) < 0.05,
            ip_shift=np.zeros(n, dtype=np.int64),
        )
    )

    # country_mismatch: a card used from another country for large amounts.
    e = _episodes(rng, "country_mismatch", block_events, block_ms)
    n = len(e.ep)
    merchant = pop.merchants(rng, e.count)[e.ep]
    parts.append(
        _build(
            "country_mismatch",
            e,
            card=pop.cards(rng, e.count)[e.ep],
            merchant=merchant,
            shop=pop.shops_of(rng, merchant),
            amount=money(rng.lognormal(np.log(1500.0), 0.5, n), 500.0, 9500.0),
            title=pop.titles_of(rng, merchant),
            declined=rng.random(n) < 0.10,
            ip_shift=pop.other_country_shift(rng, e.count)[e.ep],
        )
    )

    # Legit: verified shops selling risky-worded items, label 0 (analysts exempt them).
    n = int(rng.poisson(VERIFIED_RISKY_SHARE * block_events))
    shop = pop.verified[rng.integers(0, len(pop.verified), n)]
    parts.append(
        Injected(
            at_ms=rng.random(n) * block_ms,
            card=pop.cards(rng, n),
            merchant=pop.shop_owner[shop],
            shop=shop,
            amount=pop.amounts(rng, n),
            title=pop.risky(rng, n),
            declined=rng.random(n) < 0.045,
            ip_shift=np.zeros(n, dtype=np.int64),
            pattern=np.zeros(n, dtype=np.int64),
            label=np.zeros(n, dtype=np.int64),
        )
    )
    return Injected.concat(parts)
