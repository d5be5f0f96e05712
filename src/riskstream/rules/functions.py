"""The built-in functions of the rule language, as entries of the operator table.

``abs lower upper len coalesce is_null contains_any``: each one's typing rule, Polars form and
Python form (see :mod:`riskstream.rules.ops`). ``contains_any`` takes a list (named or inline)
as its second argument; ``is_null`` is also the operator behind ``x == null``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from riskstream.rules.ast import ListLiteral, Name, Node
from riskstream.rules.lists import ListValues, normalize_keywords, normalize_text
from riskstream.rules.ops import Checking, Op, Typing, _empty_match, _form
from riskstream.rules.parser import ExpressionError
from riskstream.rules.typed import TApply, TNode, as_float, coerce, describe, require, unify


def check_arity(col: int, name: str, args: tuple[Node, ...], count: int) -> None:
    """ExpressionError unless the call has exactly ``count`` arguments."""
    if len(args) != count:
        plural = "argument" if count == 1 else "arguments"
        raise ExpressionError(col, f"{name}() takes {count} {plural}, got {len(args)}")


def _unary(name: str, result: str, need: str) -> Typing:
    """A one-argument function taking a ``need`` value (numbers as Float64), giving ``result``."""

    def typing(c: Checking, col: int, args: tuple[Node, ...]) -> TNode:
        checked = [c.check(a) for a in args]
        check_arity(col, name, args, 1)
        message = f"{name}() needs {describe(need)}"
        inner = (
            as_float(checked[0], message) if need == "num" else require(checked[0], need, message)
        )
        return TApply(result, col, name, (inner,))

    return typing


def _is_null_typing(c: Checking, col: int, args: tuple[Node, ...]) -> TNode:
    """``is_null(x)``: true when x is missing; never null itself."""
    checked = [c.check(a) for a in args]
    check_arity(col, "is_null", args, 1)
    return TApply("bool", col, "is_null", (checked[0],))


def _coalesce_typing(c: Checking, col: int, args: tuple[Node, ...]) -> TNode:
    """``coalesce(a, b, ...)``: the first non-null argument; all must share a type."""
    checked = [c.check(a) for a in args]
    if len(args) < 2:
        raise ExpressionError(col, f"coalesce() takes at least 2 arguments, got {len(args)}")
    target = "null"
    for arg in checked:
        common = unify(target, arg.type)
        if common is None:
            kinds = f"{describe(target)} and {describe(arg.type)}"
            raise ExpressionError(arg.col, f"coalesce() arguments must share a type, got {kinds}")
        target = common
    cast = [as_float(a, "") if target == "num" else coerce(a, target) for a in checked]
    return TApply(target, col, "coalesce", tuple(cast))


def _first_not_null(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _contains_typing(c: Checking, col: int, args: tuple[Node, ...]) -> TNode:
    """``contains_any(text, LIST)``: whole-word, case-insensitive keyword match."""
    check_arity(col, "contains_any", args, 2)
    text, target = c.check(args[0]), args[1]
    need = "contains_any needs a string to search"
    if isinstance(target, Name):
        name = c.list_name(target)
        return TApply("bool", col, "contains_any", (require(text, "str", need),), name)
    if isinstance(target, ListLiteral):
        for item in target.items:
            if not isinstance(item.value, str):
                raise ExpressionError(item.col, "contains_any keywords must be strings")
        patterns = normalize_keywords(str(i.value) for i in target.items)
        inner = require(text, "str", need)
        return TApply("bool", col, "contains_any", (inner,), tuple(patterns.to_list()))
    raise ExpressionError(target.col, "contains_any needs a list name or [...] as its 2nd argument")


def _contains_polars(node: TApply, lists: ListValues, args: Sequence[pl.Expr]) -> pl.Expr:
    """Polars' Aho-Corasick ``str.contains_any`` over padded, normalised text and keywords."""
    if isinstance(node.param, str):  # a named list: keywords prepared by the registry per load
        patterns = lists[node.param].keywords
    else:
        patterns = pl.Series("keywords", list(node.param or ()), dtype=pl.String)
    if patterns.len() == 0:
        return _empty_match(args[0])
    return normalize_text(args[0]).str.contains_any(pl.lit(patterns).implode())


def _polars(
    apply: Callable[[pl.Expr], pl.Expr],
) -> Callable[[TApply, ListValues, Sequence[pl.Expr]], pl.Expr]:
    return lambda _node, _lists, args: apply(args[0])


#: The named functions (all of them: an unknown name lists these).
FUNCTIONS: dict[str, Op] = {
    "abs": Op(_unary("abs", "num", "num"), _polars(pl.Expr.abs), _form(abs)),
    # Python's and Polars' Unicode case tables may differ: no Python form
    "lower": Op(_unary("lower", "str", "str"), _polars(lambda e: e.str.to_lowercase()), None),
    "upper": Op(_unary("upper", "str", "str"), _polars(lambda e: e.str.to_uppercase()), None),
    "len": Op(
        _unary("len", "num", "str"),
        _polars(lambda e: e.str.len_chars().cast(pl.Int64)),
        _form(len),
    ),
    "coalesce": Op(
        _coalesce_typing,
        lambda _n, _l, args: pl.coalesce(list(args)),
        _form(_first_not_null),
        strict=False,
    ),
    "is_null": Op(
        _is_null_typing, _polars(pl.Expr.is_null), _form(lambda v: v is None), strict=False
    ),
    "contains_any": Op(_contains_typing, _contains_polars, None),
}
