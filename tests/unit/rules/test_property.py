"""Property test: both rule backends agree with a brute-force Python evaluator.

Hypothesis generates random typed expression trees over the whole operator table together with
an independent row-at-a-time oracle for each (nulls, Kleene logic, float arithmetic, ``/ 0`` ->
null, NaN -> null), and random rows (numbers, strings, NaN, nulls). The Polars backend must agree
with the oracle on every row; so must the one-event Python backend, which must cover exactly
the expressions without an operator lacking a Python form (``lower``, ``upper``,
``contains_any``, the undeclared field ``a``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskstream.rules import ListValues, RuleContext, compile_expression
from riskstream.rules.pyeval import python_function, python_predicate
from riskstream.rules.table import OPS
from riskstream.rules.typed import TApply, reads

Row = dict[str, Any]
Eval = Callable[[Row], Any]
Gen = tuple[str, Eval]
Draw = Callable[[st.SearchStrategy[Any]], Any]

CTX = RuleContext(
    fields={"i": "int", "f": "float", "s": "str", "t": "str", "b": "bool", "a": "any"},
    metrics={"m": frozenset({"sum"})},
    lists={"names": "str", "kw": "str"},
    models=frozenset({"s"}),
)
NAMES = ["ab", "Ab", "é", " x-y ", ""]
#: list entries are stripped and blank ones dropped when a list is loaded
LOADED_NAMES = [n.strip() for n in NAMES if n.strip()]
KEYWORDS = ["ab", "hair extensions", "X-Y", "é", "b.a", "!!"]
LISTS = ListValues({"names": NAMES, "kw": KEYWORDS})
FEATURES = ["m.sum(5m)", "m.count(1m)"]
NUM_COLUMNS = ["i", "f", "a", "model.s", *FEATURES]

ALPHABET = "abAB é-_!. 1"
TEXTS = st.one_of(st.text(alphabet=ALPHABET, max_size=10), st.sampled_from(NAMES + KEYWORDS))
FLOAT_LITERALS = [0.0, 0.5, 1.25, 2.0, 3.0, 1000.0, 0.001, 2.5e6]
DATA_FLOATS = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 2)),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, math.nan, math.inf]),
)
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def read(name: str) -> Eval:
    """A column's value as the language sees it: NaN in a float column is null."""

    def value(row: Row) -> Any:
        v = row[name]
        return None if isinstance(v, float) and math.isnan(v) else v

    return value


