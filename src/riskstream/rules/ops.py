"""The operator table: every operator and built-in function of the rule language, defined once.

Each :class:`Op` holds the three things that define an operator:

* ``typing``: its typing rule. Given the syntax nodes of its operands and the checker, it checks
  them (in the order error messages depend on), inserts the casts its operands need and returns
  the typed node (:mod:`riskstream.rules.typed`). None for internal operators the checker emits
  itself (``cast``, ``float``, ``is_not_null``, the list lookups);
* ``polars``: its Polars form (the batch backend, :mod:`riskstream.rules.compiler`);
* ``python``: its plain-Python form on one value per operand (the one-event backend,
  :mod:`riskstream.rules.pyeval`), or None when Polars' semantics are not mirrored exactly
  (text-to-number casts, ``lower``/``upper``'s Unicode tables, ``contains_any``); the Python
  backend then declines the whole expression and the caller uses the Polars form.

``strict`` operators are null in, null out: the Python backend returns None for a null operand
without calling the form. Named functions (``abs(x)`` ...) live in :mod:`riskstream.rules.functions`;
:mod:`riskstream.rules.table` joins both into ``OPS``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import polars as pl

from riskstream.rules.ast import ListLiteral, Name, Node
from riskstream.rules.lists import ListValues
from riskstream.rules.parser import ExpressionError
from riskstream.rules.typed import TApply, TLit, TNode, as_float, coerce, describe, require, unify

#: NaN read as null. ``replace`` uses its input once; ``fill_nan`` (a when/then/otherwise on
#: three copies of it) made nested arithmetic compile to exponentially large expressions.
NAN = float("nan")


class Checking(Protocol):
    """What a typing rule may ask of the checker."""

    def check(self, node: Node) -> TNode:
        """The typed form of a sub-expression (raises ExpressionError)."""
        ...

    def list_name(self, node: Name) -> str:
        """A named list reference, checked and recorded."""
        ...


#: (checker, operator column, operand syntax nodes) -> typed node
Typing = Callable[[Checking, int, tuple[Node, ...]], TNode]
#: (node, list values, operand expressions) -> the node's Polars expression
PolarsForm = Callable[[TApply, ListValues, Sequence[pl.Expr]], pl.Expr]
#: (node, list values) -> a function of the operand values, or None (no exact Python form)
PythonForm = Callable[[TApply, ListValues], Callable[..., Any] | None]


@dataclass(frozen=True)
class Op:
    """One operator: its typing rule, its Polars form and its Python form."""

    typing: Typing | None
    polars: PolarsForm
    python: PythonForm | None
    #: null operand -> null result, in the Python form (which then never sees a None)
    strict: bool = True


def _form(fn: Callable[..., Any]) -> PythonForm:
    """A Python form that does not depend on the node or the lists."""
    return lambda _node, _lists: fn


def _no_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def _empty_match(e: pl.Expr) -> pl.Expr:
    """Membership in an empty list: false, or null when the value is null."""
    return pl.when(e.is_not_null()).then(pl.lit(False))


# ---- casts ----------------------------------------------------------------------------------------

_CAST_DTYPES: dict[str, type[pl.DataType]] = {
    "num": pl.Float64,
    "str": pl.String,
    "bool": pl.Boolean,
}


def _cast_polars(node: TApply, _lists: ListValues, args: Sequence[pl.Expr]) -> pl.Expr:
    out = args[0].cast(_CAST_DTYPES[str(node.param)], strict=False)
    return out.replace(NAN, None) if node.param == "num" else out  # NaN reads as null


def _cast_python(node: TApply, _lists: ListValues) -> Callable[..., Any] | None:
    # Only ``null`` is cast exactly for free (strict: the form is never called); an ``any``
    # field's text-to-number/bool cast follows Polars' parser, not mirrored here.
    return (lambda v: v) if node.args[0].type == "null" else None


# ---- logic ----------------------------------------------------------------------------------------


def _kleene_and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _kleene_or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _logical(op: str) -> Typing:
    """``and`` / ``or``: each side must be true/false, checked left then right."""
    need = f"'{op}' needs true/false values"

    def typing(c: Checking, col: int, args: tuple[Node, ...]) -> TNode:
        left = require(c.check(args[0]), "bool", need)
        right = require(c.check(args[1]), "bool", need)
        return TApply("bool", col, op, (left, right))

    return typing


def _not_typing(c: Checking, col: int, args: tuple[Node, ...]) -> TNode:
    operand = require(c.check(args[0]), "bool", "'not' needs a true/false value")
    return TApply("bool", col, "not", (operand,))


# ---- comparisons ----------------------------------------------------------------------------------

_ORDERING = ("<", "<=", ">", ">=")
_PY_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_PL_COMPARE: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "==": pl.Expr.eq,
    "!=": pl.Expr.ne,
    "<": pl.Expr.lt,
    "<=": pl.Expr.le,
    ">": pl.Expr.gt,
    ">=": pl.Expr.ge,
}


def _compare_typing(op: str) -> Typing:
    """Comparisons; ``x == null`` / ``x != null`` are null tests, other nulls make it null."""

    def typing(c: Checking, col: int, args: tuple[Node, ...]) -> TNode:
        left, right = c.check(args[0]), c.check(args[1])
        if "null" in (left.type, right.type):
            if op not in ("==", "!="):
                raise ExpressionError(col, f"cannot use '{op}' with null; use is_null(x)")
            other = right if left.type == "null" else left
            if other.type == "null":
                return TLit("bool", col, op == "==")
            return TApply("bool", col, "is_null" if op == "==" else "is_not_null", (other,))
        target = unify(left.type, right.type)
        if target is None:
            raise ExpressionError(
                col, f"cannot compare {describe(left.type)} with {describe(right.type)}"
            )
        if target == "bool" and op in _ORDERING:
            raise ExpressionError(col, f"cannot order true/false values with '{op}'")
        if target == "any":  # two undeclared fields: equality as text, ordering as numbers
            target = "num" if op in _ORDERING else "str"
        return TApply("bool", col, op, (coerce(left, target), coerce(right, target)), target)

    return typing


def _compare_python(op: str) -> PythonForm:
    cmp = _PY_COMPARE[op]

    def form(node: TApply, _lists: ListValues) -> Callable[..., Any]:
        if node.param != "num":
            return cmp

        def numbers(a: Any, b: Any) -> bool:
            # Polars compares an Int64 with a Float64 as floats; two integers exactly.
            if type(a) is float or type(b) is float:
                return cmp(float(a), float(b))
            return cmp(a, b)

        return numbers

    return form


def _compare_op(op: str) -> Op:
    pl_cmp = _PL_COMPARE[op]
    return Op(
        _compare_typing(op), lambda _n, _l, a: pl_cmp(a[0], a[1]), _compare_python(op), strict=True
    )


# ---- arithmetic -----------------------------------------------------------------------------------


def _arith_typing(op: str) -> Typing:
    """``+ - * /`` in Float64 (both operands checked, then required to be numbers)."""
    need = f"'{op}' needs numbers"

    def typing(c: Checking, col: int, args: tuple[Node, ...]) -> TNode:
        left, right = c.check(args[0]), c.check(args[1])
        return TApply("num", col, op, (as_float(left, need), as_float(right, need)))

    return typing


def _divide_python(a: float, b: float) -> float | None:
    return None if b == 0 else _no_nan(a / b)


_ARITH: dict[str, tuple[Callable[[pl.Expr, pl.Expr], pl.Expr], Callable[..., Any]]] = {
    "+": (operator.add, lambda a, b: _no_nan(a + b)),
    "-": (operator.sub, lambda a, b: _no_nan(a - b)),
    "*": (operator.mul, lambda a, b: _no_nan(a * b)),
    # dividing by zero (-0.0 too) gives null; each operand used once
    "/": (lambda a, b: a / b.replace(0.0, None), _divide_python),
}


def _arith_op(op: str) -> Op:
    pl_fn, py_fn = _ARITH[op]
    return Op(
        _arith_typing(op),
        lambda _n, _l, a: pl_fn(a[0], a[1]).replace(NAN, None),
        _form(py_fn),
    )


def _neg_typing(c: Checking, col: int, args: tuple[Node, ...]) -> TNode:
    return TApply("num", col, "neg", (as_float(c.check(args[0]), "'-' needs a number"),))


# ---- membership: x [not] in LIST ------------------------------------------------------------------


def _item_type(items: ListLiteral) -> str | None:
    """``str`` or ``num`` for a non-empty inline list, None when empty; mixed lists are an error."""
    kinds = ["str" if isinstance(i.value, str) else "num" for i in items.items]
    for item, kind in zip(items.items, kinds, strict=True):
        if kind != kinds[0]:
            raise ExpressionError(item.col, "a list must hold only strings or only numbers")
    return kinds[0] if kinds else None


def _in_typing(c: Checking, col: int, args: tuple[Node, ...]) -> TNode:
    """``x in LIST`` (a named list of strings or an inline list); a null ``x`` gives null."""
    left, right = c.check(args[0]), args[1]
    if isinstance(right, Name):
        name = c.list_name(right)
        if left.type not in ("str", "any", "null"):
            raise ExpressionError(
                col, f"list {name!r} holds strings, cannot look up {describe(left.type)}"
            )
        return TApply("bool", col, "in", (coerce(left, "str"),), name)
    if not isinstance(right, ListLiteral):
        raise ExpressionError(right.col, "expected a list name or [...] after 'in'")
    kind = _item_type(right)
    if kind is None:
        return TApply("bool", col, "in_empty", (left,))
    if left.type not in (kind, "any", "null"):
        of = "strings" if kind == "str" else "numbers"
        raise ExpressionError(col, f"cannot look up {describe(left.type)} in a list of {of}")
    if kind == "str":
        strings = tuple(str(i.value) for i in right.items)
        return TApply("bool", col, "in_list", (coerce(left, "str"),), strings)
    numbers = tuple(float(i.value) for i in right.items)  # type: ignore[arg-type]
    return TApply("bool", col, "in_list", (as_float(left, ""),), numbers)


def _in_list_polars(node: TApply, _lists: ListValues, args: Sequence[pl.Expr]) -> pl.Expr:
    dtype = pl.String if node.args[0].type == "str" else pl.Float64
    series = pl.Series(list(node.param or ()), dtype=dtype)
    return args[0].is_in(pl.lit(series).implode())


def _members(node: TApply, lists: ListValues) -> Callable[..., Any]:
    """``v in members``: a named list's distinct values, or the inline values (floats hash as
    Polars matches them: ``-0.0`` is ``0.0``)."""
    if isinstance(node.param, str):
        members: frozenset[Any] = frozenset(lists[node.param].members.to_list())
    else:
        members = frozenset(node.param or ())
    return members.__contains__


# ---- the operators ----------------------------------------------------------------------------------

#: The operators (the Binary/Unary symbols: ``+``, ``==``, ``and``, ``not``, ``neg`` for unary
#: minus, and the internal ones); :data:`riskstream.rules.table.OPS` adds the named functions.
OPERATORS: dict[str, Op] = {
    "cast": Op(None, _cast_polars, _cast_python),
    "float": Op(None, lambda _n, _l, a: a[0].cast(pl.Float64, strict=False), _form(float)),
    "and": Op(_logical("and"), lambda _n, _l, a: a[0].and_(a[1]), _form(_kleene_and), strict=False),
    "or": Op(_logical("or"), lambda _n, _l, a: a[0].or_(a[1]), _form(_kleene_or), strict=False),
    "not": Op(_not_typing, lambda _n, _l, a: a[0].not_(), _form(operator.not_)),
    "neg": Op(_neg_typing, lambda _n, _l, a: -a[0], _form(operator.neg)),
    "is_not_null": Op(
        None, lambda _n, _l, a: a[0].is_not_null(), _form(lambda v: v is not None), False
    ),
    "in": Op(
        _in_typing,
        lambda n, lists, a: a[0].is_in(pl.lit(lists[str(n.param)].members).implode()),
        _members,
    ),
    "in_list": Op(None, _in_list_polars, _members),
    "in_empty": Op(None, lambda _n, _l, a: _empty_match(a[0]), _form(lambda _v: False)),
    **{op: _compare_op(op) for op in _PL_COMPARE},
    **{op: _arith_op(op) for op in _ARITH},
}
