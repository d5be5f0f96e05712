"""Parse and type errors: exact 1-based column and message."""

from __future__ import annotations

import pytest

from riskstream.rules import ExpressionError, RuleContext, compile_expression


def error_of(text: str, ctx: RuleContext, **kwargs: bool) -> tuple[int, str]:
    """Compile ``text`` expecting an ExpressionError; return (col, message)."""
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, ctx, **kwargs)
    assert str(info.value) == f"col {info.value.col}: {info.value.message}"
    return info.value.col, info.value.message


@pytest.mark.parametrize(
    ("text", "col", "message"),
    [
        ("crd.count(1m) > 1", 1, "unknown metric 'crd'"),
        (
            "card.crd(1m) > 1",
            6,
            "unknown stat 'crd' (expected one of count, sum, avg, min, max, var, stddev, distinct)",
        ),
        (
            "card.stddev(1m) > 1",
            6,
            "metric 'card' does not keep 'stddev' (it keeps count, sum, avg, min, max)",
        ),
        (
            "merchant_cards.sum(1h) > 1",
            16,
            "metric 'merchant_cards' does not keep 'sum' (it keeps count, distinct)",
        ),
        (
            "card.count(7x) > 1",
            12,
            "bad window '7x' (expected a number and a unit: ms s m h d w y, e.g. 30s 5m 1h 7d)",
        ),
        ("card.count(0s) > 1", 12, "bad window '0s': must be positive"),
        ("amount > 'x'", 8, "cannot compare a number with a string"),
        ("status in nolist", 11, "unknown list 'nolist'"),
        ("foo in blocked_shops", 1, "unknown field 'foo'"),
        ("amout > 1", 1, "unknown field 'amout'"),
        ("amount > 1 and status", 16, "'and' needs true/false values, got a string"),
        ("not amount", 5, "'not' needs a true/false value, got a number"),
        ("status + 1 > 2", 1, "'+' needs numbers, got a string"),
        ("-status == 1", 2, "'-' needs a number, got a string"),
        ("amount", 1, "expected a true/false condition, got a number"),
        ("flag < true", 6, "cannot order true/false values with '<'"),
        ("amount < null", 8, "cannot use '<' with null; use is_null(x)"),
        (
            "amount in blocked_shops",
            8,
            "list 'blocked_shops' holds strings, cannot look up a number",
        ),
        ("amount in ['a']", 8, "cannot look up a number in a list of strings"),
        ("status in [1, 'a']", 15, "a list must hold only strings or only numbers"),
        ("status in status", 11, "unknown list 'status'"),
        ("status in lower(status)", 11, "expected a list name or [...] after 'in'"),
        ("[1] == 1", 1, "a [...] list is only allowed after 'in' or as the list of contains_any"),
        (
            "foo(1)",
            1,
            "unknown function 'foo' (known: abs, coalesce, contains_any, is_null, len, lower, upper)",
        ),
        ("abs(1, 2) > 0", 1, "abs() takes 1 argument, got 2"),
        ("contains_any(title) ", 1, "contains_any() takes 2 arguments, got 1"),
        (
            "contains_any(amount, risky_words)",
            14,
            "contains_any needs a string to search, got a number",
        ),
        ("contains_any(title, nolist)", 21, "unknown list 'nolist'"),
        (
            "contains_any(title, 'x')",
            21,
            "contains_any needs a list name or [...] as its 2nd argument",
        ),
        ("contains_any(title, ['a', 1])", 27, "contains_any keywords must be strings"),
        ("len(amount) > 1", 5, "len() needs a string, got a number"),
        ("coalesce(amount) > 1", 1, "coalesce() takes at least 2 arguments, got 1"),
        (
            "coalesce(amount, 'x') > 1",
            18,
            "coalesce() arguments must share a type, got a number and a string",
        ),
    ],
)
def test_type_errors(ctx: RuleContext, text: str, col: int, message: str) -> None:
    assert error_of(text, ctx) == (col, message)


@pytest.mark.parametrize(
    ("text", "col", "message"),
    [
        ("", 1, "unexpected end of expression; expected a value"),
        ("amount >", 9, "unexpected end of expression; expected a value"),
        ("amount > > 3", 10, "unexpected '>'; expected a value"),
        ("(amount > 3", 12, "unexpected end of expression; expected ')'"),
        ("card.count(1m", 14, "unexpected end of expression; expected ')'"),
        ("card.count() > 1", 12, "unexpected ')'; expected a window like 5m"),
        ("card.count(5 m) > 1", 14, "unexpected name 'm'; expected ')'"),
        ("amount < 1 < 2", 12, "unexpected '<'; expected an operator or end of expression"),
        ("amount = 1", 8, "unexpected character '='; use '==' to compare"),
        ("flag && flag", 6, "unexpected character '&'; use 'and'"),
        ("flag || flag", 6, "unexpected character '|'; use 'or'"),
        ("status == 'abc", 11, "unterminated string"),
        ("status in [x]", 12, "unexpected name 'x'; expected a string or a number or ']'"),
        ("card.count", 11, "unexpected end of expression; expected '('"),
        (
            "amount > 1 flag",
            12,
            "unexpected name 'flag'; expected an operator or end of expression",
        ),
        ("amount > 1 @", 12, "unexpected character '@'; expected an operator or end of expression"),
    ],
)
def test_syntax_errors(ctx: RuleContext, text: str, col: int, message: str) -> None:
    assert error_of(text, ctx) == (col, message)


def test_features_refused_where_not_allowed(ctx: RuleContext) -> None:
    col, message = error_of("status == 'ok' and card.count(1m) > 1", ctx, allow_features=False)
    assert (col, message) == (20, "features like card.count(...) are not allowed here")


def test_value_expression_needs_no_bool(ctx: RuleContext) -> None:
    compiled = compile_expression("amount * 2", ctx, expect_bool=False)
    assert compiled.result_type == "num"


def test_undeclared_fields_allowed_without_schema() -> None:
    compiled = compile_expression("whatever > 1 and other == 'x'", RuleContext(fields=None))
    assert compiled.fields == ("whatever", "other")


def test_column_is_offset_in_multiline_text(ctx: RuleContext) -> None:
    assert error_of("amount > 1\nand nope", ctx) == (16, "unknown field 'nope'")


def test_error_is_a_riskstream_error(ctx: RuleContext) -> None:
    from riskstream.errors import RiskstreamError

    with pytest.raises(RiskstreamError, match=r"^col 1: unknown metric 'crd'$"):
        compile_expression("crd.count(1m) > 1", ctx)