def strict(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Lift ``fn`` so any null argument gives null, and a NaN result is null."""

    def lifted(*args: Any) -> Any:
        if any(a is None for a in args):
            return None
        out = fn(*args)
        return None if isinstance(out, float) and math.isnan(out) else out

    return lifted


def divide(x: float, y: float) -> float | None:
    """Division with ``x / 0`` -> null."""
    return None if y == 0 else float(x) / float(y)


ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": strict(lambda x, y: float(x) + float(y)),
    "-": strict(lambda x, y: float(x) - float(y)),
    "*": strict(lambda x, y: float(x) * float(y)),
    "/": strict(divide),
}


def kleene_and(x: bool | None, y: bool | None) -> bool | None:
    """SQL three-valued ``and``."""
    if x is False or y is False:
        return False
    return None if x is None or y is None else True


def kleene_or(x: bool | None, y: bool | None) -> bool | None:
    """SQL three-valued ``or``."""
    if x is True or y is True:
        return True
    return None if x is None or y is None else False


def quote(text: str) -> str:
    """Render a string literal in the language's syntax."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def word_match(text: str, keywords: list[str]) -> bool:
    """Independent whole-word matcher: keyword words appear consecutively among the text words."""
    words = re.findall(r"\w+", text.lower())
    for keyword in keywords:
        kw = re.findall(r"\w+", keyword.lower())
        if kw and any(words[i : i + len(kw)] == kw for i in range(len(words) - len(kw) + 1)):
            return True
    return False


def num_expr(draw: Draw, depth: int) -> Gen:
    """A random numeric expression and its evaluator."""
    text, ev, _const = num_tree(draw, depth)
    return text, ev


def num_tree(draw: Draw, depth: int) -> tuple[str, Eval, bool]:
    """A numeric expression, its evaluator, and whether it reads no column (is a constant)."""
    if depth <= 0 or draw(st.integers(0, 2)) == 0:
        kind = draw(st.sampled_from(["int", "float", "column", "column", "len"]))
        if kind == "int":
            v = draw(st.integers(-5, 5) | st.integers(-(10**6), 10**6))
            return (f"({v})", lambda _r: v, True)
        if kind == "float":
            fv = draw(st.sampled_from(FLOAT_LITERALS))
            return (repr(fv), lambda _r: fv, True)
        if kind == "column":
            name = draw(st.sampled_from(NUM_COLUMNS))
            return (name, read(name), False)
        text, ev = str_expr(draw, 0)
        return (f"len({text})", lambda r: strict(len)(ev(r)), text.startswith("'"))
    kind = draw(st.sampled_from(["arith", "arith", "neg", "abs", "coalesce"]))
    if kind == "arith":
        op = draw(st.sampled_from(list(ARITH)))
        (lt, le, lc), (rt, re_, rc) = num_tree(draw, depth - 1), num_tree(draw, depth - 1)
        if op == "/" and rc and not lc:
            # polars divides a column by a scalar as x * (1 / c): may differ by 1 ulp from x / c
            return (f"({lt} / {rt})", lambda r: times_reciprocal(le(r), re_(r)), False)
        return (f"({lt} {op} {rt})", lambda r: ARITH[op](le(r), re_(r)), lc and rc)
    if kind in ("neg", "abs"):
        text, ev, const = num_tree(draw, depth - 1)
        fn = (lambda x: -float(x)) if kind == "neg" else (lambda x: abs(float(x)))
        return (
            f"-({text})" if kind == "neg" else f"abs({text})",
            lambda r: strict(fn)(ev(r)),
            const,
        )
    (lt, le, lc), (rt, re_, rc) = num_tree(draw, depth - 1), num_tree(draw, depth - 1)
    return (f"coalesce({lt}, {rt})", lambda r: coalesce_num(le(r), re_(r)), lc and rc)


@strict
def times_reciprocal(x: float, c: float) -> float | None:
    """``x / c`` computed the way polars does for a scalar ``c``: ``x * (1 / c)``; ``/ 0`` -> null."""
    return None if c == 0 else float(x) * (1.0 / float(c))


def coalesce_num(x: Any, y: Any) -> Any:
    """First non-null of two numbers, as float (coalesce of numbers is Float64)."""
    v = x if x is not None else y
    return None if v is None else float(v)


def str_expr(draw: Draw, depth: int) -> Gen:
    """A random string expression and its evaluator."""
    if depth <= 0 or draw(st.integers(0, 2)) == 0:
        if draw(st.booleans()):
            name = draw(st.sampled_from(["s", "t"]))
            return (name, read(name))
        lit = draw(TEXTS)
        return (quote(lit), lambda _r: lit)
    kind = draw(st.sampled_from(["lower", "upper", "coalesce"]))
    if kind == "coalesce":
        (lt, le), (rt, re_) = str_expr(draw, depth - 1), str_expr(draw, depth - 1)
        return (f"coalesce({lt}, {rt})", lambda r: le(r) if le(r) is not None else re_(r))
    text, ev = str_expr(draw, depth - 1)
    method = str.lower if kind == "lower" else str.upper
    return (f"{kind}({text})", lambda r: strict(method)(ev(r)))


def bool_leaf(draw: Draw, depth: int) -> Gen:
    """A comparison, membership, keyword match, null test, literal or bool column."""
    kind = draw(
        st.sampled_from(
            [
                "cmp_num",
                "cmp_num",
                "cmp_str",
                "in_num",
                "in_str",
                "in_named",
                "contains",
                "null",
                "lit",
                "col",
            ]
        )
    )
    if kind in ("cmp_num", "cmp_str"):
        gen = num_expr if kind == "cmp_num" else str_expr
        op = draw(st.sampled_from(list(COMPARE)))
        (lt, le), (rt, re_) = gen(draw, depth), gen(draw, depth)
        return (f"{lt} {op} {rt}", lambda r: strict(COMPARE[op])(le(r), re_(r)))
    negated = draw(st.booleans())
    word = "not in" if negated else "in"

    def member(ev: Eval, values: list[Any], cast: Callable[[Any], Any]) -> Eval:
        return lambda r: strict(lambda x: (cast(x) in values) != negated)(ev(r))

    if kind == "in_num":
        values = draw(st.lists(st.integers(-3, 3) | st.sampled_from(FLOAT_LITERALS), max_size=4))
        text, ev = num_expr(draw, depth)
        return (f"{text} {word} [{', '.join(map(str, values))}]", member(ev, values, float))
    if kind == "in_str":
        svalues = draw(st.lists(TEXTS, max_size=4))
        text, ev = str_expr(draw, depth)
        return (f"{text} {word} [{', '.join(map(quote, svalues))}]", member(ev, svalues, str))
    if kind == "in_named":
        text, ev = str_expr(draw, depth)
        return (f"{text} {word} names", member(ev, LOADED_NAMES, str))
    if kind == "contains":
        text, ev = str_expr(draw, depth)
        if draw(st.booleans()):
            return (f"contains_any({text}, kw)", lambda r: strict(word_match)(ev(r), KEYWORDS))
        inline = draw(st.lists(TEXTS, max_size=3))
        listed = ", ".join(map(quote, inline))
        return (f"contains_any({text}, [{listed}])", lambda r: strict(word_match)(ev(r), inline))
    if kind == "null":
        text, ev = draw(st.sampled_from([num_expr, str_expr]))(draw, depth)
        form = draw(st.sampled_from(["is_null({})", "{} == null", "null != {}"]))
        is_null = form != "null != {}"
        return (form.format(text), lambda r: (ev(r) is None) == is_null)
    if kind == "lit":
        flag = draw(st.booleans())
        return ("true" if flag else "false", lambda _r: flag)
    return ("b", read("b"))


def bool_expr(draw: Draw, depth: int) -> Gen:
    """A random boolean expression and its evaluator."""
    if depth <= 0 or draw(st.integers(0, 2)) == 0:
        return bool_leaf(draw, max(depth - 1, 0))
    kind = draw(st.sampled_from(["and", "or", "not", "eq"]))
    if kind == "not":
        text, ev = bool_expr(draw, depth - 1)
        return (f"not ({text})", lambda r: strict(operator.not_)(ev(r)))
    (lt, le), (rt, re_) = bool_expr(draw, depth - 1), bool_expr(draw, depth - 1)
    if kind == "eq":
        op = draw(st.sampled_from(["==", "!="]))
        return (f"({lt}) {op} ({rt})", lambda r: strict(COMPARE[op])(le(r), re_(r)))
    combine = kleene_and if kind == "and" else kleene_or
    return (f"({lt}) {kind} ({rt})", lambda r: combine(le(r), re_(r)))


@st.composite
def frames(draw: Draw) -> pl.DataFrame:
    """A batch of random rows with nulls in every column."""
    n = draw(st.integers(1, 20))

    def column(values: st.SearchStrategy[Any]) -> list[Any]:
        drawn: list[Any] = draw(st.lists(st.none() | values, min_size=n, max_size=n))
        return drawn

    return pl.DataFrame(
        {
            "i": pl.Series(column(st.integers(-50, 50)), dtype=pl.Int64),
            "f": pl.Series(column(DATA_FLOATS), dtype=pl.Float64),
            # an undeclared ("any") field: JSON has no NaN, so neither does this column
            "a": pl.Series(
                column(DATA_FLOATS.filter(lambda x: not math.isnan(x))), dtype=pl.Float64
            ),
            "s": pl.Series(column(TEXTS), dtype=pl.String),
            "t": pl.Series(column(TEXTS), dtype=pl.String),
            "b": pl.Series(column(st.booleans()), dtype=pl.Boolean),
            "m.sum(5m)": pl.Series(column(DATA_FLOATS), dtype=pl.Float64),
            "m.count(1m)": pl.Series(column(st.integers(0, 30)), dtype=pl.UInt32),
            # a model's score: a probability, never NaN
            "model.s": pl.Series(column(st.floats(0, 1)), dtype=pl.Float64),
        }
    )


def same(x: Any, y: Any) -> bool:
    """Equal values, NaN-aware (numbers compared as floats)."""
    if isinstance(x, float | int) and isinstance(y, float | int) and not isinstance(x, bool):
        # Polars may turn a division by a constant into a multiplication by its inverse:
        # the last bit can differ from Python's division, nothing more.
        fx, fy = float(x), float(y)
        return (
            fx == fy or (math.isnan(fx) and math.isnan(fy)) or math.isclose(fx, fy, rel_tol=1e-12)
        )
    return bool(x == y)


SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'")
_NO_PYTHON_FORM = re.compile(r"\b(lower|upper|contains_any)\(|(?<![\w.])a\b")


def python_covers(text: str) -> bool:
    """Whether the one-event backend must cover ``text``: no operator without a Python form."""
    return _NO_PYTHON_FORM.search(_STRING_LITERAL.sub("''", text)) is None


@SETTINGS
@given(frame=frames(), data=st.data())
def test_boolean_rules_match_brute_force(frame: pl.DataFrame, data: st.DataObject) -> None:
    text, evaluate = bool_expr(data.draw, 3)
    compiled = compile_expression(text, CTX)
    got = frame.select(compiled.expr(LISTS).alias("r"))["r"].to_list()
    rows = list(frame.iter_rows(named=True))
    want = [evaluate(row) is True for row in rows]
    assert got == want, text
    predicate = python_predicate(compiled, LISTS)
    assert (predicate is not None) == python_covers(text), text
    if predicate is not None:
        assert [predicate(row) for row in rows] == want, text


def agree(got: list[Any], want: list[Any]) -> bool:
    """Row by row: both null, or both set and the same value."""
    return all(
        (g is None and w is None) or (g is not None and w is not None and same(g, w))
        for g, w in zip(got, want, strict=True)
    )


@SETTINGS
@given(frame=frames(), data=st.data())
def test_value_expressions_match_brute_force(frame: pl.DataFrame, data: st.DataObject) -> None:
    gen = data.draw(st.sampled_from([num_expr, str_expr, bool_expr]))
    text, evaluate = gen(data.draw, 3)
    compiled = compile_expression(text, CTX, expect_bool=False)
    got = frame.select(compiled.expr(LISTS).alias("r"))["r"].to_list()
    rows = list(frame.iter_rows(named=True))
    want = [evaluate(row) for row in rows]
    assert len(got) == len(want), text
    assert agree(got, want), (text, got, want)
    fn = python_function(compiled, LISTS)
    assert (fn is not None) == python_covers(text), text
    if fn is not None:
        py = [fn(row) for row in rows]
        assert agree(py, want), (text, py, want)
        # the Python backend gives the very values Polars gives (ints stay ints, and so on)
        assert all(g is None or type(g) is type(p) for g, p in zip(got, py, strict=True)), text


def test_the_generators_reach_every_operator_of_the_table() -> None:
    """The property tests above exercise the whole operator table, not a corner of it."""
    seen: set[str] = set()

    @settings(max_examples=400, deadline=None, derandomize=True, database=None)
    @given(data=st.data())
    def draw(data: st.DataObject) -> None:
        gen = data.draw(st.sampled_from([num_expr, str_expr, bool_expr]))
        text, _evaluate = gen(data.draw, 3)
        tree = compile_expression(text, CTX, expect_bool=False).tree
        assert tree is not None
        seen.update(n.op for n in reads(tree) if isinstance(n, TApply))

    draw()
    assert seen == set(OPS)
