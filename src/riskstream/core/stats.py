"""The stats, each defined once: its partial, its merge, and its value in scalar and vector form.

Numeric stats (count, sum, avg, min, max, var, stddev) all come from one *partial*
``(count, sum, min, max, m2)`` where ``m2`` is the sum of squared deviations from the
partial's mean. Partials merge exactly (Chan et al.): count/sum/min/max exactly, var to
rounding. The same merge exists in three forms that must agree -- Polars
(:func:`merge_rows`), SQL (:func:`m2_merge_sql`, inside a store) and Python
(:meth:`Partial.merge`). A stat's value is :func:`value` for one partial (Python) and
:func:`values` for arrays of them (NumPy); both read the same :data:`STATS` table.

``distinct`` (a mergeable sketch, :mod:`riskstream.core.sketch`) and ``distribution``
(category counts, merged by summing) are the two non-numeric stats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from riskstream.core.keys import KEY
from riskstream.core.tiers import start_expr

F64 = npt.NDArray[np.float64]

#: Column names of contribution and bucket frames.
START: Final[str] = "start"
VALUE: Final[str] = "v"
CATEGORY: Final[str] = "c"

#: Stats served by the numeric partial; all but ``count`` need a numeric ``value`` field.
NUMERIC_STATS: Final[frozenset[str]] = frozenset(
    {"count", "sum", "avg", "min", "max", "var", "stddev"}
)
NUMERIC_VALUE_STATS: Final[frozenset[str]] = NUMERIC_STATS - {"count"}
#: Every stat a metric may keep.
ALL_STATS: Final[frozenset[str]] = NUMERIC_STATS | {"distinct", "distribution"}

PARTIAL_COLUMNS: Final[tuple[str, ...]] = ("count", "sum", "min", "max", "m2")
PARTIAL_SCHEMA: Final[dict[str, pl.DataType]] = {
    KEY: pl.String(),
    START: pl.Int64(),
    "count": pl.Int64(),
    "sum": pl.Float64(),
    "min": pl.Float64(),
    "max": pl.Float64(),
    "m2": pl.Float64(),
}


# ---- the partial: scalar form ---------------------------------------------------------------


@dataclass(frozen=True)
class Partial:
    """One numeric partial; ``min``/``max`` are None while nothing (numeric) was seen."""

    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    m2: float = 0.0

    @staticmethod
    def of(values: Sequence[float]) -> Partial:
        """The partial of ``values`` (brute force: the definition the vector forms must match)."""
        n = len(values)
        if not n:
            return Partial()
        total = math.fsum(values)
        mean = total / n
        return Partial(
            n, total, min(values), max(values), math.fsum((x - mean) ** 2 for x in values)
        )

    def merge(self, other: Partial) -> Partial:
        """Both partials as one (the Chan/parallel variance merge)."""
        if not other.count:
            return self
        if not self.count:
            return other
        n = self.count + other.count
        total = self.sum + other.sum
        mean = total / n
        m2 = (
            self.m2
            + self.count * (self.sum / self.count - mean) ** 2
            + other.m2
            + other.count * (other.sum / other.count - mean) ** 2
        )
        return Partial(n, total, _opt(min, self.min, other.min), _opt(max, self.max, other.max), m2)


def _opt(pick: Callable[[float, float], float], a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else pick(a, b)


# ---- the value of each stat -----------------------------------------------------------------


def _var(n: float, m2: float) -> float | None:
    return max(m2 / n, 0.0) if n > 0 else None


_SCALAR: Final[dict[str, Callable[[Partial], float | int | None]]] = {
    "count": lambda p: p.count,
    "sum": lambda p: p.sum,
    "avg": lambda p: p.sum / p.count if p.count else None,
    "min": lambda p: p.min if p.count else None,
    "max": lambda p: p.max if p.count else None,
    "var": lambda p: _var(p.count, p.m2),
    "stddev": lambda p: math.sqrt(v) if (v := _var(p.count, p.m2)) is not None else None,
}


def value(stat: str, p: Partial) -> float | int | None:
    """``stat`` of one partial (None where undefined: the average of nothing)."""
    try:
        return _SCALAR[stat](p)
    except KeyError:
        raise ValueError(f"unsupported numeric stat {stat!r}") from None


def values(
    stat: str, count: F64, total: F64, m2: F64, mn: F64 | None = None, mx: F64 | None = None
) -> F64:
    """``stat`` of arrays of partials (NaN where undefined; ``mn``/``mx`` may be +-inf for empty)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if stat == "count":
            return count
        if stat == "sum":
            return total
        if stat == "avg":
            return np.where(count > 0, total / count, np.nan)
        if stat in ("var", "stddev"):
            var = np.where(count > 0, np.maximum(m2 / count, 0.0), np.nan)
            return np.sqrt(var) if stat == "stddev" else var
        if stat == "min" and mn is not None:
            return np.where(np.isfinite(mn), mn, np.nan)
        if stat == "max" and mx is not None:
            return np.where(np.isfinite(mx), mx, np.nan)
    raise ValueError(f"unsupported numeric stat {stat!r}")


