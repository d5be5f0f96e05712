"""The synthetic world behind the payment stream: persons, cards, merchants, shops, titles.

Built once per seed as flat numpy arrays so events can be sampled for a whole block at
once (activity tiers for cards, an alias table for merchants), never one call per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from riskstream.synthetic._vocab import (
    BLACKLISTED_SHOPS,
    CATEGORY_SHARES,
    COUNTRIES,
    CURRENCIES,
    VERIFIED_SHOPS,
    normal_titles,
    risky_titles,
)

IntArr = npt.NDArray[np.int64]
FloatArr = npt.NDArray[np.float64]
BoolArr = npt.NDArray[np.bool_]

N_PERSONS = 500_000
#: A prime, so ``(a + j * s) % N_MERCHANTS`` visits distinct merchants for any step ``s``.
N_MERCHANTS = 5003
N_COUNTRIES = len(COUNTRIES)

_CARDS_PER_PERSON = (0.55, 0.30, 0.15)  # 1, 2 or 3 cards
_CARD_TIERS = 24
_NORMAL_AMOUNT_MEDIAN = 35.0
_NORMAL_AMOUNT_SIGMA = 1.1


def _shop_number(shop_id: str) -> int:
    """The number in a ``shop_N`` id."""
    return int(shop_id.rsplit("_", 1)[1])


@dataclass(frozen=True)
class Population:
    """Entities and their popularity; every array is indexed by the entity's ordinal."""

    card_tier_cdf: FloatArr  # cumulative popularity of the card activity tiers
    card_tier_start: IntArr  # tier -> first card ordinal (tiers are contiguous ranges)
    card_tier_count: IntArr
    card_number: IntArr  # card ordinal -> number shown in card_id
    card_person: IntArr  # card ordinal -> person ordinal (person_id number - 1)
    card_country: IntArr  # card ordinal -> country index (the person's home)
    merchant_alias_prob: FloatArr  # Walker alias table of Zipf-like merchant popularity
    merchant_alias: IntArr
    merchant_category: IntArr
    merchant_shop_start: IntArr  # merchant -> first normal shop ordinal
    merchant_shop_count: IntArr
    shop_number: IntArr  # shop ordinal -> N in shop_N
    shop_owner: IntArr  # shop ordinal -> merchant
    normal_shop_ids: IntArr  # ordinals of normal shops that are not verified
    blacklisted: IntArr  # ordinals of BLACKLISTED_SHOPS
    verified: IntArr  # ordinals of VERIFIED_SHOPS
    currency_of_country: IntArr  # country index -> CURRENCIES index
    title_start: IntArr  # category -> first title index
    title_count: IntArr
    risky_start: int  # index of the first risky title in the combined title pool
    risky_count: int

    # -- sampling (vectorized over n events) ---------------------------------------------

    def cards(self, rng: np.random.Generator, n: int) -> IntArr:
        """``n`` card ordinals drawn by card popularity: a tier by weight, then a card in it."""
        tier = np.searchsorted(self.card_tier_cdf, rng.random(n), side="right")
        offset = (rng.random(n) * self.card_tier_count[tier]).astype(np.int64)
        return self.card_tier_start[tier] + offset

    def merchants(self, rng: np.random.Generator, n: int) -> IntArr:
        """``n`` merchant ordinals drawn by (skewed) merchant popularity (alias method, O(1))."""
        pick = rng.integers(0, len(self.merchant_alias), n)
        keep = rng.random(n) < self.merchant_alias_prob[pick]
        return np.where(keep, pick, self.merchant_alias[pick])

    def shops_of(self, rng: np.random.Generator, merchants: IntArr) -> IntArr:
        """One normal shop of each given merchant, uniformly."""
        count = self.merchant_shop_count[merchants]
        return self.merchant_shop_start[merchants] + (rng.random(len(merchants)) * count).astype(
            np.int64
        )

    def titles_of(self, rng: np.random.Generator, merchants: IntArr) -> IntArr:
        """A normal product title (pool index) from each merchant's category."""
        category = self.merchant_category[merchants]
        count = self.title_count[category]
        return self.title_start[category] + (rng.random(len(merchants)) * count).astype(np.int64)

    def risky(self, rng: np.random.Generator, n: int) -> IntArr:
        """``n`` risky product titles (pool indices)."""
        return self.risky_start + rng.integers(0, self.risky_count, n)

    def amounts(self, rng: np.random.Generator, n: int, scale: float = 1.0) -> FloatArr:
        """Log-normal everyday amounts (median ~35 times ``scale``), 0.50 to 20,000."""
        raw = rng.lognormal(np.log(_NORMAL_AMOUNT_MEDIAN * scale), _NORMAL_AMOUNT_SIGMA, n)
        return money(raw, 0.5, 20_000.0)

    def other_country_shift(self, rng: np.random.Generator, n: int) -> IntArr:
        """Shifts in 1..N_COUNTRIES-1: ``(card_country + shift) % N`` is another country."""
        return rng.integers(1, N_COUNTRIES, n)


def money(values: FloatArr, low: float, high: float) -> FloatArr:
    """``values`` clipped to ``[low, high]`` and rounded to cents."""
    out: FloatArr = np.round(np.clip(values, low, high), 2).astype(np.float64, copy=False)
    return out


