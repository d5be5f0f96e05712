"""``model.NAME`` in the rule language: parsed, checked against the spec's models, evaluated."""

from __future__ import annotations

import polars as pl
import pytest

from riskstream.errors import SpecError
from riskstream.rules import ExpressionError, ListRegistry, RuleContext, compile_expression
from riskstream.rules.pyeval import python_predicate
from riskstream.spec.check import check_spec
from riskstream.spec.load import parse_spec

CTX = RuleContext(fields=None, metrics={"card": frozenset({"count"})}, models=frozenset({"fraud"}))


def test_model_score_is_read_from_its_column_and_listed() -> None:
    c = compile_expression("model.fraud > 0.9 and card.count(1h) >= 3", CTX)
    assert c.models == ("fraud",)
    frame = pl.DataFrame({"model.fraud": [0.95, 0.95, 0.5, None], "card.count(1h)": [3, 1, 5, 5]})
    got = frame.select(c.expr(ListRegistry({}, {})).alias("x"))["x"].to_list()
    assert got == [True, False, False, False]
    py = python_predicate(c, ListRegistry({}, {}))
    assert py is not None
    rows = frame.to_dicts()
    assert [py(r) for r in rows] == got


def test_unknown_model_and_metric_without_window_are_refused_with_their_column() -> None:
    with pytest.raises(ExpressionError) as exc:
        compile_expression("model.frud > 0.5", CTX)
    assert exc.value.col == 1 and "unknown model 'frud'" in exc.value.message
    with pytest.raises(ExpressionError) as exc:
        compile_expression("card.count > 1", CTX)
    assert (exc.value.col, exc.value.message) == (12, "unexpected '>'; expected '('")


def test_spec_rule_on_a_model_not_in_models_is_refused() -> None:
    text = """
name: p
metrics: {card: {dimension: [card_id]}}
models: {fraud: {version: latest}}
rules:
  r: {when: "model.other > 0.5"}
"""
    with pytest.raises(SpecError) as exc:
        check_spec(parse_spec(text))
    assert str(exc.value).startswith("rules.r.when: col 1: unknown model 'other'")