def m2_of_sums(count: float, total: float, sumsq: float) -> float:
    """``m2`` from running sums (count, sum, sum of squares), as prefix sums give them."""
    return sumsq - total * total / count if count > 0 else 0.0


def m2_of_sums_array(count: F64, total: F64, sumsq: F64) -> F64:
    """:func:`m2_of_sums` for arrays."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out: F64 = np.where(count > 0, sumsq - total * total / count, 0.0)
    return out


def sumsq_expr() -> pl.Expr:
    """Sum of squares of a partial frame's values (``m2 + sum^2 / count``): feature state."""
    return pl.col("m2") + pl.col("sum") ** 2 / pl.col("count")


def summary(p: Partial, wanted: Iterable[str]) -> dict[str, float | int | None]:
    """``count`` and each wanted numeric stat of ``p`` (a query's answer)."""
    out: dict[str, float | int | None] = {"count": p.count}
    for stat in wanted:
        if stat in _SCALAR:
            out[stat] = value(stat, p)
    return out


# ---- the partial: vector form (Polars) ------------------------------------------------------


def partial_aggs(v: pl.Expr = pl.col(VALUE)) -> list[pl.Expr]:
    """Aggregations making one partial per group of contributions with value ``v``."""
    return [
        pl.len().cast(pl.Int64).alias("count"),
        v.sum().alias("sum"),
        v.min().alias("min"),
        v.max().alias("max"),
        # var(ddof=0) * n is the sum of squared deviations, and a fast aggregation.
        (v.var(ddof=0) * pl.len()).fill_null(0.0).alias("m2"),
    ]


def partials(contrib: pl.DataFrame, tier: str, time_col: str = "_t") -> pl.DataFrame:
    """Aggregate contributions (``key``, time, ``v``) into one partial per (key, bucket start)."""
    return partials_lazy(contrib.lazy(), tier, time_col).collect()


def partials_lazy(
    contrib: pl.LazyFrame, tier: str, time_col: str = "_t", extra: list[pl.Expr] | None = None
) -> pl.LazyFrame:
    """The query behind :func:`partials`; ``extra`` aggregations follow the partial's columns."""
    return contrib.group_by(KEY, start_expr(pl.col(time_col), tier).alias(START)).agg(
        *partial_aggs(), *(extra or [])
    )


def merge_partials(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Merge partials sharing (key, start) into one row each."""
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema=PARTIAL_SCHEMA)
    if len(frames) == 1:
        return frames[0]
    both = pl.concat([f.select(list(PARTIAL_SCHEMA)) for f in frames], how="vertical_relaxed")
    return merge_rows(both, [KEY, START])


def merge_rows(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Merge all rows of ``frame`` with equal ``by`` columns (the Chan/parallel variance merge)."""
    n = pl.col("count")
    mean_i = pl.col("sum") / n
    grand_n = n.sum().over(by)
    grand_mean = pl.col("sum").sum().over(by) / grand_n
    return (
        frame.lazy()
        .with_columns((pl.col("m2") + n * (mean_i - grand_mean) ** 2).alias("_m2c"))
        .group_by(by)
        .agg(
            n.sum().alias("count"),
            pl.col("sum").sum().alias("sum"),
            pl.col("min").min().alias("min"),
            pl.col("max").max().alias("max"),
            pl.col("_m2c").sum().alias("m2"),
        )
        .collect()
    )


def merged(frames: Sequence[pl.DataFrame]) -> Partial:
    """All rows of partial ``frames`` as one :class:`Partial`."""
    frames = [f.select(PARTIAL_COLUMNS) for f in frames if f.height]
    if not frames:
        return Partial()
    rows = pl.concat(frames, how="vertical_relaxed").with_columns(pl.lit(0).alias("_g"))
    row = merge_rows(rows, ["_g"]).row(0, named=True)
    n = int(row["count"] or 0)
    if not n:
        return Partial()
    return Partial(n, float(row["sum"] or 0.0), row["min"], row["max"], float(row["m2"] or 0.0))


# ---- the merge: SQL form --------------------------------------------------------------------


def m2_merge_sql(count: str, total: str, m2: str, group_count: str, group_sum: str) -> str:
    """SQL aggregate of the merged ``m2`` of rows (``count``, ``total``, ``m2``) in a group
    whose totals are ``group_count``/``group_sum``: ``sum(m2_i + n_i (mean_i - mean)^2)``."""
    return f"sum({m2} + {count} * ({total} / {count} - {group_sum} / {group_count}) ** 2)"
