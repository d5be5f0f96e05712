"""Exact sliding-window features, vectorized.

``metric.stat(W)`` at event *e* covers contributions of the same key whose bucket
(at the feature's tier, one second for short windows) lies in ``(b_e - W, b_e]``
and that were ingested before or with *e*.

How (no Python loop per event, NumPy on integer codes): keys are mapped once per call to
dense integer codes (their 64-bit hash, checked against the strings, so the answer stays
exact under hash collisions). The prior state (per key and bucket) and the batch's
*in-order* contributions form one array ``R`` sorted by (code, bucket, ingestion rank),
one ``argsort`` of a composite integer. For any event, the rows it may see form one
contiguous slice of ``R`` (proof below), found with two ``searchsorted`` calls on sorted
probes; sums come from prefix sums (float64 with exact per-step rounding errors carried
alongside, i.e. double-double) and min/max from a sparse table built only up to the
longest slice. The few *late* contributions (bucket below an earlier batch row of the
same key) are added per event by a small expansion over the rows of their key.

Why one slice: a contribution ``x`` is in-order when its bucket is >= the bucket
of every earlier batch row of its key. So an in-order ``x`` ingested after ``e``
has ``b_x >= b_e`` and sorts after ``(b_e, rank_e)``; everything before that
bound was ingested before ``e``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from riskstream.core import stats
from riskstream.core.keys import KEY, key_codes, keyed_rows
from riskstream.core.stats import VALUE
from riskstream.core.tiers import TIER_MS, start_expr
from riskstream.engine.decode import SEQ, TIME

STATE_SCHEMA: dict[str, pl.DataType] = {
    KEY: pl.String(),
    "b": pl.Int64(),
    "count": pl.Int64(),
    "sum": pl.Float64(),
    "sumsq": pl.Float64(),
    "min": pl.Float64(),
    "max": pl.Float64(),
}

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
Composite = npt.NDArray[np.int64] | npt.NDArray[np.object_]


@dataclass(frozen=True)
class Request:
    """One feature column to compute: its name, stat and window (ms)."""

    name: str
    stat: str
    window_ms: int


#: The state columns each numeric stat reads (``count`` is always kept).
_NEEDS: dict[str, tuple[str, ...]] = {
    "count": (),
    "sum": ("sum",),
    "avg": ("sum",),
    "var": ("sum", "sumsq"),
    "stddev": ("sum", "sumsq"),
    "min": ("min",),
    "max": ("max",),
}
#: What a state column left out reads as: the empty value of its stat.
EMPTY: dict[str, float] = {"sum": 0.0, "sumsq": 0.0, "min": math.inf, "max": -math.inf}


def state_columns(requests: Sequence[Request]) -> tuple[str, ...]:
    """The stat columns of the state that ``requests`` read, in :data:`STATE_SCHEMA` order
    (a feature tail keeps only these: ``person.count(10m)`` needs no sums of squares)."""
    wanted = {"count"} | {c for r in requests for c in _NEEDS.get(r.stat, tuple(EMPTY))}
    return tuple(c for c in STATE_SCHEMA if c in wanted)


def state_schema(columns: Sequence[str]) -> dict[str, pl.DataType]:
    """:data:`STATE_SCHEMA` with only ``columns`` of the stat columns."""
    return {k: v for k, v in STATE_SCHEMA.items() if k in (KEY, "b") or k in columns}


def state_rows(
    contrib: pl.DataFrame, tier: str, columns: Sequence[str] = tuple(STATE_SCHEMA)[2:]
) -> pl.DataFrame:
    """Aggregate contributions into feature-state rows (key, bucket and the stat ``columns``
    of count, sum, sumsq, min, max)."""
    v = pl.col(VALUE).fill_null(0.0)
    aggs = {
        "count": pl.len().cast(pl.Int64).alias("count"),
        "sum": v.sum().alias("sum"),
        "sumsq": (v * v).sum().alias("sumsq"),
        "min": pl.col(VALUE).min().alias("min"),
        "max": pl.col(VALUE).max().alias("max"),
    }
    return (
        contrib.lazy()
        .with_columns(start_expr(pl.col(TIME), tier).alias("b"))
        .group_by(KEY, "b")
        .agg(*(aggs[c] for c in aggs if c in columns))
        .collect()
    )


# ---- numeric features -----------------------------------------------------------------------


def compute(
    queries: pl.DataFrame,
    contrib: pl.DataFrame,
    state: pl.DataFrame,
    tier: str,
    requests: Sequence[Request],
) -> pl.DataFrame:
    """Feature columns for every row of ``queries`` (columns key, _t, _seq; key may be null).

    ``contrib`` holds the batch rows that count for the metric (key, _t, _seq, v), a
    subset of ``queries`` by ``_seq``; ``state`` holds everything ingested before the batch.
    """
    n = queries.height
    if not requests:
        return pl.DataFrame()
    pos = keyed_rows(queries[KEY])
    results: dict[int, dict[str, F64]] = {}
    if len(pos):
        results, pos = _numeric(queries, contrib, state, tier, requests, pos)
    out: list[pl.Series] = []
    for req in requests:
        full = np.full(n, np.nan)
        if len(pos):
            acc = results[req.window_ms]
            full[pos] = _stat(req.stat, acc["count"], acc["sum"], acc["sumsq"], *_mm(acc, req))
        if req.stat in ("count", "sum"):
            # NaN (no key, or a NaN value) reads as null, and a null count or sum is 0.
            full[np.isnan(full)] = 0.0
            if req.stat == "count":
                out.append(pl.Series(req.name, full.astype(np.int64), dtype=pl.Int64))
                continue
        out.append(pl.Series(req.name, full, dtype=pl.Float64, nan_to_null=True))
    return pl.DataFrame(out)


def _mm(acc: dict[str, F64], req: Request) -> tuple[F64 | None, F64 | None]:
    return (acc["min"] if req.stat == "min" else None, acc["max"] if req.stat == "max" else None)


def _numeric(
    queries: pl.DataFrame,
    contrib: pl.DataFrame,
    state: pl.DataFrame,
    tier: str,
    requests: Sequence[Request],
    pos: I64,
) -> tuple[dict[int, dict[str, F64]], I64]:
    """Per distinct window (ms): count, sum, sumsq and (when asked) min, max of the query rows
    with a key (``pos``), in an order of their own; returns them and those rows' positions.

    The visible rows of an event are, with ``R`` split into its two sorted parts, one slice
    of the state rows (sorted by code and bucket: all ingested before the batch) plus one
    slice of the fresh rows. The queries are taken in the order of their probe (code,
    bucket, rank), so every binary search and every gather runs in increasing order, and the
    fresh rows (in-order contributions) are a subsequence of the queries in that order: no
    sort and no search is needed for them but the slice starts.
    """
    n = queries.height
    width = TIER_MS[tier]
    keycol = queries[KEY]
    qkeys = keycol if len(pos) == n else keycol.gather(pos)
    code, (scode,), ncodes = key_codes(qkeys, [state[KEY]])
    b_all = queries.select(start_expr(pl.col(TIME), tier))[TIME].to_numpy().astype(np.int64)
    seq_all = queries[SEQ].to_numpy().astype(np.int64)

    # Which query rows contribute, with what value (matched on _seq, like a join).
    contributes = np.zeros(n, dtype=np.bool_)
    value = np.zeros(n)
    if contrib.height:
        at = locate(seq_all, contrib[SEQ].to_numpy().astype(np.int64))
        ok = at >= 0
        contributes[at[ok]] = True
        value[at[ok]] = contrib[VALUE].fill_null(0.0).to_numpy().astype(np.float64)[ok]

    cols = _state_columns(state)
    srows = np.flatnonzero(scode >= 0)
    sb = cols["b"][srows].astype(np.int64, copy=False)
    b = b_all[pos]
    max_w = max(req.window_ms for req in requests)
    b_min = int(min(b.min(), sb.min(initial=b.max()))) - max_w
    b_max = int(max(b.max(), sb.max(initial=b.min())))
    nb = (b_max - b_min) // width + 2
    nr = n + 2

    # The queries in probe order (code, bucket, rank): rows of a key together.
    brel = (b - b_min) // width
    rank = pos + 1
    probe = _composite(code, brel, rank, nb, nr, ncodes)
    qo = np.argsort(probe)
    probe, code, brel, rank, pos = probe[qo], code[qo], brel[qo], rank[qo], pos[qo]
    b, seq = b[qo], seq_all[pos]
    cflag, v = contributes[pos], value[pos]
    inorder = _in_order_probed(code, rank, nr)
    fresh = cflag & inorder
    late = np.flatnonzero(cflag & ~inorder)
    nq = len(pos)

    # State rows sorted by (code, bucket); all ingested before any query. Rows outside
    # every window of their key (older than its first query's widest window, or after
    # its last query) are dropped first: they cannot be in any slice.
    s_code = scode[srows]
    s_brel = sb - b_min
    s_brel //= width
    lead = np.ones(nq, dtype=np.bool_)
    np.not_equal(code[1:], code[:-1], out=lead[1:])
    firsts = np.flatnonzero(lead)
    lasts = np.append(firsts[1:] - 1, nq - 1)
    lowest = np.zeros(ncodes, np.int64)
    highest = np.full(ncodes, -1, np.int64)
    lowest[code[firsts]] = brel[firsts] - max_w // width + 1
    highest[code[lasts]] = brel[lasts]
    useful = (s_brel >= lowest[s_code]) & (s_brel <= highest[s_code])
    if not useful.all():
        srows, s_code, s_brel = srows[useful], s_code[useful], s_brel[useful]
    s_comp = _composite(s_code, s_brel, None, nb, nr, ncodes)
    s_order = np.argsort(s_comp)
    s_comp = s_comp[s_order]
    s_rows = srows[s_order]
    s_hi = np.searchsorted(s_comp, probe, side="right")
    f_idx = np.flatnonzero(fresh)
    f_comp = probe[f_idx]
    f_hi = np.cumsum(fresh, dtype=np.int64)
    windows = sorted({req.window_ms for req in requests})
    bounds: dict[int, tuple[I64, I64]] = {}
    for w in windows:
        first = _composite(code, brel - w // width + 1, None, nb, nr, ncodes)
        bounds[w] = (
            np.searchsorted(s_comp, first, side="left"),
            np.searchsorted(f_comp, first, side="left"),
        )

    def state_col(name: str) -> F64:
        out: F64 = cols[name][s_rows].astype(np.float64, copy=False)
        return out

    vf = v[f_idx]
    sums = _Sums(state_col("sum"), state_col("sumsq"), cols["count"][s_rows])
    fsums = _Sums(vf, vf * vf, np.ones(len(vf), np.int64))
    s_at_hi = sums.at(s_hi)
    f_at_hi = fsums.at(f_hi)

    def tables(stat: str, fill: float, op: np.ufunc) -> dict[int, tuple[F64, F64]]:
        """Per window asked for ``stat``: its state part and fresh part, per query."""
        asked = [w for w in windows if any(r.window_ms == w and r.stat == stat for r in requests)]
        if not asked:
            return {}
        s_long = max(int((s_hi - bounds[w][0]).max(initial=0)) for w in asked)
        f_long = max(int((f_hi - bounds[w][1]).max(initial=0)) for w in asked)
        s_table = _SparseTable(state_col(stat), op, fill, s_long)
        f_table = _SparseTable(vf, op, fill, f_long)
        return {
            w: (s_table.query(bounds[w][0], s_hi), f_table.query(bounds[w][1], f_hi)) for w in asked
        }

    extremes = {
        "min": (np.minimum, tables("min", math.inf, np.minimum)),
        "max": (np.maximum, tables("max", -math.inf, np.maximum)),
    }
    pairs = (
        _late_pairs(late, probe, code, brel, b, seq, max_w, width, nb, nr, ncodes)
        if len(late)
        else None
    )

    results: dict[int, dict[str, F64]] = {}
    for w in windows:
        s_lo, f_lo = bounds[w]
        cnt, tot, sq = _between(sums.at(s_lo), s_at_hi)
        f_cnt, f_tot, f_sq = _between(fsums.at(f_lo), f_at_hi)
        acc = {"count": cnt + f_cnt, "sum": tot + f_tot, "sumsq": sq + f_sq}
        for name, (op, parts) in extremes.items():
            if w in parts:
                acc[name] = op(*parts[w])
        if pairs is not None:
            src, dst = pairs
            keep = b[src] > b[dst] - w
            src, dst = src[keep], dst[keep]
            if len(dst):
                vals = v[src]
                acc["count"] += np.bincount(dst, minlength=nq)
                acc["sum"] += np.bincount(dst, weights=vals, minlength=nq)
                acc["sumsq"] += np.bincount(dst, weights=vals * vals, minlength=nq)
                if "min" in acc:
                    np.minimum.at(acc["min"], dst, vals)
                if "max" in acc:
                    np.maximum.at(acc["max"], dst, vals)
        results[w] = acc
    return results, pos


def _state_columns(state: pl.DataFrame) -> dict[str, npt.NDArray[np.generic]]:
    """The numeric state columns as NumPy (views where possible; null min/max as the empty
    value of their stat, a null sum or count as NaN or 0 as a sum over them would give; a
    column the state leaves out as the empty value of its stat)."""
    out: dict[str, npt.NDArray[np.generic]] = {}
    fills = {"min": math.inf, "max": -math.inf, "count": 0}
    for name in ("b", "count", "sum", "sumsq", "min", "max"):
        if name not in state.columns:  # left out of the tail: no request reads it
            out[name] = np.full(state.height, EMPTY[name])
            continue
        col = state[name]
        if col.null_count() and name in fills:
            col = col.fill_null(fills[name])
        out[name] = col.to_numpy()
    return out


def locate(haystack: I64, needles: I64) -> I64:
    """Index in ``haystack`` (unique values, e.g. ``_seq``) of each needle, -1 where absent."""
    if np.array_equal(haystack, needles):  # every row contributes (no where clause)
        return np.arange(len(needles), dtype=np.int64)
    if len(haystack) > 1 and bool((haystack[1:] > haystack[:-1]).all()):
        ordered: I64 | None = None
        hay = haystack
    else:
        ordered = np.argsort(haystack, kind="stable")
        hay = haystack[ordered]
    at = np.searchsorted(hay, needles)
    np.minimum(at, max(len(hay) - 1, 0), out=at)
    found = hay[at] == needles if len(hay) else np.zeros(len(needles), np.bool_)
    idx = at if ordered is None else ordered[at]
    return np.where(found, idx, -1).astype(np.int64)


def _late_pairs(
    late: I64,
    probe: Composite,
    code: I64,
    brel: I64,
    b: I64,
    seq: I64,
    max_w: int,
    width: int,
    nb: int,
    nr: int,
    ncodes: int,
) -> tuple[I64, I64] | None:
    """(late row, query row) pairs where the query sees the late contribution (widest window).

    Rows are in probe order (code, bucket, rank), so the rows of the late row's key with a
    bucket from its own up to its widest window's end are one run, found by two binary
    searches; a pair is kept when the query was ingested with or after the contribution
    and has it in its window.
    """
    reach = -(-max_w // width)  # buckets past the late row's that its window can reach
    start = np.searchsorted(probe, _composite(code[late], brel[late], None, nb, nr, ncodes))
    # Capped below the next key's first bucket (buckets are below nb - 1).
    last = np.minimum(brel[late] + reach, nb - 1)
    end = np.searchsorted(probe, _composite(code[late], last, None, nb, nr, ncodes))
    n = end - start
    total = int(n.sum())
    first = np.cumsum(n) - n
    src = np.repeat(late, n)
    dst = np.repeat(start - first, n) + np.arange(total, dtype=np.int64)
    keep = (seq[src] <= seq[dst]) & (b[src] <= b[dst]) & (b[src] > b[dst] - max_w)
    keep &= code[src] == code[dst]
    if not keep.any():
        return None
    return src[keep], dst[keep]


def _in_order_probed(code: I64, rank: I64, nr: int) -> npt.NDArray[np.bool_]:
    """:func:`_in_order` for rows sorted by (code, bucket, rank), ranks unique and < ``nr``.

    A row is late when an earlier row of its key (smaller rank) has a larger bucket, i.e.
    sorts after it: when the smallest rank after it within its key is below its own. One
    reversed running minimum over ``code * nr + rank`` (a later key never lowers it).
    """
    comp = code * nr + rank
    after = np.empty_like(comp)
    if len(comp):
        after[-1] = np.iinfo(np.int64).max
        after[:-1] = np.minimum.accumulate(comp[::-1])[::-1][1:]
    out: npt.NDArray[np.bool_] = comp < after
    return out


def _in_order(code: npt.NDArray[np.integer], b: I64) -> npt.NDArray[np.bool_]:
    """Per row (in ingestion order): is ``b`` >= the bucket of every earlier row of its key?"""
    codes = np.asarray(code, dtype=np.int64)
    n = len(codes)
    rank = np.arange(1, n + 1, dtype=np.int64)
    order = np.lexsort((rank, np.asarray(b), codes))
    out = np.empty(n, dtype=np.bool_)
    out[order] = _in_order_probed(codes[order], rank[order], n + 2)
    return out


def _composite(
    code: npt.NDArray[np.integer],
    brel: npt.NDArray[np.integer],
    rank: npt.NDArray[np.integer] | None,
    nb: int,
    nr: int,
    ncodes: int | None = None,
) -> Composite:
    # Lexicographic (code, bucket, rank) as one integer (rank None: 0); Python ints if int64
    # would overflow.
    top = ncodes if ncodes is not None else int(code.max(initial=0)) + 1
    if (top + 1) * nb * nr < 2**62:
        out: I64 = code.astype(np.int64) * nb
        out += brel
        out *= nr
        if rank is not None:
            out += rank
        return out
    wide: npt.NDArray[np.object_] = (code.astype(object) * nb + brel.astype(object)) * nr
    if rank is not None:
        wide = wide + rank.astype(object)
    return wide


class _Sums:
    """Prefix sums (count, sum, sum of squares) whose differences keep the accuracy of a
    direct float64 sum.

    ``np.cumsum`` adds left to right, so the rounding error of each step is known exactly
    (TwoSum on consecutive prefixes); their running sum is carried alongside. A range sum
    is the difference of the float64 prefixes plus the difference of the error prefixes: a
    double-double prefix, in float64 vector operations (as fast as a ``longdouble`` cumsum,
    more accurate, and the same on every platform).
    """

    def __init__(self, sums: F64, sumsq: F64, counts: npt.NDArray[Any]) -> None:
        self.columns = (
            _prefix(counts.astype(np.int64, copy=False)),
            *_two_sum_prefix(sums),
            *_two_sum_prefix(sumsq),
        )

    def at(self, idx: I64) -> list[npt.NDArray[Any]]:
        """The prefixes at ``idx`` (one gather per column; reused across windows)."""
        return [c[idx] for c in self.columns]


def _between(lo: list[npt.NDArray[Any]], hi: list[npt.NDArray[Any]]) -> tuple[F64, F64, F64]:
    """(count, sum, sum of squares) between two bounds read by :meth:`_Sums.at`."""
    cnt = (hi[0] - lo[0]).astype(np.float64)
    tot: F64 = (hi[1] - lo[1]) + (hi[2] - lo[2])
    sq: F64 = (hi[3] - lo[3]) + (hi[4] - lo[4])
    return cnt, tot, sq


def _prefix(values: I64) -> I64:
    out = np.zeros(len(values) + 1, np.int64)
    np.cumsum(values, out=out[1:])
    return out


def _two_sum_prefix(x: F64) -> tuple[F64, F64]:
    n = len(x)
    s = np.zeros(n + 1)
    np.cumsum(x, out=s[1:])
    a, t = s[:-1], s[1:]
    bb = t - a
    err = t - bb
    np.subtract(a, err, out=err)
    x_bb = np.subtract(x, bb, out=bb)
    np.add(err, x_bb, out=err)
    e = np.zeros(n + 1)
    np.cumsum(err, out=e[1:])
    return s, e


def _stat(stat: str, cnt: F64, tot: F64, sq: F64, mn: F64 | None, mx: F64 | None) -> F64:
    """The feature value from window sums (the stat's vector form in :mod:`riskstream.core.stats`)."""
    return stats.values(stat, cnt, tot, stats.m2_of_sums_array(cnt, tot, sq), mn, mx)


class _SparseTable:
    """Range min/max over a static array, all vectorized: O(1) per query.

    Level ``k`` holds ``op`` over each run of ``2**k`` values (padded with ``empty`` to one
    2-D array, so a query is two fancy-indexed reads). Built only up to the level of
    ``longest``, the longest range that will be asked: O(n log longest), not O(n log n),
    when ranges are short (most keys: a few rows).
    """

    def __init__(self, values: F64, op: np.ufunc, empty: float, longest: int | None = None) -> None:
        self.op = op
        self.empty = empty
        n = len(values)
        limit = n if longest is None else min(n, longest)
        depth = max(limit, 1).bit_length()
        table = np.empty((depth, max(n, 1)))
        table[0, :n] = values
        for k in range(1, depth):
            half = 1 << (k - 1)
            op(table[k - 1, : n - half], table[k - 1, half:n], out=table[k, : n - half])
            table[k, n - half :] = empty  # past the end: never read by a valid range
        self.table = table

    def query(self, lo: I64, hi: I64) -> F64:
        length = hi - lo
        ok = length > 0
        if not ok.any():
            return np.full(len(lo), self.empty)
        safe = np.where(ok, length, 1)
        k = np.floor(np.log2(safe)).astype(np.int64)
        if int(k.max()) >= len(self.table):
            raise ValueError("range longer than the sparse table was built for")
        flat = self.table.reshape(-1)
        row = k * self.table.shape[1]
        first = np.where(ok, lo, 0)
        a = flat[row + first]
        b = flat[row + np.where(ok, hi - (1 << k), 0)]
        out: F64 = self.op(a, b)
        out[~ok] = self.empty
        return out
