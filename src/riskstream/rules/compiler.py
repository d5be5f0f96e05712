"""Compile a rule expression: check it once into a typed tree, and build its Polars form.

This is the batch backend: the typed tree (:mod:`riskstream.rules.checker`) becomes a tree of
small builder functions that produce one vectorized ``pl.Expr`` for whole batches given the
current list values, each operator by its Polars form in the operator table
(:data:`riskstream.rules.table.OPS`). The one-event backend over the same tree and table is
:mod:`riskstream.rules.pyeval`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from riskstream.rules.checker import STATS, Checker, FeatureRef, RuleContext, model_column
from riskstream.rules.lists import ListValues
from riskstream.rules.ops import NAN
from riskstream.rules.parser import ExpressionError, parse
from riskstream.rules.table import OPS
from riskstream.rules.typed import TApply, TFeature, TField, TLit, TModel, TNode, coerce, describe

__all__ = [
    "STATS",
    "Builder",
    "CompiledExpr",
    "FeatureRef",
    "RuleContext",
    "compile_expression",
    "model_column",
    "polars_builder",
]

#: Builds the polars expression of a node, given the current list values.
Builder = Callable[[ListValues], pl.Expr]
#: Declared field type -> polars dtype the column is cast to (None = read as it is).
_FIELD_DTYPES: dict[str, type[pl.DataType] | None] = {
    "float": pl.Float64,
    "int": pl.Int64,
    "str": pl.String,
    "bool": pl.Boolean,
    "any": None,
}


@dataclass(frozen=True)
class CompiledExpr:
    """A checked expression: what it reads, its result type, its typed tree, its polars form."""

    text: str
    features: tuple[FeatureRef, ...]
    fields: tuple[str, ...]
    lists: tuple[str, ...]
    #: "bool", "num", "str", "any" or "null"
    result_type: str
    _build: Builder = field(repr=False, compare=False)
    #: models read as ``model.NAME``, in order of first appearance
    models: tuple[str, ...] = ()
    #: the typed tree (a boolean expression's root is already cast to bool)
    tree: TNode | None = field(default=None, repr=False, compare=False)

    def expr(self, lists: ListValues) -> pl.Expr:
        """The polars expression over a frame of event fields plus one column per ``FeatureRef.name``.

        Build it again after the lists change (cheap: the list preparation is cached in ``lists``).
        """
        return self._build(lists)


def compile_expression(
    text: str, ctx: RuleContext, *, allow_features: bool = True, expect_bool: bool = True
) -> CompiledExpr:
    """Parse and type-check ``text``; raises :class:`ExpressionError` (1-based column + reason)."""
    checker = Checker(ctx, allow_features)
    typed = checker.check(parse(text))
    if expect_bool and typed.type not in ("bool", "any"):
        raise ExpressionError(1, f"expected a true/false condition, got {describe(typed.type)}")
    root = coerce(typed, "bool") if expect_bool else typed
    value = polars_builder(root)

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
        tree=root,
    )


def polars_builder(node: TNode) -> Builder:
    """The builder of ``node``'s Polars expression, each operator by its table form."""
    if isinstance(node, TApply):
        form = OPS[node.op].polars
        args = [polars_builder(a) for a in node.args]
        if len(args) == 1:
            (only,) = args
            return lambda lists: form(node, lists, (only(lists),))
        return lambda lists: form(node, lists, [a(lists) for a in args])
    if isinstance(node, TLit):
        return _literal(node)
    if isinstance(node, TField):
        return _field(node)
    if isinstance(node, TFeature):
        column = node.column
        return lambda _l: pl.col(column).cast(pl.Float64, strict=False).replace(NAN, None)
    if isinstance(node, TModel):
        score = node.column
        return lambda _l: pl.col(score).cast(pl.Float64, strict=False)
    raise AssertionError(f"unknown typed node {node!r}")  # pragma: no cover


def _literal(node: TLit) -> Builder:
    """A constant (ints as Int64, floats as Float64: no dtype surprises in comparisons)."""
    value = node.value
    if isinstance(value, bool):
        return lambda _l: pl.lit(value, dtype=pl.Boolean)
    if value is None:
        return lambda _l: pl.lit(None)
    if isinstance(value, str):
        return lambda _l: pl.lit(value, dtype=pl.String)
    dtype = pl.Int64 if isinstance(value, int) else pl.Float64
    return lambda _l: pl.lit(value, dtype=dtype)


def _field(node: TField) -> Builder:
    """An event field cast (non-strict) to its declared type; NaN in a float field is null."""
    name, dtype = node.name, _FIELD_DTYPES[node.declared]
    if dtype is None:
        return lambda _l: pl.col(name)
    if dtype is pl.Float64:
        return lambda _l: pl.col(name).cast(pl.Float64, strict=False).replace(NAN, None)
    cast_to = dtype
    return lambda _l: pl.col(name).cast(cast_to, strict=False)
