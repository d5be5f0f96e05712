"""Feature values of single events from the pipeline's feature tails, without Polars per event.

The tails are Polars frames sorted by the key hash ``_h``: an event's key rows are found by
binary search on cached NumPy columns, checked against the key text, and the window's buckets
summed (``math.fsum``, so a sum does not depend on which other keys share a batch) or their
values counted (distinct). Each stat's value comes from its scalar form in :mod:`riskstream.core.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from riskstream.core import keys as corekeys
from riskstream.core import stats
from riskstream.core.keys import KEY
from riskstream.core.stats import CATEGORY
from riskstream.core.tiers import TIER_MS, bucket_start
from riskstream.engine import features as feat
from riskstream.engine.single.view import GroupView

#: A feature's value: an int for count and distinct, a float or None otherwise.
FeatureValue = int | float | None

_F64 = npt.NDArray[np.float64]
_I64A = npt.NDArray[np.int64]


class SortedState:
    """One state frame sorted by key hash, with the NumPy columns the lookups read."""

    def __init__(self, frame: pl.DataFrame, distinct: bool) -> None:
        if corekeys.HASH not in frame.columns or not frame[corekeys.HASH].flags["SORTED_ASC"]:
            frame = corekeys.keyed(frame)
        self.frame = frame
        self.h = frame[corekeys.HASH].to_numpy()
        self.b: _I64A = frame["b"].to_numpy().astype(np.int64, copy=False)
        self.key = frame[KEY]
        if distinct:
            self.cat = frame[CATEGORY]
        else:
            self.count: _I64A = frame["count"].to_numpy().astype(np.int64, copy=False)
            self.sum = _stat_column(frame, "sum")
            self.sumsq = _stat_column(frame, "sumsq")
            self.min = _stat_column(frame, "min")
            self.max = _stat_column(frame, "max")

    def rows(self, lo: int, hi: int, key: str) -> slice | list[int]:
        """Rows in ``[lo, hi)`` (those of the key's hash) whose key really is ``key``."""
        keys = self.key.slice(lo, hi - lo).to_list()
        if keys.count(key) == len(keys):
            return slice(lo, hi)
        return [lo + i for i, k in enumerate(keys) if k == key]


def _stat_column(frame: pl.DataFrame, name: str) -> _F64:
    """A float state column, nulls (and a column the tail leaves out) as its stat's empty value."""
    if name not in frame.columns:
        return np.full(frame.height, feat.EMPTY[name])
    out: _F64 = frame[name].fill_null(feat.EMPTY[name]).to_numpy().astype(np.float64, copy=False)
    return out


class FrameCache:
    """:class:`SortedState` views of the tail frames, kept while the frames are in the state."""

    def __init__(self) -> None:
        self._views: dict[int, tuple[pl.DataFrame, SortedState]] = {}

    def views(self, frames: Sequence[pl.DataFrame], distinct: bool) -> list[SortedState]:
        out: list[SortedState] = []
        for frame in frames:
            if not frame.height:
                continue
            hit = self._views.get(id(frame))
            if hit is None or hit[0] is not frame:
                hit = (frame, SortedState(frame, distinct))
                self._views[id(frame)] = hit
            out.append(hit[1])
        return out

    def prune(self, live: set[int]) -> None:
        for k in [k for k in self._views if k not in live]:
            del self._views[k]


def bucket_of(t: int, tier: str) -> int:
    return bucket_start(t, tier)


@dataclass
class Query:
    """One event's view of one metric: its key (and hash), bucket and own contribution."""

    key: str | None
    b: int
    counts: bool
    v: float | None
    c: str | None


def numeric_features(
    views: list[SortedState],
    hits: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]],
    j: int,
    q: Query,
    avail: int,
    width: int,
    requests: Sequence[feat.Request],
) -> dict[str, FeatureValue]:
    """The numeric features of event ``j`` (one batch row alone: it is in order, rank 1)."""
    out: dict[str, FeatureValue] = {}
    if q.key is None:
        for req in requests:
            out[req.name] = 0 if req.stat == "count" else (0.0 if req.stat == "sum" else None)
        return out
    max_steps = max(req.window_ms // width for req in requests)
    first = max(avail, q.b - (max_steps - 1) * width)
    last = q.b
    # (bucket, count, sum, sumsq, min, max) of the key's state rows in the widest window
    found: list[tuple[int, int, float, float, float, float]] = []
    for view, (los, his) in zip(views, hits, strict=True):
        lo, hi = int(los[j]), int(his[j])
        if hi <= lo:
            continue
        sel = view.rows(lo, hi, q.key)
        found.extend(
            r
            for r in zip(
                view.b[sel].tolist(),
                view.count[sel].tolist(),
                view.sum[sel].tolist(),
                view.sumsq[sel].tolist(),
                view.min[sel].tolist(),
                view.max[sel].tolist(),
                strict=True,
            )
            if first <= r[0] <= last
        )
    own_v = (0.0 if q.v is None else q.v) if q.counts else None
    for req in requests:
        low = max(avail, q.b - (req.window_ms // width - 1) * width)
        rows = [r for r in found if r[0] >= low] if low > first else found
        cnt = sum(r[1] for r in rows)
        sums = [r[2] for r in rows]
        sqs = [r[3] for r in rows]
        mins = [r[4] for r in rows] if req.stat == "min" else []
        maxs = [r[5] for r in rows] if req.stat == "max" else []
        if own_v is not None:
            cnt += 1
            sums.append(own_v)
            sqs.append(own_v * own_v)
            mins.append(own_v)
            maxs.append(own_v)
        out[req.name] = _stat(req.stat, cnt, sums, sqs, mins, maxs)
    return out


def _stat(
    stat: str, cnt: int, sums: list[float], sqs: list[float], mins: list[float], maxs: list[float]
) -> FeatureValue:
    """The feature value from one event's window rows (the stat's scalar form in core.stats)."""
    if stat == "count":
        return cnt
    tot = math.fsum(sums)
    lo = min(mins) if mins else math.nan
    hi = max(maxs) if maxs else math.nan
    p = stats.Partial(
        cnt,
        tot,
        lo if math.isfinite(lo) else None,
        hi if math.isfinite(hi) else None,
        stats.m2_of_sums(cnt, tot, math.fsum(sqs)),
    )
    out = stats.value(stat, p)
    return None if stat in ("min", "max") and out is None else out


def distinct_features(
    views: list[SortedState],
    hits: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]],
    j: int,
    q: Query,
    avail: int,
    requests: Sequence[feat.Request],
) -> dict[str, FeatureValue]:
    """Distinct values of the key in each window (state rows, plus the event's own value)."""
    if q.key is None:
        return {req.name: 0 for req in requests}
    max_w = max(req.window_ms for req in requests)
    seen: list[tuple[int, object]] = []  # (bucket, value)
    for view, (los, his) in zip(views, hits, strict=True):
        lo, hi = int(los[j]), int(his[j])
        if hi <= lo:
            continue
        sel = view.rows(lo, hi, q.key)
        b = view.b[sel].tolist()
        if isinstance(sel, slice):
            cats = view.cat.slice(lo, hi - lo).to_list()
        else:
            cats = view.cat.gather(sel).to_list()
        seen.extend(
            (bj, c)
            for bj, c in zip(b, cats, strict=True)
            if bj >= avail and bj <= q.b and bj > q.b - max_w
        )
    if q.counts:
        seen.append((q.b, q.c))
    return {req.name: len({c for b, c in seen if b > q.b - req.window_ms}) for req in requests}


# ---- 3. the scorer -------------------------------------------------------------------------------


@dataclass
class MetricColumns:
    """What one metric reads of each event of a call (as ``contributions``), and the key hashes."""

    keys: list[str | None]
    ok: list[bool]
    values: list[float | None]
    categories: list[str | None]
    hashes: npt.NDArray[np.uint64]


def feature_values(
    groups: Mapping[tuple[str, str], GroupView],
    available: Mapping[str, int],
    cache: FrameCache,
    per_metric: Mapping[str, MetricColumns],
    times: Sequence[int],
) -> tuple[list[str], list[list[FeatureValue]]]:
    """Per feature (in the batch path's column order) its value for each event."""
    n = len(times)
    names: list[str] = []
    columns: list[list[FeatureValue]] = []
    live: set[int] = set()
    for (metric, tier), group in groups.items():
        mc = per_metric[metric]
        width = TIER_MS[tier]
        avail = available[tier]
        queries = [
            Query(
                mc.keys[j],
                bucket_of(times[j], tier),
                bool(mc.ok[j]),
                mc.values[j],
                mc.categories[j],
            )
            for j in range(n)
        ]
        todo: list[tuple[list[feat.Request], Sequence[pl.DataFrame], bool]] = []
        if group.numeric:
            todo.append((group.numeric, group.tail, False))
        if group.distinct:
            todo.append((group.distinct, group.values, True))
        for requests, frames, distinct in todo:
            live.update(id(f) for f in frames)
            views = cache.views(frames, distinct)
            hits = [
                (
                    np.searchsorted(v.h, mc.hashes, side="left"),
                    np.searchsorted(v.h, mc.hashes, side="right"),
                )
                for v in views
            ]
            values = [
                distinct_features(views, hits, j, queries[j], avail, requests)
                if distinct
                else numeric_features(views, hits, j, queries[j], avail, width, requests)
                for j in range(n)
            ]
            for req in requests:
                names.append(req.name)
                columns.append([v[req.name] for v in values])
    cache.prune(live)
    return names, columns
