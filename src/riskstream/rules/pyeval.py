"""Rule expressions evaluated in plain Python on one event, for the single-event scoring path.

The compiled Polars form (:mod:`riskstream.rules.compiler`) is the reference; this evaluator
covers the part of the language whose Polars semantics are simple to mirror exactly: literals,
declared fields (``float``, ``int``, ``str``, ``bool``), features, ``not``/``-``, Kleene
``and``/``or``, comparisons, ``+ - * /`` in float (division by zero and NaN give null),
``x [not] in named_list`` or ``['a', 'b']``, ``is_null``, ``coalesce``, ``abs`` and ``len``.
Anything else (undeclared ``any`` fields and their text-to-number casts, ``contains_any``,
``lower``/``upper``, numeric lists) makes :func:`compile_py` return None, and the caller uses
the Polars expression. Equality with Polars is property-tested against the batch path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

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
from riskstream.rules.lists import ListValues
from riskstream.rules.parser import parse

#: Evaluates a node on one row (field and feature name -> value); None is null.
PyFn = Callable[[Mapping[str, Any]], Any]


class _Unsupported(Exception):
    pass


def compile_py(
    text: str, fields: Mapping[str, str] | None, lists: ListValues
) -> Callable[[Mapping[str, Any]], bool] | None:
    """``text`` (already checked by the compiler) as a Python predicate, or None if not covered.

    ``fields`` are the declared field types of the rule context; the predicate returns what the
    Polars form gives after ``fill_null(False)``. Build it again when the lists change.
    """
    try:
        kind, fn = _Compiler(fields, lists).node(parse(text))
    except _Unsupported:
        return None
    if kind not in ("bool", "null"):
        return None

    def predicate(row: Mapping[str, Any]) -> bool:
        return fn(row) is True

    return predicate


def _to_float(fn: PyFn) -> PyFn:
    def f(row: Mapping[str, Any]) -> Any:
        v = fn(row)
        return None if v is None else float(v)

    return f


class _Compiler:
    def __init__(self, fields: Mapping[str, str] | None, lists: ListValues) -> None:
        self.fields = fields
        self.lists = lists

    def node(self, node: Node) -> tuple[str, PyFn]:
        if isinstance(node, Literal):
            value = node.value
            if value is None:
                return "null", lambda _r: None
            if isinstance(value, bool):
                return "bool", lambda _r: value
            if isinstance(value, str):
                return "str", lambda _r: value
            return "num", lambda _r: value
        if isinstance(node, Name):
            return self._field(node.name)
        if isinstance(node, Feature):
            name = f"{node.metric}.{node.stat}({format_duration(parse_duration(node.window))})"

            def feature(row: Mapping[str, Any]) -> Any:
                v = row[name]
                if v is None:
                    return None
                x = float(v)
                return None if math.isnan(x) else x

            return "num", feature
        if isinstance(node, ModelRef):
            column = f"model.{node.name}"

            def model_score(row: Mapping[str, Any]) -> Any:
                v = row.get(column)
                return None if v is None else float(v)

            return "num", model_score
        if isinstance(node, Unary):
            kind, inner = self.node(node.operand)
            if node.op == "-":
                self._need(kind, "num")
                num = _to_float(inner)
                return "num", lambda r: None if (v := num(r)) is None else -v
            self._need(kind, "bool")
            return "bool", lambda r: None if (v := inner(r)) is None else not v
        if isinstance(node, Binary):
            if node.op in ("and", "or"):
                return self._logical(node)
            if node.op in ("==", "!=", "<", "<=", ">", ">="):
                return self._compare(node)
            return self._arith(node)
        if isinstance(node, Membership):
            return self._membership(node)
        if isinstance(node, Call):
            return self._call(node)
        raise _Unsupported

    @staticmethod
    def _need(kind: str, want: str) -> None:
        if kind not in (want, "null"):
            raise _Unsupported

    def _field(self, name: str) -> tuple[str, PyFn]:
        declared = None if self.fields is None else self.fields.get(name)
        if declared == "float":

            def fl(row: Mapping[str, Any]) -> Any:
                v = row[name]
                return None if v is None or math.isnan(v) else float(v)

            return "num", fl
        if declared == "int":
            return "num", lambda r: r[name]
        if declared == "str":
            return "str", lambda r: r[name]
        if declared == "bool":
            return "bool", lambda r: r[name]
        raise _Unsupported  # ``any``: Polars casts text to numbers its own way

    def _logical(self, node: Binary) -> tuple[str, PyFn]:
        lk, lf = self.node(node.left)
        rk, rf = self.node(node.right)
        self._need(lk, "bool")
        self._need(rk, "bool")
        if node.op == "and":

            def and_(row: Mapping[str, Any]) -> Any:
                a = lf(row)
                if a is False:
                    return False
                b = rf(row)
                if b is False:
                    return False
                return None if a is None or b is None else True

            return "bool", and_

        def or_(row: Mapping[str, Any]) -> Any:
            a = lf(row)
            if a is True:
                return True
            b = rf(row)
            if b is True:
                return True
            return None if a is None or b is None else False

        return "bool", or_

    def _compare(self, node: Binary) -> tuple[str, PyFn]:
        lk, lf = self.node(node.left)
        rk, rf = self.node(node.right)
        op = node.op
        if "null" in (lk, rk):
            if lk == rk:
                result = op == "=="
                return "bool", lambda _r: result
            other = rf if lk == "null" else lf
            if op == "==":
                return "bool", lambda r: other(r) is None
            return "bool", lambda r: other(r) is not None
        if lk != rk or lk not in ("num", "str", "bool"):
            raise _Unsupported
        if lk == "num":
            # Polars compares an Int64 with a Float64 as floats; two integers exactly.
            def num_pair(row: Mapping[str, Any]) -> tuple[Any, Any]:
                a, b = lf(row), rf(row)
                if a is None or b is None:
                    return None, None
                if type(a) is float or type(b) is float:
                    return float(a), float(b)
                return a, b

            pair = num_pair
        else:

            def plain_pair(row: Mapping[str, Any]) -> tuple[Any, Any]:
                return lf(row), rf(row)

            pair = plain_pair
        cmp: Callable[[Any, Any], bool] = {
            "==": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }[op]

        def compare(row: Mapping[str, Any]) -> Any:
            a, b = pair(row)
            if a is None or b is None:
                return None
            return cmp(a, b)

        return "bool", compare

    def _arith(self, node: Binary) -> tuple[str, PyFn]:
        lk, lf = self.node(node.left)
        rk, rf = self.node(node.right)
        self._need(lk, "num")
        self._need(rk, "num")
        a_f, b_f, op = _to_float(lf), _to_float(rf), node.op

        def arith(row: Mapping[str, Any]) -> Any:
            a, b = a_f(row), b_f(row)
            if a is None or b is None:
                return None
            if op == "+":
                out = a + b
            elif op == "-":
                out = a - b
            elif op == "*":
                out = a * b
            else:
                if b == 0:
                    return None
                out = a / b
            return None if math.isnan(out) else out

        return "num", arith

    def _membership(self, node: Membership) -> tuple[str, PyFn]:
        lk, lf = self.node(node.left)
        right = node.right
        if isinstance(right, Name):
            self._need(lk, "str")
            members = frozenset(self.lists[right.name].members.to_list())
        elif isinstance(right, ListLiteral):
            if not right.items:
                members = frozenset()
            elif lk in ("str", "null") and all(isinstance(i.value, str) for i in right.items):
                members = frozenset(str(i.value) for i in right.items)
            else:
                raise _Unsupported
        else:
            raise _Unsupported
        negated = node.negated

        def member(row: Mapping[str, Any]) -> Any:
            v = lf(row)
            if v is None:
                return None
            return (v in members) != negated

        return "bool", member

    def _call(self, node: Call) -> tuple[str, PyFn]:
        args = [self.node(a) for a in node.args]
        if node.name == "is_null" and len(args) == 1:
            inner = args[0][1]
            return "bool", lambda r: inner(r) is None
        if node.name == "abs" and len(args) == 1:
            self._need(args[0][0], "num")
            num = _to_float(args[0][1])
            return "num", lambda r: None if (v := num(r)) is None else abs(v)
        if node.name == "len" and len(args) == 1:
            self._need(args[0][0], "str")
            text = args[0][1]
            return "num", lambda r: None if (v := text(r)) is None else len(v)
        if node.name == "coalesce" and len(args) >= 2:
            kinds = {k for k, _ in args} - {"null"}
            if len(kinds) > 1:
                raise _Unsupported
            kind = kinds.pop() if kinds else "null"
            fns = [_to_float(f) if kind == "num" else f for _, f in args]

            def coalesce(row: Mapping[str, Any]) -> Any:
                for f in fns:
                    v = f(row)
                    if v is not None:
                        return v
                return None

            return kind, coalesce
        raise _Unsupported
