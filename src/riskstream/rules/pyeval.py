"""The one-event backend: a checked rule's typed tree evaluated in plain Python on one row.

Used by the single-event scoring path (``POST /v1/decide``). It walks the same typed tree as the
Polars backend (:mod:`riskstream.rules.compiler`) and takes each operator's Python form from
the same operator table (:data:`riskstream.rules.table.OPS`), so the two cannot drift apart:
a row is a mapping of field and feature/model column names to values as the batch frame holds
them (None is null).

An operator without a Python form (``lower``/``upper``, ``contains_any``, the text-to-number
cast of an undeclared ``any`` field) makes the whole expression uncovered: the functions here
return None and the caller uses the Polars form. Equality of both backends with a brute-force
oracle is property-tested (``tests/unit/rules/test_property.py``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Collection, Mapping
from typing import Any

from riskstream.rules.compiler import CompiledExpr
from riskstream.rules.lists import ListValues
from riskstream.rules.table import OPS
from riskstream.rules.typed import TApply, TFeature, TField, TLit, TModel, TNode

#: A row: field and feature/model column name -> value (None is null).
Row = Mapping[str, Any]
#: Evaluates a node on one row.
PyFn = Callable[[Row], Any]


class _Uncovered(Exception):
    """An operator or field without an exact Python form."""


def python_predicate(
    compiled: CompiledExpr, lists: ListValues, *, opaque_fields: Collection[str] = ()
) -> Callable[[Row], bool] | None:
    """A boolean expression as a Python predicate (what Polars gives after ``fill_null(False)``).

    None when the expression is not covered. ``opaque_fields`` are fields whose row value is not
    of the declared type (the decide path holds the time field as text): reading one is
    uncovered. Build it again when the lists change.
    """
    if compiled.result_type != "bool":
        return None
    fn = python_function(compiled, lists, opaque_fields=opaque_fields)
    if fn is None:
        return None
    value = fn
    return lambda row: value(row) is True


def python_function(
    compiled: CompiledExpr, lists: ListValues, *, opaque_fields: Collection[str] = ()
) -> PyFn | None:
    """The expression's value on one row (None is null), or None when it is not covered."""
    if compiled.tree is None:
        return None
    try:
        return _Backend(lists, frozenset(opaque_fields)).node(compiled.tree)
    except _Uncovered:
        return None


class _Backend:
    def __init__(self, lists: ListValues, opaque: frozenset[str]) -> None:
        self.lists = lists
        self.opaque = opaque

    def node(self, node: TNode) -> PyFn:
        if isinstance(node, TApply):
            return self._apply(node)
        if isinstance(node, TLit):
            value = node.value
            return lambda _r: value
        if isinstance(node, TField):
            return self._field(node)
        if isinstance(node, TFeature):
            return _float_column(node.column)
        if isinstance(node, TModel):
            score = node.column
            return lambda r: None if (v := r.get(score)) is None else float(v)
        raise AssertionError(f"unknown typed node {node!r}")  # pragma: no cover

    def _field(self, node: TField) -> PyFn:
        if node.name in self.opaque or node.declared == "any":
            raise _Uncovered  # ``any``: Polars casts text to numbers its own way
        if node.declared == "float":
            return _float_column(node.name)
        name = node.name
        return lambda r: r[name]

    def _apply(self, node: TApply) -> PyFn:
        if node.op == "float" and _always_float(node.args[0]):
            return self.node(node.args[0])  # already a float (or None): no call per row
        if node.param == "num" and all(_always_float(a) for a in node.args):
            form = _FLOAT_COMPARE.get(node.op)  # two floats: no int/float check per row
            if form is not None:
                return self._call(form, True, [self.node(a) for a in node.args])
        op = OPS[node.op]
        form = op.python(node, self.lists) if op.python is not None else None
        if form is None:
            raise _Uncovered
        return self._call(form, op.strict, [self.node(a) for a in node.args])

    @staticmethod
    def _call(form: Callable[..., Any], strict: bool, args: list[PyFn]) -> PyFn:
        """``form`` on the operands' values; a strict form sees no None (null in, null out)."""
        if len(args) == 1:
            (a,) = args
            if strict:
                return lambda r: None if (x := a(r)) is None else form(x)
            return lambda r: form(a(r))
        if len(args) == 2:
            a, b = args
            if not strict:
                return lambda r: form(a(r), b(r))

            def strict2(r: Row) -> Any:
                x = a(r)
                if x is None:
                    return None
                y = b(r)
                return None if y is None else form(x, y)

            return strict2
        if strict:

            def strict_n(r: Row) -> Any:
                values = [f(r) for f in args]
                return None if None in values else form(*values)

            return strict_n
        return lambda r: form(*[f(r) for f in args])


#: Comparisons of two values known to be floats (Python compares them as Polars does).
_FLOAT_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
#: Operators whose Python form always gives a float (or None).
_FLOAT_OPS = frozenset({"float", "+", "-", "*", "/", "neg"})


def _always_float(node: TNode) -> bool:
    """Whether the Python backend's value of ``node`` is always a float or None."""
    if isinstance(node, TFeature | TModel):
        return True
    if isinstance(node, TField):
        return node.declared == "float"
    if isinstance(node, TLit):
        return isinstance(node.value, float)
    if isinstance(node, TApply):
        if node.op in _FLOAT_OPS:
            return True
        if node.op in ("abs", "coalesce") and node.type == "num":
            return all(_always_float(a) for a in node.args)
    return False


def _float_column(name: str) -> PyFn:
    """A Float64 column as the language reads it: NaN is null."""

    def read(row: Row) -> Any:
        v = row[name]
        if v is None:
            return None
        x = float(v)
        return None if math.isnan(x) else x

    return read
