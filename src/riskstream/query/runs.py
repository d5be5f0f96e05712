"""Immutable key-sorted runs of numeric partials: the storage of the in-memory range index.

A :class:`Run` holds, per key (sorted bytes), the partials ``(start, count, sum, min, max,
m2)`` of its buckets sorted by start, in two tables: buckets of one event (``count == 1``:
sum, min and max are the value, ``m2`` is 0), stored as ``(start, value)`` only -- most
buckets of a sparse key (a card) -- and the others. Starts are stored in units of the finest
tier relative to the run's first start (``uint32`` when the span allows). Why: a 790k-card
stream has about one bucket per event; 12 bytes per such bucket instead of 48.

:func:`build` makes a run from a partial frame, :func:`rows` turns runs back into one, and
:meth:`Run.slices` reads one key's buckets with start in ``[lo, hi)`` by binary search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from riskstream.core.stats import merge_rows

#: Columns of the frames runs are built from and turned back into (``key`` is Binary).
COLUMNS: Final[tuple[str, ...]] = ("key", "start", "count", "sum", "min", "max", "m2")
SCHEMA: Final[dict[str, pl.DataType]] = {
    "key": pl.Binary(),
    "start": pl.Int64(),
    "count": pl.Int64(),
    "sum": pl.Float64(),
    "min": pl.Float64(),
    "max": pl.Float64(),
    "m2": pl.Float64(),
}
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_U32_SPAN: Final[int] = 2**32 - 1


@dataclass(frozen=True)
class Slices:
    """One key's buckets inside a range, from one run: single-event values and other partials."""

    values: F64
    count: I64
    sum: F64
    min: F64
    max: F64
    m2: F64


@dataclass(frozen=True)
class Run:
    """Key-sorted partials (see the module docstring); ``size`` buckets in all."""

    keys: npt.NDArray[np.bytes_]
    base: int
    width: int
    one_off: I64
    one_start: npt.NDArray[Any]
    one_value: F64
    many_off: I64
    many_start: npt.NDArray[Any]
    many_count: I64
    many_sum: F64
    many_min: F64
    many_max: F64
    many_m2: F64

    @property
    def size(self) -> int:
        """Buckets held."""
        return len(self.one_value) + len(self.many_count)

    @property
    def nbytes(self) -> int:
        """Bytes of its arrays."""
        arrays = (self.keys, self.one_off, self.one_start, self.one_value, self.many_off)
        rest = (self.many_start, self.many_count, self.many_sum, self.many_min, self.many_max)
        return sum(a.nbytes for a in (*arrays, *rest, self.many_m2))

    def slices(self, key: bytes, lo: int, hi: int) -> Slices | None:
        """``key``'s buckets with start in ``[lo, hi)`` (ms), or None when it has none here."""
        keys = self.keys
        i = int(np.searchsorted(keys, key))
        if i >= len(keys) or keys[i] != key:
            return None
        a, b = self._units(lo), self._units(hi)
        o0, o1 = int(self.one_off[i]), int(self.one_off[i + 1])
        m0, m1 = int(self.many_off[i]), int(self.many_off[i + 1])
        starts = self.one_start[o0:o1]
        j0 = o0 + int(np.searchsorted(starts, a))
        j1 = o0 + int(np.searchsorted(starts, b))
        starts = self.many_start[m0:m1]
        k0 = m0 + int(np.searchsorted(starts, a))
        k1 = m0 + int(np.searchsorted(starts, b))
        if j0 == j1 and k0 == k1:
            return None
        return Slices(
            self.one_value[j0:j1],
            self.many_count[k0:k1],
            self.many_sum[k0:k1],
            self.many_min[k0:k1],
            self.many_max[k0:k1],
            self.many_m2[k0:k1],
        )

    def _units(self, t: int) -> int:
        """``t`` (a multiple of the width) in stored units, clamped to the stored type."""
        u = (t - self.base) // self.width
        if self.one_start.dtype == np.uint32:
            return min(max(u, 0), _U32_SPAN)
        return u


def build(frame: pl.DataFrame, width: int) -> Run:
    """A run from partials (:data:`COLUMNS`, one row per key and start, sorted by both)."""
    if frame.height:
        base = int(frame["start"].min())  # type: ignore[arg-type]
        span = (int(frame["start"].max()) - base) // width  # type: ignore[arg-type]
    else:
        base, span = 0, 0
    stype = np.uint32 if span <= _U32_SPAN else np.int64
    runs = frame.select(pl.col("key").rle()).unnest("key")
    nkeys = runs.height
    keys = np.asarray(runs["value"].to_numpy()).astype(np.bytes_) if nkeys else np.array([], "S1")
    key_of_row = np.repeat(np.arange(nkeys), runs["len"].to_numpy())
    units = ((frame["start"].to_numpy() - base) // width).astype(stype)
    one = (frame["count"] == 1).to_numpy()
    many = ~one

    def offsets(mask: npt.NDArray[np.bool_]) -> I64:
        counts = np.bincount(key_of_row[mask], minlength=nkeys)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def col(name: str, mask: npt.NDArray[np.bool_]) -> F64:
        return np.ascontiguousarray(frame[name].fill_null(np.nan).to_numpy()[mask], np.float64)

    return Run(
        keys=keys,
        base=base,
        width=width,
        one_off=offsets(one),
        one_start=units[one],
        one_value=col("sum", one),
        many_off=offsets(many),
        many_start=units[many],
        many_count=frame["count"].to_numpy()[many].astype(np.int64),
        many_sum=col("sum", many),
        many_min=col("min", many),
        many_max=col("max", many),
        many_m2=col("m2", many),
    )


def rows(runs: Sequence[Run]) -> pl.DataFrame:
    """Every bucket of ``runs`` as a partial frame (:data:`COLUMNS`; unsorted, may repeat)."""
    parts = []
    for run in runs:
        one_keys = np.repeat(run.keys, np.diff(run.one_off))
        many_keys = np.repeat(run.keys, np.diff(run.many_off))
        v = run.one_value
        for keys, units, cols in (
            (one_keys, run.one_start, (np.ones(len(v), np.int64), v, v, v, np.zeros(len(v)))),
            (
                many_keys,
                run.many_start,
                (run.many_count, run.many_sum, run.many_min, run.many_max, run.many_m2),
            ),
        ):
            if not len(keys):
                continue
            starts = units.astype(np.int64) * run.width + run.base
            data = dict(zip(COLUMNS, (keys, starts, *cols), strict=True))
            parts.append(pl.DataFrame(data, schema=SCHEMA))
    if not parts:
        return pl.DataFrame(schema=SCHEMA)
    return pl.concat(parts)


def merge(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows sharing key and start merged into one, sorted by key and start (nulls as NaN)."""
    if not frame.height:
        return frame
    frame = frame.with_columns(pl.col("min", "max").fill_nan(None))
    # Most buckets are in one run only: merge just the repeated ones (the merge is costly).
    dup = pl.struct("key", "start").is_duplicated()
    once, twice = frame.filter(~dup), frame.filter(dup)
    if twice.height:
        once = pl.concat([once, merge_rows(twice, ["key", "start"]).select(COLUMNS)])
    return once.select(COLUMNS).sort("key", "start")
