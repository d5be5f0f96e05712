"""The rule expression language: parsed with lark, type-checked once into a typed tree, evaluated
by two backends generated from one operator table: Polars expressions for batches
(:mod:`.compiler`) and plain Python for one event (:mod:`.pyeval`).

Used for rule ``when:`` conditions and metric ``where:`` clauses. Never ``eval``'d.

Language
--------
* literals: ``12`` ``1.5`` ``'single'`` ``"double"`` (``\\'`` ``\\n`` escapes) ``true`` ``false`` ``null``
* event fields: bare identifiers (``amount``, ``card_id``); no dots
* features: ``metric.stat(window)``, e.g. ``card.count(1m)``, ``merchant_cards.distinct(1h)``;
  stats ``count sum avg min max var stddev distinct``; windows ``30s 5m 1h 7d 30d``
* ``and or not`` (Kleene logic), ``== != < <= > >=`` (no chaining), ``+ - * /``, unary ``-``, ``( )``
* ``x in LIST`` / ``x not in LIST``: LIST is a named list or an inline ``['a', 'b']`` / ``[1, 2.5]``
* ``contains_any(text, LIST)``: case-insensitive, whole-word keyword/phrase match
* models: ``model.NAME`` reads the calibrated score (0-1) of the spec's model ``NAME``
  (column ``model.NAME``; ``CompiledExpr.models`` lists the models an expression reads)
* ``abs(x) lower(s) upper(s) len(s) coalesce(a, b, ...) is_null(x)``
* keywords (``and or not in true false null``) are case-insensitive and reserved

Semantics (the integrator must know)
------------------------------------
* Nulls: a comparison, arithmetic or ``in`` with a null operand is null; ``and``/``or`` are Kleene
  (``false and null`` = false, ``true or null`` = true); a boolean expression's final null becomes
  false (``fill_null(False)``), so a rule on a missing field simply does not fire.
  ``x == null`` / ``x != null`` are null tests (same as ``is_null(x)`` / ``not is_null(x)``).
* Arithmetic is Float64; ``x / 0`` and NaN results are null; NaN in float columns is read as null.
  (Polars divides a column by a constant as ``x * (1/c)``: may differ from ``x / c`` by 1 ulp.)
* Declared fields are cast (non-strict) to their type: float->Float64, int->Int64, str->String,
  bool->Boolean, so a null-filled (dtype Null) column is fine. ``any`` fields (``ctx.fields is None``
  or declared ``any``) are cast to what their context needs (number, string, boolean); two
  ``any`` fields compare as text for ``==``/``!=`` and as numbers for ``< <= > >=``.
* Feature columns are read as Float64 from the column named ``FeatureRef.name`` (``card.count(1m)``).
* Named lists hold strings; ``in`` is exact and case-sensitive; ``contains_any`` lower-cases and
  treats every run of non-word characters as a word break (``_`` is a word character).
* ``expr(lists)`` always yields one value per row (constants are broadcast), usable in
  ``select``/``with_columns``/``filter``; it has no fixed output name: ``alias`` it. Call it again after
  ``ListRegistry.refresh()`` reports a change (or simply per batch: it is cheap).

Public API
----------
``compile_expression(text, ctx, *, allow_features=True, expect_bool=True) -> CompiledExpr``
(raises :class:`ExpressionError` with ``col``, the 1-based character offset in ``text``, and
``message``), :class:`FeatureRef`,
:class:`RuleContext`, :class:`CompiledExpr`, :class:`ListValues`, :class:`ListRegistry`,
:class:`ListLoadError`, ``STATS``. ``CompiledExpr.tree`` is the typed tree;
``pyeval.python_predicate(compiled, lists)`` its Python form (None when not covered).
"""

from __future__ import annotations

from riskstream.rules.compiler import (
    STATS,
    CompiledExpr,
    FeatureRef,
    RuleContext,
    compile_expression,
    model_column,
)
from riskstream.rules.lists import ListLoadError, ListRegistry, ListValues, PreparedList
from riskstream.rules.parser import ExpressionError

__all__ = [
    "STATS",
    "CompiledExpr",
    "ExpressionError",
    "FeatureRef",
    "ListLoadError",
    "ListRegistry",
    "ListValues",
    "PreparedList",
    "RuleContext",
    "compile_expression",
    "model_column",
]