def _cdf(weights: FloatArr) -> FloatArr:
    """Cumulative, normalised weights with an exact 1.0 at the end."""
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


def _alias_table(weights: FloatArr) -> tuple[FloatArr, IntArr]:
    """Walker/Vose alias table: sample ``i`` uniformly, keep it with ``prob[i]``, else ``alias[i]``."""
    n = len(weights)
    scaled = (weights * (n / weights.sum())).tolist()
    prob = [1.0] * n
    alias = list(range(n))
    small = [i for i, w in enumerate(scaled) if w < 1.0]
    large = [i for i, w in enumerate(scaled) if w >= 1.0]
    while small and large:
        lo, hi = small.pop(), large.pop()
        prob[lo] = scaled[lo]
        alias[lo] = hi
        scaled[hi] -= 1.0 - scaled[lo]
        (small if scaled[hi] < 1.0 else large).append(hi)
    return np.array(prob), np.array(alias, dtype=np.int64)


def _card_tiers(n_cards: int) -> tuple[FloatArr, IntArr, IntArr]:
    """Equal-size card tiers whose per-card weights follow log-normal quantiles (sigma 0.8)."""
    bounds = np.linspace(0, n_cards, _CARD_TIERS + 1).astype(np.int64)
    count = np.diff(bounds)
    normal = NormalDist()
    per_card = np.exp([0.8 * normal.inv_cdf((k + 0.5) / _CARD_TIERS) for k in range(_CARD_TIERS)])
    return _cdf(per_card * count), bounds[:-1], count


@lru_cache(maxsize=4)
def population(seed: int) -> Population:
    """The world for ``seed``: ~800k cards of 500k persons, 5003 merchants, ~10k shops."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0,))))
    shares = np.array([w for _, _, w in COUNTRIES])
    person_country = rng.choice(N_COUNTRIES, size=N_PERSONS, p=shares / shares.sum())
    per_person = rng.choice(3, size=N_PERSONS, p=_CARDS_PER_PERSON) + 1
    card_person = rng.permutation(np.repeat(np.arange(N_PERSONS, dtype=np.int64), per_person))
    n_cards = len(card_person)
    card_number = rng.permutation(n_cards).astype(np.int64) + 1
    # Mild skew: the busiest cards still make well under one payment per minute.
    tier_cdf, tier_start, tier_count = _card_tiers(n_cards)

    ranks = rng.permutation(N_MERCHANTS)
    alias_prob, alias = _alias_table(1.0 / (ranks.astype(np.float64) + 2.0) ** 1.05)
    cat_shares = np.array(CATEGORY_SHARES)
    merchant_category = rng.choice(
        len(cat_shares), size=N_MERCHANTS, p=cat_shares / cat_shares.sum()
    )
    shop_count = np.minimum(rng.geometric(0.5, N_MERCHANTS), 30).astype(np.int64)
    shop_start = np.cumsum(shop_count) - shop_count
    n_normal = int(shop_count.sum())
    banned = np.array(sorted(_shop_number(s) for s in BLACKLISTED_SHOPS), dtype=np.int64)
    numbers = np.arange(1, n_normal + len(banned) + 1, dtype=np.int64)
    numbers = numbers[~np.isin(numbers, banned)][:n_normal]
    shop_owner = np.repeat(np.arange(N_MERCHANTS, dtype=np.int64), shop_count)
    # Blacklisted shops come after the normal ones: no merchant's normal range reaches them.
    shop_number = np.concatenate([numbers, banned])
    shop_owner = np.concatenate([shop_owner, rng.integers(0, N_MERCHANTS, len(banned))])
    blacklisted = np.arange(n_normal, n_normal + len(banned), dtype=np.int64)
    verified = np.searchsorted(numbers, [_shop_number(s) for s in VERIFIED_SHOPS]).astype(np.int64)
    if not np.array_equal(numbers[verified], [_shop_number(s) for s in VERIFIED_SHOPS]):
        raise AssertionError("verified shops must be normal shop numbers")
    normal_shop_ids = np.setdiff1d(np.arange(n_normal, dtype=np.int64), verified)

    titles, starts, counts = normal_titles()
    return Population(
        card_tier_cdf=tier_cdf,
        card_tier_start=tier_start,
        card_tier_count=tier_count,
        card_number=card_number,
        card_person=card_person,
        card_country=person_country[card_person].astype(np.int64),
        merchant_alias_prob=alias_prob,
        merchant_alias=alias,
        merchant_category=merchant_category.astype(np.int64),
        merchant_shop_start=shop_start,
        merchant_shop_count=shop_count,
        shop_number=shop_number,
        shop_owner=shop_owner,
        normal_shop_ids=normal_shop_ids,
        blacklisted=blacklisted,
        verified=verified,
        currency_of_country=np.array(
            [CURRENCIES.index(c) for _, c, _ in COUNTRIES], dtype=np.int64
        ),
        title_start=np.array(starts, dtype=np.int64),
        title_count=np.array(counts, dtype=np.int64),
        risky_start=len(titles),
        risky_count=len(risky_titles()),
    )
