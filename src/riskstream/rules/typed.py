"""The typed tree of a checked rule expression: what both evaluation backends walk.

The checker (:mod:`riskstream.rules.checker`) turns the syntax tree into these nodes once, at
spec load. Every node carries its result type; every implicit conversion is an explicit
``cast``/``float`` node, so a backend never re-derives a typing decision: it only maps each
node to its form from the operator table (:mod:`riskstream.rules.ops`).

Types are ``num`` (an Int64 or Float64 value), ``str``, ``bool``, ``null`` (the literal) and
``any`` (an undeclared field, cast to whatever its context needs).
"""

from __future__ import annotations

from dataclasses import dataclass

from riskstream.rules.ast import LiteralValue
from riskstream.rules.parser import ExpressionError

#: Static parameter of an operator: a list name, inline list values, or a cast's target type.
Param = str | tuple[str, ...] | tuple[float, ...] | None

_WORDS = {
    "num": "a number",
    "str": "a string",
    "bool": "true/false",
    "null": "null",
    "any": "any value",
}
#: Types a ``cast`` node converts to.
CAST_TARGETS = ("num", "str", "bool")


@dataclass(frozen=True)
class TNode:
    """Base of typed nodes: the result ``type`` and the 1-based ``col`` for error messages."""

    type: str
    col: int


@dataclass(frozen=True)
class TLit(TNode):
    """A constant (ints stay ints, floats floats: no dtype surprises in comparisons)."""

    value: LiteralValue


@dataclass(frozen=True)
class TField(TNode):
    """An event field with its declared type (``float int str bool any``)."""

    name: str
    declared: str


@dataclass(frozen=True)
class TFeature(TNode):
    """A feature column (``card.count(1m)``), read as a float with NaN as null."""

    column: str


@dataclass(frozen=True)
class TModel(TNode):
    """A model's calibrated score column (``model.NAME``), read as a float."""

    column: str


@dataclass(frozen=True)
class TApply(TNode):
    """Operator ``op`` of :data:`riskstream.rules.ops.OPS` applied to ``args``."""

    op: str
    args: tuple[TNode, ...]
    param: Param = None


def describe(kind: str) -> str:
    """Type name as shown in error messages (``a number``)."""
    return _WORDS.get(kind, kind)


def unify(a: str, b: str) -> str | None:
    """Common type of two operands (``any`` and ``null`` adapt to the other side); None if none."""
    if a == b:
        return a
    for first, second in ((a, b), (b, a)):
        if first == "null" or (first == "any" and second != "null"):
            return second
    return None


def coerce(t: TNode, target: str) -> TNode:
    """``t`` as ``target``: a ``cast`` node for ``any``/``null`` operands, ``t`` itself otherwise."""
    if t.type == target or target not in CAST_TARGETS:
        return t
    return TApply(target, t.col, "cast", (t,), target)


def require(t: TNode, target: str, message: str) -> TNode:
    """``coerce`` if ``t`` can be a ``target``, else ExpressionError at ``t``'s column."""
    if t.type not in (target, "any", "null"):
        raise ExpressionError(t.col, f"{message}, got {describe(t.type)}")
    return coerce(t, target)


def as_float(t: TNode, message: str) -> TNode:
    """``t`` as a Float64 number (the type of every arithmetic result)."""
    return TApply("num", t.col, "float", (require(t, "num", message),))


def reads(node: TNode) -> list[TNode]:
    """Every node of the tree, depth first (leaves included)."""
    out: list[TNode] = []
    stack = [node]
    while stack:
        n = stack.pop()
        out.append(n)
        if isinstance(n, TApply):
            stack.extend(reversed(n.args))
    return out
