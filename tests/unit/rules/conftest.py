"""Shared context for the rule language tests: a small declared schema, metrics and lists."""

from __future__ import annotations

import pytest

from riskstream.rules import RuleContext

FIELDS = {
    "amount": "float",
    "n": "int",
    "status": "str",
    "shop_id": "str",
    "title": "str",
    "flag": "bool",
    "extra": "any",
}
METRICS = {
    "card": frozenset({"count", "sum", "avg", "min", "max"}),
    "merchant_cards": frozenset({"distinct"}),
}
LISTS = {"risky_words": "str", "blocked_shops": "str"}


@pytest.fixture
def ctx() -> RuleContext:
    """Declared fields, two metrics and two lists."""
    return RuleContext(fields=FIELDS, metrics=METRICS, lists=LISTS)
