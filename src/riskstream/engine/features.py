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

from riskstream.engine.decode import SEQ, TIME
from riskstream.engine.tiers import KEY, VALUE, start_expr
from riskstream.spec.durations import TIER_MS

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


HASH = "_h"


def key_hash(keys: pl.Series) -> U64:
    """The 64-bit hash :func:`keyed` stores in ``_h``, as NumPy (nulls get some hash too)."""
    return keys.hash().to_numpy()


def keyed(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with a 64-bit hash of its key (``_h``), sorted by it, for :func:`gather_keys`."""
    if HASH not in frame.columns:
        frame = frame.with_columns(pl.col(KEY).hash().alias(HASH))
    return frame.sort(HASH)


def gather_keys(
    frames: list[pl.DataFrame], keys: pl.Series, schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """The rows of ``frames`` whose key hash is one of ``keys``' hashes, without a scan.

    Each frame is kept sorted by the key's hash (sorted here, once, if it is not). A frame
    not much larger than the set of keys (a batch's feature tail) is matched by a hash
    membership test over its ``_h`` column, all such frames in one filter; a large frame
    (a dictionary of every key ever seen) by binary search, so its cost follows the keys
    and their rows, not its size. A hash collision only brings extra rows, which the exact
    key check in :func:`compute` drops. Rows come frame by frame, each frame's in hash order.
    """
    present = keys.drop_nulls()
    if not frames or not len(present):
        return pl.DataFrame(schema=schema)
    # Coded (not only hashed) here: compute asks for the same keys' codes next, from the cache.
    coded = _code(present)
    wanted = coded.uniq if coded is not None else _unique_sorted(key_hash(present))
    if not len(wanted):
        return pl.DataFrame(schema=schema)
    small: list[pl.DataFrame] = []
    parts: list[pl.DataFrame] = []
    for i, frame in enumerate(frames):
        if not frame.height:
            continue
        if HASH not in frame.columns or not frame[HASH].flags["SORTED_ASC"]:
            frame = frames[i] = keyed(frame)
        if frame.height <= 8 * len(wanted):
            small.append(frame)
            continue
        if small:
            parts.append(_members(small, wanted))
            small = []
        col = frame[HASH].to_numpy()
        lo = np.searchsorted(col, wanted, side="left")
        hi = np.searchsorted(col, wanted, side="right")
        n = hi - lo
        total = int(n.sum())
        if not total:
            continue
        first = np.cumsum(n) - n
        idx = np.repeat(lo - first, n) + np.arange(total, dtype=np.int64)
        parts.append(frame[idx])
    if small:
        parts.append(_members(small, wanted))
    parts = [p for p in parts if p.height]
    if not parts:
        return pl.DataFrame(schema=schema)
    out = pl.concat(parts) if len(parts) > 1 else parts[0]
    return out.drop(HASH)


def _members(frames: list[pl.DataFrame], wanted: U64) -> pl.DataFrame:
    both = pl.concat(frames, rechunk=False) if len(frames) > 1 else frames[0]
    return both.filter(pl.col(HASH).is_in(pl.Series(HASH, wanted).implode()))


def _unique_sorted(values: U64) -> U64:
    # np.unique hashes first (numpy 2.4); a sort and a neighbour test is several times faster.
    s = np.sort(values)
    if len(s) > 1:
        keep = np.ones(len(s), dtype=np.bool_)
        np.not_equal(s[1:], s[:-1], out=keep[1:])
        s = s[keep]
    return s


def state_rows(contrib: pl.DataFrame, tier: str) -> pl.DataFrame:
    """Aggregate contributions into feature-state rows (key, bucket, count, sum, sumsq, min, max)."""
    v = pl.col(VALUE).fill_null(0.0)
    return (
        contrib.lazy()
        .with_columns(start_expr(pl.col(TIME), tier).alias("b"))
        .group_by(KEY, "b")
        .agg(
            pl.len().cast(pl.Int64).alias("count"),
            v.sum().alias("sum"),
            (v * v).sum().alias("sumsq"),
            pl.col(VALUE).min().alias("min"),
            pl.col(VALUE).max().alias("max"),
        )
        .collect()
    )


# ---- key codes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Coded:
    """The codes of one key column: per row, and per code its hash (sorted) and key."""

    keys: pl.Series
    hashes: U64
    codes: I64
    uniq: U64
    rep: pl.Series


#: The last few key columns coded. One batch asks for the same keys several times (every
#: group of a metric's dimension, and gather_keys before compute), so they are sorted once.
#: Entries are immutable; a hit needs equal hashes and equal strings.
_RECENT: list[_Coded] = []
_RECENT_SIZE = 4


def _code(keys: pl.Series) -> _Coded | None:
    """Codes of ``keys`` (no nulls, not empty): the ranks of their 64-bit hashes (one sort);
    each key is compared with its neighbour in that order, and a hash shared by two
    different keys gives None."""
    keys = keys.rechunk()  # gathering from a many-chunk series is several times slower
    h = key_hash(keys)
    for entry in _RECENT:
        if np.array_equal(entry.hashes, h) and entry.keys.equals(keys):
            return entry
    n = len(keys)
    perm = np.argsort(h)
    hs = h[perm]
    new = np.ones(n, dtype=np.bool_)
    np.not_equal(hs[1:], hs[:-1], out=new[1:])
    if not new.all():
        ordered = keys.gather(perm)
        same = (ordered.slice(1) == ordered.slice(0, n - 1)).to_numpy()
        if not (same | new[1:]).all():
            return None
    codes = np.empty(n, np.int64)
    codes[perm] = np.cumsum(new, dtype=np.int64) - 1
    uniq = hs[new]
    for arr in (h, codes, uniq):
        arr.setflags(write=False)
    entry = _Coded(keys, h, codes, uniq, keys.gather(perm[new]))
    _RECENT.insert(0, entry)
    del _RECENT[_RECENT_SIZE:]
    return entry


def key_codes(keys: pl.Series, others: Sequence[pl.Series] = ()) -> tuple[I64, list[I64], int]:
    """Integer codes for ``keys`` (no nulls) and, per series of ``others``, the code of each
    row's key, or -1 when that key (or null) is not among ``keys``. Codes are below the
    returned bound; equal keys get equal codes, different keys different ones. The array
    for ``keys`` may be shared (read-only); those for ``others`` are the caller's.

    The codes are the ranks of the keys' 64-bit hashes, checked against the strings (should
    two different keys share a hash, the codes come from an exact join instead). A row of
    ``others`` is looked up by binary search among those hashes, then compared with the key
    its code stands for, so a row whose hash collides with a key's but whose string differs
    gets -1.
    """
    if not len(keys):
        return np.zeros(0, np.int64), [np.full(len(o), -1, np.int64) for o in others], 0
    coded = _code(keys)
    if coded is None:
        return _exact_codes(keys, others)
    uniq, rep = coded.uniq, coded.rep
    out: list[I64] = []
    for o in others:
        if not len(o):
            out.append(np.zeros(0, np.int64))
            continue
        o = o.rechunk()
        oh = key_hash(o)
        at = np.searchsorted(uniq, oh)
        np.minimum(at, len(uniq) - 1, out=at)
        code = at.astype(np.int64)
        hit = uniq[at] == oh
        if o.null_count():
            hit &= o.is_not_null().to_numpy()
        if hit.all():
            hit = (o == rep.gather(code)).fill_null(False).to_numpy().copy()
        else:
            rows = np.flatnonzero(hit)
            same = (o.gather(rows) == rep.gather(code[rows])).fill_null(False).to_numpy()
            hit[rows[~same]] = False
        code[~hit] = -1
        out.append(code)
    return coded.codes, out, len(uniq)


def _exact_codes(keys: pl.Series, others: Sequence[pl.Series]) -> tuple[I64, list[I64], int]:
    # Only on a 64-bit hash collision among the keys of one call: codes by exact joins.
    lookup = pl.DataFrame({KEY: keys.unique()}).with_row_index("code")

    def codes(s: pl.Series) -> I64:
        joined = pl.DataFrame({KEY: s}).join(lookup, on=KEY, how="left", maintain_order="left")
        return joined["code"].cast(pl.Int64).fill_null(-1).to_numpy().copy()

    return codes(keys), [codes(o) for o in others], lookup.height


# ---- numeric features -----------------------------------------------------------------------


def keyed_rows(keys: pl.Series) -> I64:
    """Positions of the rows whose key is not null (queries without a key get no feature)."""
    if not keys.null_count():
        return np.arange(keys.len(), dtype=np.int64)
    return np.flatnonzero(keys.is_not_null().to_numpy())


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
    value of their stat, a null sum or count as NaN or 0 as a sum over them would give)."""
    out: dict[str, npt.NDArray[np.generic]] = {}
    fills = {"min": math.inf, "max": -math.inf, "count": 0}
    for name in ("b", "count", "sum", "sumsq", "min", "max"):
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
    with np.errstate(divide="ignore", invalid="ignore"):
        if stat == "count":
            return cnt
        if stat == "sum":
            return tot
        if stat == "avg":
            return np.where(cnt > 0, tot / cnt, np.nan)
        if stat in ("var", "stddev"):
            var = np.where(cnt > 0, np.maximum(sq / cnt - (tot / cnt) ** 2, 0.0), np.nan)
            return np.sqrt(var) if stat == "stddev" else var
        if stat == "min" and mn is not None:
            return np.where(np.isfinite(mn), mn, np.nan)
        if stat == "max" and mx is not None:
            return np.where(np.isfinite(mx), mx, np.nan)
    raise ValueError(f"unsupported feature stat {stat!r}")


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
