"""Answer ``metric, key, [from, to)`` from stored buckets via a stitched plan."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from riskstream.core import layout, sketch
from riskstream.core.events import iso, parse_time
from riskstream.core.stats import merged, summary
from riskstream.errors import UsageError
from riskstream.query.stitch import Plan, plan_range
from riskstream.spec.model import PipelineSpec
from riskstream.store.protocol import BucketReader

__all__ = ["Pending", "answer", "check_query", "iso", "parse_time", "query_range"]


@dataclass(frozen=True)
class Pending:
    """Buckets not yet checkpointed (the running engine's), merged into in-process answers."""

    partials: dict[tuple[str, str], pl.DataFrame]
    sketches: dict[tuple[str, str], pl.DataFrame]
    distributions: dict[tuple[str, str], pl.DataFrame]
    #: The roll marks the frames were aggregated under (``core.layout``; empty: none).
    rolled: Mapping[str, int] = field(default_factory=dict)

    def rows(
        self,
        source: dict[tuple[str, str], pl.DataFrame],
        tiers: Sequence[str],
        metric: str,
        key: str,
        segments: Sequence[tuple[str, int, int]],
    ) -> pl.DataFrame:
        """Pending rows of ``metric``/``key`` inside ``segments`` (tier, start, end), read where
        each tier's buckets live (a coarse tier's recent buckets are still finer rows)."""
        conds: dict[str, pl.Expr] = {}
        for src, a, b in layout.physical(segments, layout.ladder_of(tiers), self.rolled):
            c = (pl.col("start") >= a) & (pl.col("start") < b)
            conds[src] = conds[src] | c if src in conds else c
        parts = []
        for src, cond in conds.items():
            frame = source.get((metric, src))
            if frame is not None and frame.height:
                parts.append(frame.filter((pl.col("key") == key) & cond))
        parts = [p for p in parts if p.height]
        return pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()


def query_range(
    spec: PipelineSpec,
    store: BucketReader,
    metric: str,
    key: str,
    frm: int,
    to: int,
    pending: Pending | None = None,
) -> dict[str, Any]:
    """The stitched answer as the JSON-ready dict printed by ``riskstream query``."""
    check_query(spec, metric, frm, to)
    m = spec.metrics[metric]
    plans: list[Plan] = []

    def plan_for(meta: Mapping[str, str]) -> list[tuple[str, int, int]]:
        watermark = int(meta["watermark"]) if "watermark" in meta else None
        plans.append(plan_range(frm, to, spec.tiers, spec.available_from(watermark)))
        return _segs(plans[0])

    # Meta, plan and rows come from one consistent snapshot of the store.
    found = store.key_rows(spec.tiers, metric, key, plan_for, m.stats)
    plan = plans[0]
    stats: dict[str, Any] = {}
    frames = [found.numeric]
    if pending is not None:
        frames.append(pending.rows(pending.partials, spec.tiers, metric, key, _segs(plan)))
    frames = [f.select("count", "sum", "min", "max", "m2") for f in frames if f.height]
    stats.update(_numeric_stats(frames, m.stats))
    if "distinct" in m.stats:
        vals = [v for v, _ in found.sketches]
        blobs = [b for _, b in found.sketches]
        if pending is not None:
            rows = pending.rows(pending.sketches, spec.tiers, metric, key, _segs(plan))
            if rows.height:
                vals += rows["vals"].to_list()
                blobs += rows["hll"].to_list()
        stats["distinct"] = sketch.count_distinct(vals, blobs)
    if "distribution" in m.stats:
        parts = [found.distribution]
        if pending is not None:
            parts.append(pending.rows(pending.distributions, spec.tiers, metric, key, _segs(plan)))
        parts = [p.select("category", "count") for p in parts if p.height]
        total = pl.concat(parts).group_by("category").agg(pl.col("count").sum()) if parts else None
        stats["distribution"] = (
            {}
            if total is None
            else dict(sorted(zip(total["category"], total["count"].to_list(), strict=True)))
        )
    return answer(metric, key, frm, to, plan, stats)


def check_query(spec: PipelineSpec, metric: str, frm: int, to: int) -> None:
    """UsageError for an unknown metric or an empty range."""
    if metric not in spec.metrics:
        known = ", ".join(sorted(spec.metrics)) or "none"
        raise UsageError(f"unknown metric {metric!r} (metrics: {known})")
    if to <= frm:
        raise UsageError(f"empty range: --to ({to}) must be after --from ({frm})")


def answer(
    metric: str, key: str, frm: int, to: int, plan: Plan, stats: dict[str, Any]
) -> dict[str, Any]:
    """The JSON-ready answer of a stitched query (``riskstream query``, the API, the index)."""
    return {
        "metric": metric,
        "key": key,
        "requested": {"from": frm, "to": to, "from_iso": iso(frm), "to_iso": iso(to)},
        "effective": {
            "from": plan.effective_from,
            "to": plan.effective_to,
            "from_iso": iso(plan.effective_from),
            "to_iso": iso(plan.effective_to),
        },
        "resolution": plan.resolution,
        "exact": plan.exact_for(frm, to),
        "buckets": len(plan.segments),
        **stats,
        "stats": stats,
    }


def _segs(plan: Plan) -> list[tuple[str, int, int]]:
    return [(seg.tier, seg.start, seg.end) for seg in plan.segments]


def _numeric_stats(frames: list[pl.DataFrame], wanted: Sequence[str]) -> dict[str, Any]:
    return summary(merged(frames), wanted)
