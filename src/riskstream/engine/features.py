"""Exact sliding-window features, vectorized.

``metric.stat(W)`` at event *e* covers contributions of the same key whose bucket
(at the feature's tier, one second for short windows) lies in ``(b_e - W, b_e]``
and that were ingested before or with *e*.

How (no Python loop per event): the prior state (per key and bucket) and the
batch's *in-order* contributions form one array ``R`` sorted by (key, bucket,
ingestion rank). For any event, the rows it may see form one contiguous slice of
``R`` (proof in ``docs``-style comment below), found with two ``searchsorted``
calls; sums come from prefix sums and min/max from a sparse table. The few *late*
contributions (bucket below an earlier batch row of the same key) are added by a
small join.

Why one slice: a contribution ``x`` is in-order when its bucket is >= the bucket
of every earlier batch row of its key. So an in-order ``x`` ingested after ``e``
has ``b_x >= b_e`` and sorts after ``(b_e, rank_e)``; everything before that
bound was ingested before ``e``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Request:
    """One feature column to compute: its name, stat and window (ms)."""

    name: str
    stat: str
    window_ms: int


HASH = "_h"


def keyed(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with a 64-bit hash of its key (``_h``), sorted by it, for :func:`gather_keys`."""
    if HASH not in frame.columns:
        frame = frame.with_columns(pl.col(KEY).hash().alias(HASH))
    return frame.sort(HASH)


