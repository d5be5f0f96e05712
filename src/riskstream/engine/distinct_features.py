"""Exact sliding distinct counts (``card_merchants.distinct(10m)``), vectorized in NumPy.

Same window definition as :mod:`riskstream.engine.features`. Distinct is not
subtractable, so each event is paired with the values its key saw in the window
(prior state rows plus batch rows ingested before or with it) and the distinct
values are counted per event. Keys and values are mapped to integer codes
(:func:`riskstream.engine.features.key_codes`, exact); the rows of a key sorted by
bucket make the rows of an event's widest window one slice found by binary search,
so the pairs are only those inside the window (not every row of the key). One sort
of (event, value) pairs keeps, per pair, the latest bucket the value was seen in:
the value counts for a window when that bucket is inside it, for every window at
once. Cost grows with values per key per window, which is small for the
card/person dimensions these rules are written on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from riskstream.core.keys import KEY, key_codes, keyed_rows
from riskstream.core.stats import CATEGORY
from riskstream.core.tiers import start_expr
from riskstream.engine.decode import SEQ, TIME
from riskstream.engine.features import Request, locate

VALUE_STATE_SCHEMA: dict[str, pl.DataType] = {
    KEY: pl.String(),
    "b": pl.Int64(),
    CATEGORY: pl.String(),
}

I64 = npt.NDArray[np.int64]


def value_rows(contrib: pl.DataFrame, tier: str) -> pl.DataFrame:
    """The distinct (key, bucket, value) rows of a batch, kept as state for later windows."""
    return (
        contrib.lazy()
        .select(pl.col(KEY), start_expr(pl.col(TIME), tier).alias("b"), pl.col(CATEGORY))
        .unique()
        .collect()
    )


def compute_distinct(
    queries: pl.DataFrame,
    contrib: pl.DataFrame,
    state: pl.DataFrame,
    tier: str,
    requests: Sequence[Request],
) -> pl.DataFrame:
    """One column per request: distinct values of the same key in the window, per query row."""
    n = queries.height
    if not requests:
        return pl.DataFrame()
    pos = keyed_rows(queries[KEY])
    counts = _counts(queries, contrib, state, tier, requests, pos) if len(pos) else {}
    out: list[pl.Series] = []
    for req in requests:
        full = np.zeros(n, np.int64)
        if req.window_ms in counts:
            full[pos] = counts[req.window_ms]
        out.append(pl.Series(req.name, full, dtype=pl.Int64))
    return pl.DataFrame(out)


def _counts(
    queries: pl.DataFrame,
    contrib: pl.DataFrame,
    state: pl.DataFrame,
    tier: str,
    requests: Sequence[Request],
    pos: I64,
) -> dict[int, I64]:
    """Per distinct window (ms): the distinct count per query row with a key (rows ``pos``)."""
    nv = len(pos)
    keycol = queries[KEY]
    qkeys = keycol if nv == queries.height else keycol.gather(pos)
    seq_all = queries[SEQ].to_numpy().astype(np.int64)
    # A contribution is (in the pipeline, always) a query row of the same _seq and key: it
    # takes that row's code; any other goes through the hash lookup.
    ckeys = contrib[KEY].rechunk()
    at = locate(seq_all, contrib[SEQ].to_numpy().astype(np.int64))
    if len(at) == queries.height and np.array_equal(at, np.arange(len(at))):
        same = (ckeys == keycol).fill_null(False).to_numpy().copy()
    else:
        found = np.flatnonzero(at >= 0)
        same = np.zeros(len(at), dtype=np.bool_)
        if len(found):
            same[found] = (
                (ckeys.gather(found) == keycol.gather(at[found])).fill_null(False).to_numpy()
            )
    other = np.flatnonzero(~same)
    state = state.rechunk()  # strings are gathered from it below
    code, (scode, ocode), _ = key_codes(qkeys, [state[KEY], ckeys.gather(other)])
    row_code = np.full(queries.height, -1, np.int64)
    row_code[pos] = code
    ccode = np.full(len(at), -1, np.int64)
    ccode[same] = row_code[at[same]]
    ccode[other] = ocode
    qb = _buckets(queries, tier)[pos]
    qseq = seq_all[pos]

    srows = np.flatnonzero(scode >= 0)
    crows = np.flatnonzero(ccode >= 0)
    j_code = np.concatenate([scode[srows], ccode[crows]])
    j_b = np.concatenate(
        [state["b"].to_numpy().astype(np.int64)[srows], _buckets(contrib, tier)[crows]]
    )
    j_s = np.concatenate(
        [np.full(len(srows), -1, np.int64), contrib[SEQ].to_numpy().astype(np.int64)[crows]]
    )
    # The batch's values first: often a column another group just coded (a cache hit).
    c_val, s_val, nvals = _value_codes(contrib[CATEGORY], state[CATEGORY])
    j_val = np.concatenate([s_val[srows], c_val[crows]])
    windows = sorted({r.window_ms for r in requests})
    empty = {w: np.zeros(nv, np.int64) for w in windows}
    if not len(j_code):
        return empty
    max_w = windows[-1]

    # Seen rows sorted by (key code, bucket); an event's widest window is one slice.
    low = min(int(j_b.min()), int(qb.min()) - max_w)
    span = max(int(j_b.max()), int(qb.max())) - low + 1
    ncodes = int(max(code.max(), j_code.max())) + 1
    if ncodes * span < 2**62:
        seen: npt.NDArray[np.int64] | npt.NDArray[np.object_] = j_code * span + (j_b - low)
        q_hi = code * span + (qb - low)
        q_lo = q_hi - max_w
    else:
        seen = j_code.astype(object) * span + (j_b - low).astype(object)
        q_hi = code.astype(object) * span + (qb - low).astype(object)
        q_lo = q_hi - max_w
    order = np.argsort(seen)
    seen_sorted = seen[order]
    # Sorted probes: binary searches in order are several times faster than scattered ones.
    qo = np.argsort(q_hi)
    lo = np.searchsorted(seen_sorted, q_lo[qo], side="right")
    hi = np.searchsorted(seen_sorted, q_hi[qo], side="right")
    width = hi - lo
    total = int(width.sum())
    if not total:
        return empty
    first = np.cumsum(width) - width
    src = order[np.repeat(lo - first, width) + np.arange(total, dtype=np.int64)]
    dst = np.repeat(qo, width)
    keep = j_s[src] <= qseq[dst]
    src, dst = src[keep], dst[keep]
    if not len(dst):
        return empty

    # Per (event, value): the latest bucket the event saw the value in.
    vals = j_val[src]
    if nv * nvals < 2**62:
        pair = dst * nvals + vals
        by_pair = np.argsort(pair)
        ps = pair[by_pair]
        new = np.ones(len(ps), np.bool_)
        new[1:] = ps[1:] != ps[:-1]
    else:
        by_pair = np.lexsort((vals, dst))
        d, v = dst[by_pair], vals[by_pair]
        new = np.ones(len(d), np.bool_)
        new[1:] = (d[1:] != d[:-1]) | (v[1:] != v[:-1])
    starts = np.flatnonzero(new)
    latest = np.maximum.reduceat(j_b[src][by_pair], starts)
    event = dst[by_pair][starts]
    return {
        w: np.bincount(event[latest > qb[event] - w], minlength=nv).astype(np.int64)
        for w in windows
    }


def _buckets(frame: pl.DataFrame, tier: str) -> I64:
    out: I64 = frame.select(start_expr(pl.col(TIME), tier))[TIME].to_numpy().astype(np.int64)
    return out


def _value_codes(primary: pl.Series, secondary: pl.Series) -> tuple[I64, I64, int]:
    """Exact codes of two value columns in one code space, and its size; null is one value
    of its own (as ``n_unique`` counts it). ``primary`` is coded, ``secondary`` looked up in
    it, and only its values absent from ``primary`` coded anew."""

    def present(s: pl.Series) -> tuple[pl.Series, npt.NDArray[np.bool_] | None]:
        if not s.null_count():
            return s, None
        mask = s.is_not_null().to_numpy()
        return s.filter(pl.Series(mask)), mask

    p_vals, p_mask = present(primary)
    s_vals, s_mask = present(secondary)
    p_inner, (s_inner,), bound = key_codes(p_vals, [s_vals])
    miss = np.flatnonzero(s_inner < 0)
    if len(miss):
        extra, _, n_extra = key_codes(s_vals.gather(miss))
        s_inner[miss] = extra + bound
        bound += n_extra
    null_code = bound

    def spread(inner: I64, mask: npt.NDArray[np.bool_] | None, n: int) -> I64:
        out = np.full(n, null_code, np.int64)
        if mask is None:
            out[:] = inner
        else:
            out[mask] = inner
        return out

    return (
        spread(p_inner, p_mask, len(primary)),
        spread(s_inner, s_mask, len(secondary)),
        bound + 1,
    )
