"""Typed building blocks of compiled expressions: literals, casts, arithmetic, lists, built-in functions.

Types are ``num`` (Int64 or Float64 column), ``str``, ``bool``, ``null`` (the literal) and ``any``
(an undeclared field, cast to whatever its context needs). Arithmetic is done in Float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from riskstream.rules.ast import Call, ListLiteral
from riskstream.rules.lists import ListValues, normalize_keywords, normalize_text
from riskstream.rules.parser import ExpressionError

#: NaN read as null. ``replace`` uses its input once; ``fill_nan`` (a when/then/otherwise on
#: three copies of it) made nested arithmetic compile to exponentially large expressions.
NAN = float("nan")

#: Builds the polars expression of a node, given the current list values.
Builder = Callable[[ListValues], pl.Expr]

#: Casts applied when an ``any`` or ``null`` value is used where a definite type is needed.
_DTYPES: dict[str, type[pl.DataType]] = {"num": pl.Float64, "str": pl.String, "bool": pl.Boolean}
_WORDS = {
    "num": "a number",
    "str": "a string",
    "bool": "true/false",
    "null": "null",
    "any": "any value",
}


@dataclass(frozen=True)
class Typed:
    """A checked node: its type, how to build its polars expression, and its column for errors."""

    type: str
    build: Builder
    col: int


def describe(kind: str) -> str:
    """Type name as shown in error messages (``a number``)."""
    return _WORDS.get(kind, kind)


def unify(a: str, b: str) -> str | None:
    """Common type of two operands (``any`` and ``null`` adapt to the other side); None if none."""
    if a == b:
        return a
    for first, second in ((a, b), (b, a)):
        if first == "null" or (first == "any" and second != "null"):
            return second
    return None


def coerce(t: Typed, target: str) -> Builder:
    """Builder of ``t`` as ``target``: a non-strict cast for ``any``/``null``, unchanged otherwise."""
    if t.type == target or target not in _DTYPES:
        return t.build
    dtype, inner = _DTYPES[target], t.build
    if target == "num":  # NaN reads as null, as in declared float fields
        return lambda lists: inner(lists).cast(dtype, strict=False).replace(NAN, None)
    return lambda lists: inner(lists).cast(dtype, strict=False)


def require(t: Typed, target: str, message: str) -> Builder:
    """``coerce`` if ``t`` can be a ``target``, else ExpressionError at ``t``'s column."""
    if t.type not in (target, "any", "null"):
        raise ExpressionError(t.col, f"{message}, got {describe(t.type)}")
    return coerce(t, target)


def literal(col: int, value: int | float | str | bool | None) -> Typed:
    """A constant (ints as Int64, floats as Float64: no dtype surprises in comparisons)."""
    if isinstance(value, bool):
        flag = value
        return Typed("bool", lambda _l: pl.lit(flag, dtype=pl.Boolean), col)
    if value is None:
        return Typed("null", lambda _l: pl.lit(None), col)
    if isinstance(value, str):
        text = value
        return Typed("str", lambda _l: pl.lit(text, dtype=pl.String), col)
    dtype = pl.Int64 if isinstance(value, int) else pl.Float64
    number = value
    return Typed("num", lambda _l: pl.lit(number, dtype=dtype), col)


def _as_float(t: Typed, message: str) -> Builder:
    """``t`` as a Float64 number (the type of every arithmetic result)."""
    inner = require(t, "num", message)
    return lambda lists: inner(lists).cast(pl.Float64, strict=False)


def arithmetic(col: int, op: str, left: Typed, right: Typed) -> Typed:
    """``+ - * /`` in Float64; dividing by zero and NaN results give null."""
    need = f"'{op}' needs numbers"
    lb, rb = _as_float(left, need), _as_float(right, need)

    def build(lists: ListValues) -> pl.Expr:
        a, b = lb(lists), rb(lists)
        if op == "+":
            out = a + b
        elif op == "-":
            out = a - b
        elif op == "*":
            out = a * b
        else:
            out = a / b.replace(0.0, None)  # -0.0 too; each operand used once
        return out.replace(NAN, None)

    return Typed("num", build, col)


def negate(col: int, operand: Typed) -> Typed:
    """Unary minus (Float64)."""
    inner = _as_float(operand, "'-' needs a number")
    return Typed("num", lambda lists: -inner(lists), col)


def _item_type(items: ListLiteral) -> str | None:
    """``str`` or ``num`` for a non-empty inline list, None when empty; mixed lists are an error."""
    kinds = ["str" if isinstance(i.value, str) else "num" for i in items.items]
    for item, kind in zip(items.items, kinds, strict=True):
        if kind != kinds[0]:
            raise ExpressionError(item.col, "a list must hold only strings or only numbers")
    return kinds[0] if kinds else None