def gather_keys(
    frames: list[pl.DataFrame], keys: pl.Series, schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """The rows of ``frames`` whose key hash is one of ``keys``' hashes, without a scan.

    Each frame is kept sorted by the key's hash (sorted here, once, if it is not), so the
    rows of a key are one slice found by binary search: the cost follows the batch's keys and
    their rows, not the size of the state. A hash collision only brings extra rows, which the
    exact join on the key in :func:`compute` drops.
    """
    wanted = np.unique(keys.drop_nulls().hash().to_numpy())
    parts: list[pl.DataFrame] = []
    for i, frame in enumerate(frames):
        if not frame.height or not len(wanted):
            continue
        if HASH not in frame.columns or not frame[HASH].flags["SORTED_ASC"]:
            frame = frames[i] = keyed(frame)
        col = frame[HASH].to_numpy()
        lo = np.searchsorted(col, wanted, side="left")
        hi = np.searchsorted(col, wanted, side="right")
        n = hi - lo
        total = int(n.sum())
        if not total:
            continue
        first = np.cumsum(n) - n
        idx = np.repeat(lo - first, n) + np.arange(total, dtype=np.int64)
        parts.append(frame.select(pl.exclude(HASH))[idx])
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(parts)


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
    width = TIER_MS[tier]
    q = queries.select(
        pl.col(KEY),
        start_expr(pl.col(TIME), tier).alias("b"),
        pl.col(SEQ),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_pos"),
    )
    qq = q.filter(pl.col(KEY).is_not_null())
    keys = qq.select(pl.col(KEY).unique(maintain_order=True)).with_row_index("code")
    qq = qq.join(keys, on=KEY, how="left").join(
        contrib.select(SEQ, pl.col(VALUE).fill_null(0.0).alias("v"), pl.lit(True).alias("_c")),
        on=SEQ,
        how="left",
    )
    qq = qq.with_columns(
        pl.col("_c").fill_null(False),
        (pl.col("_pos") + 1).alias("rank"),
    )
    qq = qq.sort("_pos")
    qq = qq.with_columns(
        pl.Series("_inorder", _in_order(qq["code"].to_numpy(), qq["b"].to_numpy()))
    )
    st = state.join(keys, on=KEY, how="inner").select(
        "code", "b", pl.lit(0, pl.Int64).alias("rank"), "count", "sum", "sumsq", "min", "max"
    )
    fresh = qq.filter(pl.col("_c") & pl.col("_inorder")).select(
        "code",
        "b",
        "rank",
        pl.lit(1, pl.Int64).alias("count"),
        pl.col("v").alias("sum"),
        (pl.col("v") ** 2).alias("sumsq"),
        pl.col("v").alias("min"),
        pl.col("v").alias("max"),
    )
    r = pl.concat([st.cast({"code": pl.UInt32}), fresh.cast({"code": pl.UInt32})]).sort(
        "code", "b", "rank"
    )
    late = qq.filter(pl.col("_c") & ~pl.col("_inorder")).select("code", "b", SEQ, "v")

    max_w = max(req.window_ms for req in requests)
    lows = [int(x) for x in (r["b"].min(), qq["b"].min()) if isinstance(x, int)]
    highs = [int(x) for x in (r["b"].max(), qq["b"].max()) if isinstance(x, int)]
    b_min = (min(lows) - max_w) if lows else 0
    nb = ((max(highs) - b_min) // width + 2) if highs else 1
    nr = n + 2
    r_comp = _composite(
        r["code"].to_numpy(), (r["b"].to_numpy() - b_min) // width, r["rank"].to_numpy(), nb, nr
    )
    q_code = qq["code"].to_numpy()
    q_brel = (qq["b"].to_numpy() - b_min) // width
    hi = np.searchsorted(
        r_comp, _composite(q_code, q_brel, qq["rank"].to_numpy(), nb, nr), side="right"
    )

    # Extended precision keeps prefix differences at the accuracy of a direct float64 sum.
    prefix = {
        c: np.concatenate([[0.0], np.cumsum(r[c].to_numpy().astype(np.longdouble))])
        for c in ("count", "sum", "sumsq")
    }
    need_min = any(req.stat == "min" for req in requests)
    need_max = any(req.stat == "max" for req in requests)
    mins = _SparseTable(r["min"].fill_null(math.inf).to_numpy(), np.minimum) if need_min else None
    maxs = _SparseTable(r["max"].fill_null(-math.inf).to_numpy(), np.maximum) if need_max else None

    pairs = None
    if late.height:
        pairs = (
            qq.select("code", "b", SEQ, "_pos")
            .join(late, on="code", suffix="_j")
            .filter(
                (pl.col(f"{SEQ}_j") <= pl.col(SEQ))
                & (pl.col("b_j") <= pl.col("b"))
                & (pl.col("b_j") > pl.col("b") - max_w)
            )
        )

    out: dict[str, pl.Series] = {}
    pos = qq["_pos"].to_numpy()
    for req in requests:
        steps = req.window_ms // width
        lo = np.searchsorted(
            r_comp,
            _composite(q_code, q_brel - steps + 1, np.zeros_like(q_brel), nb, nr),
            side="left",
        )
        cnt = (prefix["count"][hi] - prefix["count"][lo]).astype(np.float64)
        tot = (prefix["sum"][hi] - prefix["sum"][lo]).astype(np.float64)
        sq = (prefix["sumsq"][hi] - prefix["sumsq"][lo]).astype(np.float64)
        mn = mins.query(lo, hi, math.inf) if mins is not None and req.stat == "min" else None
        mx = maxs.query(lo, hi, -math.inf) if maxs is not None and req.stat == "max" else None
        if pairs is not None:
            extra = (
                pairs.filter(pl.col("b_j") > pl.col("b") - req.window_ms)
                .group_by("_pos")
                .agg(
                    pl.len().alias("n"),
                    pl.col("v").sum().alias("s"),
                    (pl.col("v") ** 2).sum().alias("q"),
                    pl.col("v").min().alias("lo"),
                    pl.col("v").max().alias("hi"),
                )
            )
            if extra.height:
                idx = np.searchsorted(pos, extra["_pos"].to_numpy())
                np.add.at(cnt, idx, extra["n"].to_numpy().astype(np.float64))
                np.add.at(tot, idx, extra["s"].to_numpy())
                np.add.at(sq, idx, extra["q"].to_numpy())
                if mn is not None:
                    np.minimum.at(mn, idx, extra["lo"].to_numpy())
                if mx is not None:
                    np.maximum.at(mx, idx, extra["hi"].to_numpy())
        values = _stat(req.stat, cnt, tot, sq, mn, mx)
        full = np.full(n, np.nan)
        full[pos] = values
        series = pl.Series(req.name, full, dtype=pl.Float64).fill_nan(None)
        if req.stat in ("count", "sum"):
            series = series.fill_null(0.0)
        if req.stat == "count":
            series = series.cast(pl.Int64)
        out[req.name] = series
    return pl.DataFrame(list(out.values())) if out else pl.DataFrame()


def _in_order(code: npt.NDArray[np.integer], b: I64) -> npt.NDArray[np.bool_]:
    """Per row (in ingestion order): is ``b`` >= the bucket of every earlier row of its key?

    A cumulative max within groups, vectorized: rows stably sorted by key code, then one
    running max over ``code * span + b`` (codes are increasing, so groups do not mix).
    """
    n = len(code)
    out = np.ones(n, dtype=np.bool_)
    if n < 2:
        return out
    order = np.argsort(code, kind="stable")
    c = code[order].astype(np.int64)
    # Dense ranks of the buckets keep ``code * span + rel`` far from int64 overflow.
    rel = np.unique(b[order], return_inverse=True)[1].astype(np.int64).reshape(-1)
    span = int(rel.max()) + 1
    comp = c * span + rel
    run = np.maximum.accumulate(comp)
    same = c[1:] == c[:-1]
    ok = np.ones(n, dtype=np.bool_)
    ok[1:] = ~same | (comp[1:] >= run[:-1])
    out[order] = ok
    return out


def _composite(
    code: npt.NDArray[np.integer],
    brel: npt.NDArray[np.integer],
    rank: npt.NDArray[np.integer],
    nb: int,
    nr: int,
) -> npt.NDArray[np.int64] | npt.NDArray[np.object_]:
    # Lexicographic (code, bucket, rank) as one integer; Python ints if int64 would overflow.
    codes = code.astype(np.int64)
    if (int(codes.max(initial=0)) + 1) * nb * nr < 2**62:
        return (codes * nb + brel.astype(np.int64)) * nr + rank.astype(np.int64)
    wide: npt.NDArray[np.object_] = (
        codes.astype(object) * nb + brel.astype(object)
    ) * nr + rank.astype(object)
    return wide


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
    """Range min/max over a static array: O(n log n) build, O(1) per query, all vectorized."""

    def __init__(self, values: F64, op: np.ufunc) -> None:
        self.op = op
        self.levels = [values.astype(np.float64)]
        k = 1
        while (1 << k) <= len(values):
            prev = self.levels[-1]
            half = 1 << (k - 1)
            self.levels.append(op(prev[:-half], prev[half:]))
            k += 1

    def query(self, lo: I64, hi: I64, empty: float) -> F64:
        length = hi - lo
        out = np.full(len(lo), empty)
        ok = length > 0
        if not ok.any():
            return out
        k = np.zeros(len(lo), dtype=np.int64)
        k[ok] = np.floor(np.log2(length[ok])).astype(np.int64)
        for level in np.unique(k[ok]):
            sel = ok & (k == level)
            table = self.levels[level]
            a = table[lo[sel]]
            b = table[hi[sel] - (1 << level)]
            out[sel] = self.op(a, b)
        return out
