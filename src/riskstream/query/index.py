"""The in-memory range index of the serving process: stitched answers without the store.

Why it is exact: a stitched plan covers ``[effective_from, effective_to)`` with whole
buckets, and every tier is complete wherever the plan reads it (``core.layout``), so the
answer is the merge of the key's partials whose bucket lies in that range, whatever tier
holds them -- as long as no kept bucket straddles an edge. The index keeps each bucket at
the finest tier still available at its start (``query.stitch``: an edge is always a
boundary of that tier or a coarser one), so one binary search per end finds the answer.

What it keeps: per numeric metric (stats within count/sum/avg/min/max/var/stddev; others
fall back to the store), the finest tier's partials of every batch the engine applies
(:meth:`RangeIndex.batch`, on the engine thread under its lock), in key-sorted runs
(``query.runs``) merged as they grow (a run at most an eighth the size of the run
below it stays separate, so there are O(log n) runs); a merge re-buckets what fell out of a
tier's retention into the next coarser tier and drops what no tier retains. The plan uses
the watermark of the last checkpoint, as ``query_range`` on the store does. Readers take
the current immutable snapshot without a lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

import numpy as np
import polars as pl

from riskstream.core.layout import ALWAYS
from riskstream.core.stats import NUMERIC_STATS, Partial, partial_aggs, summary
from riskstream.core.tiers import TIER_MS, ladder_of, start_expr
from riskstream.query import runs as rn
from riskstream.query.range import Pending, answer, check_query
from riskstream.query.stitch import plan_range
from riskstream.spec.model import PipelineSpec

__all__ = ["BucketSource", "RangeIndex", "indexable"]

#: A merge happens when the run below is at most this many times the size of the new one.
_FANOUT: Final[int] = 8
_TIME: Final[str] = "_t"
_VALUE: Final[str] = "v"


class BucketSource(Protocol):
    """The store reads that load the index (a :class:`~riskstream.store.protocol.Store`)."""

    def meta(self) -> dict[str, str]:
        """All meta keys (the watermark)."""
        ...

    def buckets(
        self, metric: str, tier: str, key: str | None, start_from: int, start_to: int
    ) -> pl.DataFrame:
        """Numeric partials of ``metric`` at ``tier`` with start in ``[start_from, start_to)``."""
        ...


def indexable(spec: PipelineSpec) -> list[str]:
    """The metrics the index can answer: those whose stats are all numeric."""
    return [name for name, m in spec.metrics.items() if set(m.stats) <= NUMERIC_STATS]


@dataclass(frozen=True)
class _Snapshot:
    """What readers see: the plan's watermark, its availability and the runs per metric."""

    watermark: int | None
    avail: dict[str, int]
    runs: Mapping[str, tuple[rn.Run, ...]]


