"""Type-check a parsed rule expression once, into the typed tree both backends evaluate.

Names (fields, metrics and their stats, windows, lists, models) are resolved here; operators
and functions are typed by their rule in the operator table (:data:`riskstream.rules.table.OPS`).
Errors are :class:`ExpressionError` at the offending 1-based column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from riskstream.core.tiers import format_duration, parse_duration
from riskstream.rules.ast import (
    Binary,
    Call,
    Feature,
    ListLiteral,
    Literal,
    Membership,
    ModelRef,
    Name,
    Node,
    Unary,
)
from riskstream.rules.functions import FUNCTIONS
from riskstream.rules.parser import ExpressionError
from riskstream.rules.table import OPS
from riskstream.rules.typed import TApply, TFeature, TField, TLit, TModel, TNode

#: Feature stats the language knows, in the order error messages list them.
STATS: tuple[str, ...] = ("count", "sum", "avg", "min", "max", "var", "stddev", "distinct")
#: Declared field types and the expression type each reads as.
FIELD_KINDS: dict[str, str] = {
    "float": "num",
    "int": "num",
    "str": "str",
    "bool": "bool",
    "any": "any",
}


@dataclass(frozen=True)
class FeatureRef:
    """A feature read by a rule: ``metric.stat(window)``, the window in milliseconds."""

    metric: str
    stat: str
    window_ms: int

    @property
    def name(self) -> str:
        """Canonical text, e.g. ``card.count(1m)``; also the feature's DataFrame column name."""
        return f"{self.metric}.{self.stat}({format_duration(self.window_ms)})"


@dataclass(frozen=True)
class RuleContext:
    """What an expression may refer to: declared fields (None = any field), metrics and lists."""

    fields: Mapping[str, str] | None
    metrics: Mapping[str, frozenset[str]] = field(default_factory=dict)
    lists: Mapping[str, str] = field(default_factory=dict)
    #: names of the spec's models, read as ``model.NAME``
    models: frozenset[str] = frozenset()


def model_column(name: str) -> str:
    """The DataFrame column holding model ``name``'s score: ``model.NAME``."""
    return f"model.{name}"


class Checker:
    """Walks the tree left to right: checks types and names, records what is read."""

    def __init__(self, ctx: RuleContext, allow_features: bool) -> None:
        self.ctx = ctx
        self.allow_features = allow_features
        # dicts as ordered sets: order of first appearance, no duplicates
        self.features: dict[FeatureRef, None] = {}
        self.fields: dict[str, None] = {}
        self.lists: dict[str, None] = {}
        self.models: dict[str, None] = {}

    def check(self, node: Node) -> TNode:
        """The typed form of ``node``; raises ExpressionError at the offending column."""
        if isinstance(node, Literal):
            return self._literal(node)
        if isinstance(node, Name):
            return self._field(node)
        if isinstance(node, Feature):
            return self._feature(node)
        if isinstance(node, ModelRef):
            return self._model(node)
        if isinstance(node, Unary):
            op = "neg" if node.op == "-" else "not"
            return self._apply(op, node.col, (node.operand,))
        if isinstance(node, Binary):
            return self._apply(node.op, node.col, (node.left, node.right))
        if isinstance(node, Membership):
            positive = self._apply("in", node.col, (node.left, node.right))
            return TApply("bool", node.col, "not", (positive,)) if node.negated else positive
        if isinstance(node, Call):
            if node.name not in FUNCTIONS:
                known = ", ".join(sorted(FUNCTIONS))
                raise ExpressionError(node.col, f"unknown function {node.name!r} (known: {known})")
            return self._apply(node.name, node.col, node.args)
        if isinstance(node, ListLiteral):
            raise ExpressionError(
                node.col, "a [...] list is only allowed after 'in' or as the list of contains_any"
            )
        raise AssertionError(f"unknown node {node!r}")  # pragma: no cover

    def list_name(self, node: Name) -> str:
        """Check a named list reference and record it."""
        if node.name not in self.ctx.lists:
            raise ExpressionError(node.col, f"unknown list {node.name!r}")
        self.lists[node.name] = None
        return node.name

    def _apply(self, op: str, col: int, args: tuple[Node, ...]) -> TNode:
        typing = OPS[op].typing
        assert typing is not None, f"operator {op!r} has no typing rule"
        return typing(self, col, args)

    @staticmethod
    def _literal(node: Literal) -> TNode:
        value = node.value
        if isinstance(value, bool):
            return TLit("bool", node.col, value)
        if value is None:
            return TLit("null", node.col, None)
        return TLit("str" if isinstance(value, str) else "num", node.col, value)

    def _field(self, node: Name) -> TNode:
        """An event field: its declared type (cast so odd column dtypes still work) or ``any``."""
        declared = "any" if self.ctx.fields is None else self.ctx.fields.get(node.name)
        if declared is None:
            raise ExpressionError(node.col, f"unknown field {node.name!r}")
        if declared not in FIELD_KINDS:
            raise ValueError(f"field {node.name!r} has unknown type {declared!r}")
        self.fields[node.name] = None
        return TField(FIELD_KINDS[declared], node.col, node.name, declared)

    def _feature(self, node: Feature) -> TNode:
        """``metric.stat(window)``: checks the metric, the stat it keeps and the window."""
        if not self.allow_features:
            raise ExpressionError(
                node.col, f"features like {node.metric}.{node.stat}(...) are not allowed here"
            )
        stats = self.ctx.metrics.get(node.metric)
        if stats is None:
            raise ExpressionError(node.col, f"unknown metric {node.metric!r}")
        if node.stat not in STATS:
            known = ", ".join(STATS)
            raise ExpressionError(
                node.stat_col, f"unknown stat {node.stat!r} (expected one of {known})"
            )
        if node.stat != "count" and node.stat not in stats:
            kept = ", ".join(s for s in STATS if s in stats or s == "count")
            raise ExpressionError(
                node.stat_col,
                f"metric {node.metric!r} does not keep {node.stat!r} (it keeps {kept})",
            )
        try:
            window_ms = parse_duration(node.window)
        except ValueError as exc:
            raise ExpressionError(
                node.window_col, str(exc).replace("duration", "window", 1)
            ) from None
        ref = FeatureRef(node.metric, node.stat, window_ms)
        self.features[ref] = None
        return TFeature("num", node.col, ref.name)

    def _model(self, node: ModelRef) -> TNode:
        """``model.NAME``: the model's calibrated score column (Float64, 0-1)."""
        if not self.allow_features:
            raise ExpressionError(node.col, f"model.{node.name} is not allowed here")
        if node.name not in self.ctx.models:
            known = ", ".join(sorted(self.ctx.models)) or "none in the spec's models:"
            raise ExpressionError(node.col, f"unknown model {node.name!r} (known: {known})")
        self.models[node.name] = None
        return TModel("num", node.col, model_column(node.name))
