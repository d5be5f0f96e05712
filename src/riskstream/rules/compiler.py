"""Type-check a parsed rule expression against a :class:`RuleContext` and compile it to polars.

Checking happens once, at spec load; the result is a tree of small builder functions that
produce one vectorized ``pl.Expr`` for whole batches given the current list values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl

from riskstream.core.tiers import format_duration, parse_duration
from riskstream.rules import functions as fn
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
from riskstream.rules.functions import NAN, Builder, Typed, coerce, describe
from riskstream.rules.lists import ListValues
from riskstream.rules.parser import ExpressionError, parse

#: Feature stats the language knows, in the order error messages list them.
STATS: tuple[str, ...] = ("count", "sum", "avg", "min", "max", "var", "stddev", "distinct")
#: Declared field type -> (expression type, polars dtype the column is cast to; None = untouched).
FIELD_TYPES: dict[str, tuple[str, type[pl.DataType] | None]] = {
    "float": ("num", pl.Float64),
    "int": ("num", pl.Int64),
    "str": ("str", pl.String),
    "bool": ("bool", pl.Boolean),
    "any": ("any", None),
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


@dataclass(frozen=True)
class CompiledExpr:
    """A checked expression: what it reads, its result type, and a factory for its polars form."""

    text: str
    features: tuple[FeatureRef, ...]
    fields: tuple[str, ...]
    lists: tuple[str, ...]
    #: "bool", "num", "str", "any" or "null"
    result_type: str
    _build: Builder = field(repr=False, compare=False)
    #: models read as ``model.NAME``, in order of first appearance
    models: tuple[str, ...] = ()

    def expr(self, lists: ListValues) -> pl.Expr:
        """The polars expression over a frame of event fields plus one column per ``FeatureRef.name``.

        Build it again after the lists change (cheap: the list preparation is cached in ``lists``).
        """
        return self._build(lists)


def compile_expression(
    text: str, ctx: RuleContext, *, allow_features: bool = True, expect_bool: bool = True
) -> CompiledExpr:
    """Parse and type-check ``text``; raises :class:`ExpressionError` (1-based column + reason)."""
    checker = _Checker(ctx, allow_features)
    typed = checker.check(parse(text))
    if expect_bool and typed.type not in ("bool", "any"):
        raise ExpressionError(1, f"expected a true/false condition, got {describe(typed.type)}")
    value = coerce(typed, "bool") if expect_bool else typed.build

    def build(lists: ListValues) -> pl.Expr:
        # Polars may fold an expression to a single literal (``true``, ``coalesce(0, x)``);
        # the always-true row mask makes the result one value per row in every case.
        out = pl.when(pl.repeat(True, pl.len())).then(value(lists))
        return out.fill_null(False) if expect_bool else out

    return CompiledExpr(
        text=text,
        features=tuple(checker.features),
        fields=tuple(checker.fields),
        lists=tuple(checker.lists),
        result_type="bool" if expect_bool else typed.type,
        _build=build,
        models=tuple(checker.models),
    )


_ORDERING = ("<", "<=", ">", ">=")
_COMPARE: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "==": pl.Expr.eq,
    "!=": pl.Expr.ne,
    "<": pl.Expr.lt,
    "<=": pl.Expr.le,
    ">": pl.Expr.gt,
    ">=": pl.Expr.ge,
}


class _Checker:
    """Walks the tree left to right: checks types and names, records what is read, builds builders."""

    def __init__(self, ctx: RuleContext, allow_features: bool) -> None:
        self.ctx = ctx
        self.allow_features = allow_features
        # dicts as ordered sets: order of first appearance, no duplicates
        self.features: dict[FeatureRef, None] = {}
        self.fields: dict[str, None] = {}
        self.lists: dict[str, None] = {}
        self.models: dict[str, None] = {}

    def check(self, node: Node) -> Typed:
        """Type and builder of ``node``; raises ExpressionError at the offending column."""
        if isinstance(node, Literal):
            return fn.literal(node.col, node.value)
        if isinstance(node, Name):
            return self._field(node)
        if isinstance(node, Feature):
            return self._feature(node)
        if isinstance(node, ModelRef):
            return self._model(node)
        if isinstance(node, Unary):
            return self._unary(node)
        if isinstance(node, Binary):
            if node.op in ("and", "or"):
                return self._logical(node)
            if node.op in _COMPARE:
                return self._compare(node)
            return fn.arithmetic(node.col, node.op, self.check(node.left), self.check(node.right))
        if isinstance(node, Membership):
            return self._membership(node)
        if isinstance(node, Call):
            return self._call(node)
        if isinstance(node, ListLiteral):
            raise ExpressionError(
                node.col, "a [...] list is only allowed after 'in' or as the list of contains_any"
            )
        raise AssertionError(f"unknown node {node!r}")  # pragma: no cover

    def _field(self, node: Name) -> Typed:
        """An event field: its declared type (cast so odd column dtypes still work) or ``any``."""
        declared = "any" if self.ctx.fields is None else self.ctx.fields.get(node.name)
        if declared is None:
            raise ExpressionError(node.col, f"unknown field {node.name!r}")
        if declared not in FIELD_TYPES:
            raise ValueError(f"field {node.name!r} has unknown type {declared!r}")
        self.fields[node.name] = None
        kind, dtype = FIELD_TYPES[declared]
        name = node.name
        if dtype is None:
            return Typed(kind, lambda _lists: pl.col(name), node.col)
        cast_to = dtype
        if cast_to is pl.Float64:
            return Typed(
                kind,
                lambda _l: pl.col(name).cast(pl.Float64, strict=False).replace(NAN, None),
                node.col,
            )
        return Typed(kind, lambda _lists: pl.col(name).cast(cast_to, strict=False), node.col)

    def _feature(self, node: Feature) -> Typed:
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
        column = ref.name
        return Typed(
            "num",
            lambda _l: pl.col(column).cast(pl.Float64, strict=False).replace(NAN, None),
            node.col,
        )

    def _model(self, node: ModelRef) -> Typed:
        """``model.NAME``: the model's calibrated score column (Float64, 0-1)."""
        if not self.allow_features:
            raise ExpressionError(node.col, f"model.{node.name} is not allowed here")
        if node.name not in self.ctx.models:
            known = ", ".join(sorted(self.ctx.models)) or "none in the spec's models:"
            raise ExpressionError(node.col, f"unknown model {node.name!r} (known: {known})")
        self.models[node.name] = None
        column = model_column(node.name)
        return Typed("num", lambda _l: pl.col(column).cast(pl.Float64, strict=False), node.col)

    def _unary(self, node: Unary) -> Typed:
        """``not x`` (Kleene: not null is null) or ``-x``."""
        operand = self.check(node.operand)
        if node.op == "-":
            return fn.negate(node.col, operand)
        inner = fn.require(operand, "bool", "'not' needs a true/false value")
        return Typed("bool", lambda lists: inner(lists).not_(), node.col)

    def _logical(self, node: Binary) -> Typed:
        """``and`` / ``or`` with Kleene logic (false and null = false, true or null = true)."""
        left = self.check(node.left)
        need = f"'{node.op}' needs true/false values"
        lb = fn.require(left, "bool", need)
        rb = fn.require(self.check(node.right), "bool", need)
        if node.op == "and":
            return Typed("bool", lambda lists: lb(lists).and_(rb(lists)), node.col)
        return Typed("bool", lambda lists: lb(lists).or_(rb(lists)), node.col)

    def _compare(self, node: Binary) -> Typed:
        """Comparisons; ``x == null`` / ``x != null`` are null tests, other nulls make it null."""
        left, right, op = self.check(node.left), self.check(node.right), node.op
        if "null" in (left.type, right.type):
            if op not in ("==", "!="):
                raise ExpressionError(node.col, f"cannot use '{op}' with null; use is_null(x)")
            other = right if left.type == "null" else left
            if other.type == "null":
                return fn.literal(node.col, op == "==")
            ob = other.build
            if op == "==":
                return Typed("bool", lambda lists: ob(lists).is_null(), node.col)
            return Typed("bool", lambda lists: ob(lists).is_not_null(), node.col)
        target = fn.unify(left.type, right.type)
        if target is None:
            raise ExpressionError(
                node.col, f"cannot compare {describe(left.type)} with {describe(right.type)}"
            )
        if target == "bool" and op in _ORDERING:
            raise ExpressionError(node.col, f"cannot order true/false values with '{op}'")
        if target == "any":  # two undeclared fields: equality as text, ordering as numbers
            target = "num" if op in _ORDERING else "str"
        lb, rb, compare = coerce(left, target), coerce(right, target), _COMPARE[op]
        return Typed("bool", lambda lists: compare(lb(lists), rb(lists)), node.col)

    def _list_name(self, node: Name) -> str:
        """Check a named list reference and record it."""
        if node.name not in self.ctx.lists:
            raise ExpressionError(node.col, f"unknown list {node.name!r}")
        self.lists[node.name] = None
        return node.name

    def _membership(self, node: Membership) -> Typed:
        """``x [not] in LIST`` with ``is_in``; a null ``x`` gives null (so the rule is false)."""
        left = self.check(node.left)
        right = node.right
        build: Builder
        if isinstance(right, Name):
            name = self._list_name(right)
            if left.type not in ("str", "any", "null"):
                raise ExpressionError(
                    node.col, f"list {name!r} holds strings, cannot look up {describe(left.type)}"
                )
            lb = coerce(left, "str")

            def build(lists: ListValues) -> pl.Expr:
                return lb(lists).is_in(pl.lit(lists[name].members).implode())

        elif isinstance(right, ListLiteral):
            build = fn.in_literal_list(node.col, left, right)
        else:
            raise ExpressionError(right.col, "expected a list name or [...] after 'in'")
        if node.negated:
            positive = build
            return Typed("bool", lambda lists: positive(lists).not_(), node.col)
        return Typed("bool", build, node.col)

    def _call(self, node: Call) -> Typed:
        """Built-in functions; ``contains_any`` takes a list as its second argument."""
        if node.name == "contains_any":
            fn.check_arity(node, 2)
            text = self.check(node.args[0])
            target = node.args[1]
            if isinstance(target, Name):
                return fn.contains_any_named(node.col, text, self._list_name(target))
            if isinstance(target, ListLiteral):
                return fn.contains_any_inline(node.col, text, target)
            raise ExpressionError(
                target.col, "contains_any needs a list name or [...] as its 2nd argument"
            )
        if node.name not in fn.FUNCTIONS:
            known = ", ".join(sorted([*fn.FUNCTIONS, "contains_any"]))
            raise ExpressionError(node.col, f"unknown function {node.name!r} (known: {known})")
        return fn.FUNCTIONS[node.name](node, [self.check(a) for a in node.args])