class RangeIndex:
    """Stitched range answers from memory for ``metrics`` (default: every indexable one)."""

    def __init__(self, spec: PipelineSpec, metrics: Sequence[str] | None = None) -> None:
        able = indexable(spec)
        wanted = able if metrics is None else list(metrics)
        bad = [m for m in wanted if m not in able]
        if bad:
            raise ValueError(
                f"cannot index {', '.join(bad)}: only metrics with numeric stats only "
                f"({', '.join(able) or 'none in this spec'})"
            )
        self.spec = spec
        self.metrics: frozenset[str] = frozenset(wanted)
        self._ladder = ladder_of(spec.tiers)
        self._width = TIER_MS[self._ladder[0]]
        self._snap: _Snapshot | None = None
        #: Why the index gave up (it then answers nothing until loaded again), or None.
        self.error: str | None = None

    # ---- state ---------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether the index holds the engine's state (else every answer is None)."""
        return self._snap is not None

    def nbytes(self) -> int:
        """Bytes held by the runs' arrays."""
        snap = self._snap
        if snap is None:
            return 0
        return sum(r.nbytes for runs in snap.runs.values() for r in runs)

    def runs(self, metric: str) -> int:
        """How many runs ``metric`` has now (0 when not loaded)."""
        snap = self._snap
        return len(snap.runs.get(metric, ())) if snap is not None else 0

    def load(self, store: BucketSource, pending: Pending | None) -> None:
        """Load from the store and the engine's pending buckets (the caller holds the engine
        still, with no checkpoint in flight: ``LiveEngine.settled``)."""
        meta = store.meta()
        wm = int(meta["watermark"]) if "watermark" in meta else None
        avail = self.spec.available_from(wm)
        finest = self._ladder[0]
        loaded: dict[str, tuple[rn.Run, ...]] = {}
        for metric in sorted(self.metrics):
            parts = []
            for i, tier in enumerate(self._ladder):
                # Each tier from its availability to where the next finer tier takes over.
                lo, hi = avail[tier], avail[self._ladder[i - 1]] if i else ALWAYS
                if lo < hi:
                    parts.append(store.buckets(metric, tier, None, lo, hi))
            if pending is not None:
                frame = pending.partials.get((metric, finest))
                if frame is not None:
                    parts.append(frame)
            frame = _keyed(pl.concat([p.select(rn.COLUMNS) for p in parts], how="vertical_relaxed"))
            loaded[metric] = (rn.build(rn.merge(frame), self._width),)
        self.error = None
        self._snap = _Snapshot(wm, avail, loaded)

    # ---- the engine's calls (engine thread, engine lock held) ------------------------------

    def batch(self, contributions: Mapping[str, pl.DataFrame]) -> None:
        """Add a batch's contributions (finest-tier partials, a new run per metric)."""
        snap = self._snap
        if snap is None:
            return
        try:
            runs = dict(snap.runs)
            for metric in self.metrics:
                contrib = contributions.get(metric)
                if contrib is None or not contrib.height:
                    continue
                parts = (
                    contrib.lazy()
                    .group_by("key", start_expr(pl.col(_TIME), self._ladder[0]).alias("start"))
                    .agg(*partial_aggs(pl.col(_VALUE)))
                    .collect()
                )
                frame = _keyed(parts.select(rn.COLUMNS)).sort("key", "start")
                runs[metric] = self._settle([*runs[metric], rn.build(frame, self._width)], snap)
            self._snap = replace(snap, runs=runs)
        except Exception as exc:  # never stop the engine over its index: the store answers
            self._give_up(exc)

    def checkpointed(self, watermark: int | None) -> None:
        """The store's watermark once this checkpoint is written: the plan follows it."""
        snap = self._snap
        if snap is None or watermark is None or watermark == snap.watermark:
            return
        self._snap = replace(snap, watermark=watermark, avail=self.spec.available_from(watermark))

    def reset(self) -> None:
        """Forget everything (the engine reloaded its state: load again)."""
        self._snap = None

    def _give_up(self, exc: Exception) -> None:
        self._snap = None
        self.error = f"{type(exc).__name__}: {exc}".splitlines()[0]

    def _settle(self, runs: list[rn.Run], snap: _Snapshot) -> tuple[rn.Run, ...]:
        """Merge the newest runs while the one below is not much larger (O(log n) runs)."""
        while len(runs) >= 2 and runs[-2].size <= _FANOUT * runs[-1].size:
            frame = self._coarsened(rn.rows(runs[-2:]), snap.avail)
            runs[-2:] = [rn.build(rn.merge(frame), self._width)]
        return tuple(runs)

    def _coarsened(self, frame: pl.DataFrame, avail: Mapping[str, int]) -> pl.DataFrame:
        """Each bucket re-bucketed to the finest tier available at its start; older dropped."""
        start = pl.col("start")
        expr: Any = pl.when(start >= avail[self._ladder[0]]).then(start)
        for tier in self._ladder[1:]:
            expr = expr.when(start >= avail[tier]).then(start_expr(start, tier))
        return frame.with_columns(expr.otherwise(None).alias("start")).drop_nulls("start")

    # ---- the reader's call (any thread, no lock) ------------------------------------------

    def answer(self, metric: str, key: str, frm: int, to: int) -> dict[str, Any] | None:
        """``query_range``'s answer from memory, or None when the index cannot give it (not
        loaded, a metric it does not keep, a key with a NUL character)."""
        snap = self._snap
        if snap is None or metric not in self.metrics or "\x00" in key:
            return None
        check_query(self.spec, metric, frm, to)
        plan = plan_range(frm, to, self.spec.tiers, snap.avail)
        kb = key.encode()
        found = [
            s
            for run in snap.runs[metric]
            if (s := run.slices(kb, plan.effective_from, plan.effective_to)) is not None
        ]
        stats = summary(_merged(found), self.spec.metrics[metric].stats)
        return answer(metric, key, frm, to, plan, dict(stats))


def _keyed(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with a Binary key, without keys holding NUL (the runs' bytes cannot)."""
    key = pl.col("key").cast(pl.Binary)
    return frame.with_columns(key).filter(~pl.col("key").bin.contains(b"\x00"))


def _merged(found: list[rn.Slices]) -> Partial:
    """All partials in ``found`` as one (the merge of ``core.stats``, in NumPy)."""
    if not found:
        return Partial()
    one = np.concatenate([f.values for f in found])
    cnt = np.concatenate([f.count for f in found]).astype(np.float64)
    tot = np.concatenate([f.sum for f in found])
    n = len(one) + int(cnt.sum())
    total = float(one.sum()) + float(tot.sum())
    mean = total / n
    m2s = np.concatenate([f.m2 for f in found])
    m2 = float(((one - mean) ** 2).sum()) + float((m2s + cnt * (tot / cnt - mean) ** 2).sum())
    lo = np.fmin.reduce(np.concatenate([one, *(f.min for f in found)]))
    hi = np.fmax.reduce(np.concatenate([one, *(f.max for f in found)]))
    return Partial(
        n, total, None if np.isnan(lo) else float(lo), None if np.isnan(hi) else float(hi), m2
    )
