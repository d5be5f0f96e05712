"""What scoring events alone prepares once per rules/lists version: the scoring plan.

For every rule and every metric the features read, the plan holds the Polars form (the metric
inputs as the batch path reads them, the rule flags) and, when the whole spec is covered, the
plain-Python form: the rules' one-event backend (:mod:`riskstream.rules.pyeval`) and each
metric's key, value and ``where`` read from the decoded row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import polars as pl

from riskstream.core.keys import key_of
from riskstream.engine.metrics import CompiledMetric
from riskstream.engine.single.fastdecode import Value
from riskstream.engine.single.view import ScoringView
from riskstream.rules import ListValues
from riskstream.rules.pyeval import python_predicate

#: A decoded row (plus feature columns): column name -> value.
Row = Mapping[str, Value]
#: A rule's or ``where``'s Python form.
Predicate = Callable[[Row], bool]
#: What a metric reads of one event: key, whether it counts, numeric value, category.
MetricRead = tuple[str | None, bool, float | None, str | None]


class MetricPy:
    """How one metric reads an event, in Python (dimension, value and category of declared types)."""

    def __init__(self, m: CompiledMetric, where: Predicate | None) -> None:
        self.name = m.name
        self.dims = list(m.spec.dimension)
        self.value = m.spec.value
        self.numeric = m.numeric
        self.where = where

    def read(self, row: Row) -> MetricRead:
        """Key, whether the event counts, numeric value, category (as ``contributions``)."""
        key = key_of([row[d] for d in self.dims])
        v: float | None = None
        c: str | None = None
        if self.value is not None:
            raw = row[self.value]
            if raw is not None:
                if self.numeric:
                    v = float(raw)  # type: ignore[arg-type]  # an int or float field
                c = raw if type(raw) is str else str(raw)
        ok = key is not None
        if ok and self.where is not None:
            ok = self.where(row)
        if ok and self.value is not None:
            ok = (v if self.numeric else c) is not None
        return key, ok, v, c


def _py_metric(m: CompiledMetric, kinds: Mapping[str, str], distinct: bool) -> bool:
    """Whether :class:`MetricPy` reads ``m``'s key and value exactly as Polars does."""
    if any(kinds.get(d) not in ("str", "any", "int") for d in m.spec.dimension):
        return False
    if m.spec.value is None:
        return True
    vk = kinds.get(m.spec.value)
    if m.numeric:
        # a float value's text (the category) is Polars' float formatting: only for distinct
        return vk == "int" or (vk == "float" and not distinct)
    return vk in ("str", "any", "int")


@dataclass
class Plan:
    """The pipeline's rules and metric inputs prepared for scoring, until rules or lists change."""

    stamp: tuple[object, ...]
    #: the metrics some feature reads, in the pipeline's order
    metrics: list[CompiledMetric]
    inputs: list[pl.Expr]
    rules: list[pl.Expr]
    #: Python forms when every rule and metric input has one, else None (Polars is used)
    py_rules: list[Predicate] | None
    py_metrics: list[MetricPy] | None


def stamp_of(p: ScoringView) -> tuple[object, ...]:
    """What a plan depends on, compared by identity."""
    lists = p.lists
    return (
        p.rules,
        p.models,
        p.metrics,
        p.feature_groups,
        p.decoder,
        lists,
        *(lists[n] for n in lists),
    )


def build_plan(p: ScoringView) -> Plan:
    """Metric inputs and rule flags of ``p`` in Polars and, where covered, in Python."""
    lists = p.lists
    groups = p.feature_groups
    used = {metric for metric, _tier in groups}
    metrics = [m for m in p.metrics if m.name in used]
    inputs: list[pl.Expr] = []
    for i, m in enumerate(metrics):
        inputs.extend(metric_inputs(m, lists, i))
    rules = [
        r.compiled.expr(lists).fill_null(False).alias(f"__rule_{i}") for i, r in enumerate(p.rules)
    ]
    # the time field is decoded as text, whatever its declared type: Polars casts it
    opaque = (p.decoder.time_field,)
    # with models, rules read model columns: the Polars form scores them in one call
    py_rules: list[Predicate] | None = None if p.models else []
    for r in p.rules if py_rules is not None else []:
        fn = python_predicate(r.compiled, lists, opaque_fields=opaque)
        if fn is None or py_rules is None:
            py_rules = None
            break
        py_rules.append(fn)
    kinds = p.decoder.fields
    with_distinct = {metric for (metric, _), g in groups.items() if g.distinct}
    py_metrics: list[MetricPy] | None = []
    for m in metrics:
        where = None
        if m.where is not None:
            where = python_predicate(m.where, lists, opaque_fields=opaque)
        covered = (m.where is None or where is not None) and _py_metric(
            m, kinds, m.name in with_distinct
        )
        if py_metrics is None or not covered:
            py_metrics = None
            break
        py_metrics.append(MetricPy(m, where))
    return Plan(stamp_of(p), metrics, inputs, rules, py_rules, py_metrics)


def metric_inputs(m: CompiledMetric, lists: ListValues, i: int) -> list[pl.Expr]:
    """What :meth:`CompiledMetric.contributions` reads of each row, as columns ``__k/ok/v/c{i}``."""
    key = m.key_expr()
    value = m.spec.value
    if value is not None and m.numeric:
        v = pl.col(value).cast(pl.Float64, strict=False)
    else:
        v = pl.lit(None, pl.Float64)
    c = pl.col(value).cast(pl.String) if value is not None else pl.lit(None, pl.String)
    ok = key.is_not_null()
    if m.where is not None:
        ok = ok & m.where.expr(lists).fill_null(False)
    if value is not None:
        ok = ok & (v.is_not_null() if m.numeric else c.is_not_null())
    return [key.alias(f"__k{i}"), ok.alias(f"__ok{i}"), v.alias(f"__v{i}"), c.alias(f"__c{i}")]
