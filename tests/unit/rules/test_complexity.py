"""Issue 12 items 5 and 13: compiled size linear in the rule, a documented complexity bound,
one-line messages for hostile expressions."""

from __future__ import annotations

import time

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskstream.errors import SpecError
from riskstream.rules.compiler import RuleContext, compile_expression
from riskstream.rules.lists import ListRegistry
from riskstream.rules.parser import MAX_CHARS, MAX_DEPTH, MAX_NODES, ExpressionError
from riskstream.spec.check import compile_rules
from riskstream.spec.load import parse_spec

CTX = RuleContext({"amount": "float", "b": "float", "n": "int"})
LISTS = ListRegistry({}, {})


def _size(text: str) -> int:
    return len(str(compile_expression(text, CTX).expr(LISTS)))


def test_arithmetic_compiles_to_a_linear_size_and_runs_fast() -> None:
    sizes = {n: _size(" + ".join(["amount"] * n) + " > 5") for n in (5, 10, 20, 35)}
    # Linear: each extra term adds the same amount (the old code tripled per term).
    per_term = [(sizes[b] - sizes[a]) / (b - a) for a, b in ((5, 10), (10, 20), (20, 35))]
    assert max(per_term) <= 1.2 * min(per_term)
    frame = pl.DataFrame({"amount": [0.1 * i for i in range(1000)]})
    t0 = time.perf_counter()
    text = " + ".join(["amount"] * 35) + " > 5"
    got = frame.select(compile_expression(text, CTX).expr(LISTS).alias("r"))["r"].to_list()
    assert time.perf_counter() - t0 < 2.0
    assert got == [35 * (0.1 * i) > 5 for i in range(1000)]


def test_nested_divisions_compile_linearly_and_divide_by_zero_as_null() -> None:
    text = "amount / (b / (amount / (b / (amount / (b / (amount / b)))))) >= 0"
    assert _size(text) < 3000
    frame = pl.DataFrame({"amount": [1.0, 2.0, 0.0, 4.0], "b": [2.0, -0.0, 3.0, 1.0]})
    got = frame.select(compile_expression(text, CTX).expr(LISTS).alias("r"))["r"].to_list()

    def brute(a: float, b: float) -> bool:
        value: float | None = b
        for num in [a, b, a, b, a, b, a]:
            value = None if value is None or value == 0 else num / value
        return value is not None and value >= 0

    assert got == [brute(a, b) for a, b in zip(frame["amount"], frame["b"], strict=True)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["+", "-", "*", "/"]), min_size=1, max_size=25),
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=3, max_size=3),
)
def test_left_nested_arithmetic_equals_python(ops: list[str], row: list[float]) -> None:
    names = ["amount", "b", "n"]
    text = names[0]
    value: float | None = row[0]
    for i, op in enumerate(ops):
        name = names[(i + 1) % 3]
        x = row[(i + 1) % 3] if name != "n" else float(int(row[2]))
        text = f"({text} {op} {name})"
        if value is None:
            continue
        if op == "/":
            value = None if x == 0 else value / x
        else:
            value = value + x if op == "+" else value - x if op == "-" else value * x
    frame = pl.DataFrame({"amount": [row[0]], "b": [row[1]], "n": [int(row[2])]})
    expr = compile_expression(text, CTX, expect_bool=False).expr(LISTS)
    got = frame.select(expr.alias("r"))["r"][0]
    if value is None or value != value:
        assert got is None
    else:
        assert got == pytest.approx(value, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-" * 10_000, f"expression longer than {MAX_CHARS} characters"),
        (" + ".join(["amount"] * (MAX_DEPTH + 5)) + " > 5", f"more than {MAX_DEPTH} levels"),
        ("(" * 990 + "amount" + ")" * 990 + " > 1", f"more than {MAX_DEPTH} levels"),
        ("not " * 400 + "true", f"more than {MAX_DEPTH} levels"),
        ("amount > " + "9" * 100, "number longer than 40 characters"),
        (
            " or ".join(f"amount in [{','.join(['1'] * 20)}]" for _ in range(20)),
            f"more than {MAX_NODES} terms",
        ),
    ],
)
def test_expressions_over_the_bound_are_refused_in_one_cheap_line(text: str, message: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ExpressionError) as err:
        compile_expression(text, CTX)
    assert time.perf_counter() - t0 < 0.5
    assert message in err.value.message and "\n" not in str(err.value)
    assert "recursion" not in str(err.value) and "4300" not in str(err.value)


def test_validate_refuses_a_spec_rule_over_the_bound_naming_its_path() -> None:
    many = " + ".join(["amount"] * 60)
    spec = parse_spec(
        "name: x\nevent: {fields: {amount: float}}\n"
        f"rules:\n  heavy: {{when: '{many} > 5', action: review}}\n"
    )
    with pytest.raises(SpecError) as err:
        compile_rules(spec)
    assert str(err.value).startswith("rules.heavy.when: col ")
    assert f"nested more than {MAX_DEPTH} levels deep" in str(err.value)