def _empty_match(inner: Builder) -> Builder:
    """Membership in an empty list: false, or null when the value is null."""
    return lambda lists: pl.when(inner(lists).is_not_null()).then(pl.lit(False))


def in_literal_list(col: int, left: Typed, items: ListLiteral) -> Builder:
    """``x in [..]``: ``is_in`` on a constant Series of the list's type."""
    kind = _item_type(items)
    if kind is None:
        return _empty_match(left.build)
    if left.type not in (kind, "any", "null"):
        of = "strings" if kind == "str" else "numbers"
        raise ExpressionError(col, f"cannot look up {describe(left.type)} in a list of {of}")
    values = [i.value for i in items.items]
    if kind == "str":
        inner, series = coerce(left, "str"), pl.Series(values, dtype=pl.String)
    else:
        inner, series = _as_float(left, ""), pl.Series([float(v) for v in values], dtype=pl.Float64)  # type: ignore[arg-type]
    return lambda lists: inner(lists).is_in(pl.lit(series).implode())


def _contains(col: int, text: Typed, keywords: Callable[[ListValues], pl.Series]) -> Typed:
    """Whole-word, case-insensitive keyword match with polars' Aho-Corasick ``str.contains_any``."""
    inner = require(text, "str", "contains_any needs a string to search")

    def build(lists: ListValues) -> pl.Expr:
        patterns = keywords(lists)
        if patterns.len() == 0:
            return _empty_match(inner)(lists)
        return normalize_text(inner(lists)).str.contains_any(pl.lit(patterns).implode())

    return Typed("bool", build, col)


def contains_any_named(col: int, text: Typed, name: str) -> Typed:
    """``contains_any(text, list_name)``: keywords prepared by the list registry once per load."""
    return _contains(col, text, lambda lists: lists[name].keywords)


def contains_any_inline(col: int, text: Typed, items: ListLiteral) -> Typed:
    """``contains_any(text, ['a', 'b c'])``: keywords normalised once, at compile time."""
    for item in items.items:
        if not isinstance(item.value, str):
            raise ExpressionError(item.col, "contains_any keywords must be strings")
    patterns = normalize_keywords(str(i.value) for i in items.items)
    return _contains(col, text, lambda _lists: patterns)


def check_arity(node: Call, count: int) -> None:
    """ExpressionError unless ``node`` has exactly ``count`` arguments."""
    if len(node.args) != count:
        plural = "argument" if count == 1 else "arguments"
        raise ExpressionError(
            node.col, f"{node.name}() takes {count} {plural}, got {len(node.args)}"
        )


FunctionMaker = Callable[[Call, list[Typed]], Typed]


def _unary_fn(result: str, need: str, apply: Callable[[pl.Expr], pl.Expr]) -> FunctionMaker:
    """A one-argument function taking a ``need`` value (numbers as Float64) and returning ``result``."""

    def make(node: Call, args: list[Typed]) -> Typed:
        check_arity(node, 1)
        message = f"{node.name}() needs {describe(need)}"
        inner = _as_float(args[0], message) if need == "num" else require(args[0], need, message)
        return Typed(result, lambda lists: apply(inner(lists)), node.col)

    return make


def _is_null(node: Call, args: list[Typed]) -> Typed:
    """``is_null(x)``: true when x is missing; never null itself."""
    check_arity(node, 1)
    inner = args[0].build
    return Typed("bool", lambda lists: inner(lists).is_null(), node.col)


def _coalesce(node: Call, args: list[Typed]) -> Typed:
    """``coalesce(a, b, ...)``: the first non-null argument; all must share a type."""
    if len(node.args) < 2:
        raise ExpressionError(
            node.col, f"coalesce() takes at least 2 arguments, got {len(node.args)}"
        )
    target = "null"
    for arg in args:
        common = unify(target, arg.type)
        if common is None:
            kinds = f"{describe(target)} and {describe(arg.type)}"
            raise ExpressionError(arg.col, f"coalesce() arguments must share a type, got {kinds}")
        target = common
    builders = [_as_float(a, "") if target == "num" else coerce(a, target) for a in args]
    return Typed(target, lambda lists: pl.coalesce([b(lists) for b in builders]), node.col)


#: Built-in functions other than contains_any (which takes a list and is handled by the checker).
FUNCTIONS: dict[str, FunctionMaker] = {
    "abs": _unary_fn("num", "num", pl.Expr.abs),
    "lower": _unary_fn("str", "str", lambda e: e.str.to_lowercase()),
    "upper": _unary_fn("str", "str", lambda e: e.str.to_uppercase()),
    "len": _unary_fn("num", "str", lambda e: e.str.len_chars().cast(pl.Int64)),
    "coalesce": _coalesce,
    "is_null": _is_null,
}
