"""Evaluation semantics: nulls, int/float mixing, features, functions, undeclared fields."""

from __future__ import annotations

import polars as pl
import pytest

from riskstream.rules import FeatureRef, ListValues, RuleContext, compile_expression

LISTS = ListValues({"risky_words": ["hair extensions"], "blocked_shops": ["shop_13", "shop_99"]})


@pytest.fixture
def frame() -> pl.DataFrame:
    """Four events with nulls, an Int64 and a Float64 column and two feature columns."""
    return pl.DataFrame(
        {
            "amount": [1.0, 20.0, None, 3.0],
            "n": [1, 2, None, 4],
            "status": ["succeeded", "failed", None, "succeeded"],
            "shop_id": ["shop_13", "x", None, "y"],
            "title": ["Hair-Extensions!", "hair extension", None, "ok"],
            "flag": [True, False, None, True],
            "extra": [None, None, None, None],
            "card.count(1m)": [10, 11, 1, 12],
            "card.avg(1m)": [1.0, 2.0, 3.0, float("nan")],
        }
    )


def run(
    text: str, ctx: RuleContext, frame: pl.DataFrame, *, expect_bool: bool = True
) -> list[object]:
    """Evaluate ``text`` over ``frame`` and return the values as a list."""
    compiled = compile_expression(text, ctx, expect_bool=expect_bool)
    return frame.select(compiled.expr(LISTS).alias("r"))["r"].to_list()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card.count(1m) >= 10 and card.avg(1m) < 5", [True, True, False, False]),
        ("status == 'succeeded'", [True, False, False, True]),
        ("status != 'succeeded'", [False, True, False, False]),
        ("not (status == 'succeeded')", [False, True, False, False]),
        ("amount > 2 or flag", [True, True, False, True]),
        ("is_null(amount) or amount > 2", [False, True, True, True]),
        ("amount == null", [False, False, True, False]),
        ("null != amount", [True, True, False, True]),
        ("extra == null", [True, True, True, True]),
        ("n == 2.0", [False, True, False, False]),
        ("n < amount + 0.5", [True, True, False, False]),
        ("amount / (n - 1) > 1", [False, True, False, False]),
        ("n in [1, 4.0]", [True, False, False, True]),
        ("n not in [1, 4.0]", [False, True, False, False]),
        ("status in ['failed']", [False, True, False, False]),
        ("shop_id in blocked_shops", [True, False, False, False]),
        ("shop_id not in blocked_shops", [False, True, False, True]),
        ("n in []", [False, False, False, False]),
        ("not (n in [])", [True, True, False, True]),
        ("extra in blocked_shops", [False, False, False, False]),
        ("contains_any(title, risky_words)", [True, False, False, False]),
        ("not contains_any(title, risky_words)", [False, True, False, True]),
        ("coalesce(amount, 0) + 1 > 2", [False, True, False, True]),
        ("len(lower(status)) == 6 and upper(status) == 'FAILED'", [False, True, False, False]),
        ("abs(-amount) > 2", [False, True, False, True]),
        ("-n < -1", [False, True, False, True]),
        ("flag == true", [True, False, False, True]),
        ("TRUE and Not flag", [False, True, False, False]),
        ("1 < 2", [True, True, True, True]),
        ("null == null", [True, True, True, True]),
    ],
)
def test_boolean_rules(
    ctx: RuleContext, frame: pl.DataFrame, text: str, expected: list[bool]
) -> None:
    assert run(text, ctx, frame) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amount * 2", [2.0, 40.0, None, 6.0]),
        ("n / 0", [None, None, None, None]),
        ("n + null", [None, None, None, None]),
        ("-n", [-1.0, -2.0, None, -4.0]),
        ("coalesce(status, 'none')", ["succeeded", "failed", "none", "succeeded"]),
        ("card.avg(1m)", [1.0, 2.0, 3.0, None]),
        ("len(title)", [16, 14, None, 2]),
        ("amount > 2", [False, True, None, True]),
        ("flag and null", [None, False, None, None]),
        ("flag or null", [True, None, None, True]),
    ],
)
def test_value_expressions(
    ctx: RuleContext, frame: pl.DataFrame, text: str, expected: list[object]
) -> None:
    assert run(text, ctx, frame, expect_bool=False) == expected


