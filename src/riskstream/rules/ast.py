"""Syntax tree of a rule expression: small frozen nodes, each with the 1-based column it starts at.

The parser builds these from the lark parse tree so the checker never deals with lark types.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A literal value as written: int, float, str, bool or None (``null``).
LiteralValue = int | float | str | bool | None


@dataclass(frozen=True)
class Node:
    """Base of every node; ``col`` is the 1-based character position used in error messages."""

    col: int


@dataclass(frozen=True)
class Literal(Node):
    """A number, string, ``true``/``false`` or ``null``."""

    value: LiteralValue


@dataclass(frozen=True)
class Name(Node):
    """A bare identifier: an event field, or a list name after ``in`` / in ``contains_any``."""

    name: str


@dataclass(frozen=True)
class Feature(Node):
    """``metric.stat(window)``; ``col`` is the metric's column, the others locate the parts."""

    metric: str
    stat: str
    window: str
    stat_col: int
    window_col: int


@dataclass(frozen=True)
class ModelRef(Node):
    """``model.NAME``: the calibrated score (0-1) of the spec's model ``NAME`` for the event."""

    name: str


@dataclass(frozen=True)
class Unary(Node):
    """``-x`` or ``not x``; ``col`` is the operator's column."""

    op: str
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    """``and or + - * / == != < <= > >=``; ``col`` is the operator's column."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Membership(Node):
    """``x in LIST`` / ``x not in LIST``; ``col`` is the column of ``in`` (or ``not``)."""

    negated: bool
    left: Node
    right: Node


@dataclass(frozen=True)
class ListLiteral(Node):
    """An inline list ``['a', 'b']`` or ``[1, 2.5]`` of literals."""

    items: tuple[Literal, ...]


@dataclass(frozen=True)
class Call(Node):
    """``name(arg, ...)``; ``col`` is the function name's column."""

    name: str
    args: tuple[Node, ...]