def test_reads_are_recorded_in_order(ctx: RuleContext) -> None:
    compiled = compile_expression(
        "card.avg(60s) < 5 and contains_any(title, risky_words) and card.count(1m) > 1"
        " and card.avg(1m) > 0 and shop_id not in blocked_shops and title != ''",
        ctx,
    )
    assert compiled.features == (
        FeatureRef("card", "avg", 60_000),
        FeatureRef("card", "count", 60_000),
    )
    assert [f.name for f in compiled.features] == ["card.avg(1m)", "card.count(1m)"]
    assert compiled.fields == ("title", "shop_id")
    assert compiled.lists == ("risky_words", "blocked_shops")


def test_feature_name_is_canonical() -> None:
    assert FeatureRef("merchant_cards", "distinct", 3_600_000).name == "merchant_cards.distinct(1h)"
    assert FeatureRef("card", "sum", 90_000).name == "card.sum(90s)"
    assert FeatureRef("card", "sum", 30 * 86_400_000).name == "card.sum(30d)"


def test_count_is_always_available() -> None:
    ctx = RuleContext(fields={}, metrics={"m": frozenset({"distinct"})}, lists={})
    assert compile_expression("m.count(5m) > 1", ctx).features == (
        FeatureRef("m", "count", 300_000),
    )


def test_undeclared_fields_cast_by_context() -> None:
    ctx = RuleContext(fields=None)
    frame = pl.DataFrame(
        {"x": ["5", "0", None, "abc"], "y": [1, 2, 3, 4], "z": [True, True, False, None]}
    )
    compiled = compile_expression("x > 1 and y < 4.5 and z", ctx)
    assert frame.select(compiled.expr(LISTS))["x"].to_list() == [True, False, False, False]
    compiled = compile_expression("y == x or y == 4", ctx)  # two undeclared fields: as text
    assert frame.select(compiled.expr(LISTS).alias("r"))["r"].to_list() == [False] * 3 + [True]
    compiled = compile_expression("y < x", ctx)  # ordering: as numbers
    assert frame.select(compiled.expr(LISTS).alias("r"))["r"].to_list() == [True] + [False] * 3


def test_null_typed_columns_work(ctx: RuleContext) -> None:
    """A field missing from the batch arrives as an all-null column of dtype Null."""
    frame = pl.DataFrame({"title": [None, None], "amount": [None, None], "n": [None, None]})
    for text in [
        "contains_any(title, risky_words)",
        "amount > 1",
        "n in [1]",
        "lower(title) == 'x'",
    ]:
        compiled = compile_expression(text, ctx)
        assert frame.select(compiled.expr(LISTS).alias("r"))["r"].to_list() == [False, False]


def test_unsigned_feature_columns_do_not_wrap(ctx: RuleContext) -> None:
    frame = pl.DataFrame({"card.count(1m)": pl.Series([1, 5], dtype=pl.UInt32)})
    compiled = compile_expression("card.count(1m) - 3 < 0", ctx)
    assert frame.select(compiled.expr(LISTS).alias("r"))["r"].to_list() == [True, False]


def test_large_batch_is_vectorized(ctx: RuleContext) -> None:
    rows = 200_000
    frame = pl.DataFrame(
        {
            "amount": pl.int_range(rows, eager=True).cast(pl.Float64),
            "status": pl.Series(["succeeded", "failed"] * (rows // 2)),
            "card.count(1m)": pl.int_range(rows, eager=True) % 20,
        }
    )
    compiled = compile_expression(
        "card.count(1m) >= 10 and status == 'failed' and amount / 2 > 10", ctx
    )
    result = frame.select(compiled.expr(LISTS).alias("r"))["r"]
    assert result.len() == rows
    assert result.sum() == rows // 4 - 5
