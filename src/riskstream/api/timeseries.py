"""Metric queries: the stitched range answer (as ``riskstream query``) and a per-step series."""

from __future__ import annotations

from typing import Any

import polars as pl
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from riskstream.api.auth import Principal, masked_categories, masked_key, require, require_dimension
from riskstream.api.context import ApiContext
from riskstream.api.models import ErrorBody, SeriesOut
from riskstream.api.rangeindex import from_index
from riskstream.core.events import iso, parse_time
from riskstream.core.stats import NUMERIC_VALUE_STATS
from riskstream.core.tiers import (
    TIER_MS,
    format_duration,
    grid_offset,
    parse_duration,
)
from riskstream.errors import StoreError, UsageError
from riskstream.query.range import Pending, query_range
from riskstream.spec.model import PipelineSpec

router = APIRouter(tags=["metrics"])

MAX_STEPS = 5000
_NICE_STEPS = (
    "1s",
    "5s",
    "10s",
    "30s",
    "1m",
    "5m",
    "10m",
    "15m",
    "30m",
    "1h",
    "3h",
    "6h",
    "12h",
    "1d",
    "1w",
)
_WEEK = TIER_MS["week"]
_ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}}
_TIME_DOC = "epoch ms or ISO-8601 (UTC if no zone); the range is [from, to)"
#: Times outside years 1970..9999 are refused (they cannot be shown as ISO-8601).
_MAX_MS = 253_402_300_799_999


def _time(text: str, name: str) -> int:
    try:
        value = parse_time(text)
    except UsageError as exc:
        raise HTTPException(400, f"{name}: {exc}") from None
    if not 0 <= value <= _MAX_MS:
        raise HTTPException(400, f"{name}: time {value} is out of range (years 1970..9999)")
    return value


def _metric(spec: PipelineSpec, metric: str, who: Principal) -> None:
    if metric not in spec.metrics:
        known = ", ".join(sorted(spec.metrics)) or "none"
        raise HTTPException(404, f"unknown metric {metric!r} (metrics: {known})")
    require_dimension(metric, spec.metrics[metric].dimension, spec.event.sensitive, who)


def _masked(
    spec: PipelineSpec, metric: str, answer: dict[str, Any], who: Principal
) -> dict[str, Any]:
    """``answer`` with its key and distribution categories masked where they are sensitive."""
    m = spec.metrics[metric]
    hidden = spec.event.sensitive
    answer["key"] = masked_key(str(answer["key"]), m.dimension, hidden, who)
    if "distribution" in answer:
        dist = masked_categories(answer["distribution"], m.value, hidden, who)
        answer["distribution"] = dist
        if isinstance(answer.get("stats"), dict):
            answer["stats"] = {**answer["stats"], "distribution": dist}
    return answer


def _pending(ctx: ApiContext) -> Pending | None:
    """The engine's not-yet-checkpointed buckets (the caller holds the engine lock)."""
    return ctx.engine.pending() if ctx.engine is not None else None


@router.get(
    "/v1/metrics/{metric}/{key}",
    responses=_ERRORS,
    summary="Every stat of a metric over [from, to)",
)
def metric_range(
    request: Request,
    metric: str,
    key: str,
    frm: str = Query(alias="from", max_length=40, description=_TIME_DOC),
    to: str = Query(max_length=40, description=_TIME_DOC),
    who: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """The stitched query, the same JSON as ``riskstream query`` (live, uncheckpointed data included).

    With a live engine it is answered from the engine's in-memory index when it keeps the
    metric (``api/rangeindex.py``), else from the store and the engine's pending buckets.

    A metric keyed by a sensitive field needs the ``sensitive`` scope; distribution
    categories of a sensitive value field are masked without it.
    """
    ctx: ApiContext = request.app.state.ctx
    _metric(ctx.spec, metric, who)
    lo, hi = _time(frm, "from"), _time(to, "to")
    try:
        answer = from_index(ctx, metric, key, lo, hi)
        if answer is None:
            with ctx.engine_lock():
                answer = query_range(
                    ctx.spec, ctx.store, metric, key, lo, hi, pending=_pending(ctx)
                )
        return _masked(ctx.spec, metric, answer, who)
    except (UsageError, ValueError) as exc:
        raise HTTPException(400, str(exc).splitlines()[0]) from None
    except StoreError as exc:
        raise HTTPException(503, str(exc)) from None


def _step(text: str | None, frm: int, to: int, spec: PipelineSpec) -> int:
    finest = TIER_MS[spec.tiers[0]]
    if text:
        try:
            step = TIER_MS[text] if text in TIER_MS else parse_duration(text)
        except ValueError as exc:
            raise HTTPException(400, f"step: {exc}") from None
        if step % finest:
            raise HTTPException(
                400, f"step {text!r} is not a whole number of {spec.tiers[0]}s (the finest tier)"
            )
        return step
    for nice in _NICE_STEPS:
        step = parse_duration(nice)
        if step % finest == 0 and (to - frm) / step <= 200:
            return step
    weeks = -(-(to - frm) // (200 * _WEEK))
    return max(weeks, 1) * _WEEK


def choose_tier(spec: PipelineSpec, step: int, avail: dict[str, int]) -> str:
    """Among tiers whose width divides ``step``: the one retained longest, then the coarsest."""
    fits = [t for t in spec.tiers if step % TIER_MS[t] == 0]
    if not fits:
        raise HTTPException(
            400, f"no tier divides a step of {step} ms (tiers: {', '.join(spec.tiers)})"
        )
    return min(fits, key=lambda t: (avail[t], -TIER_MS[t]))


@router.get(
    "/v1/metrics/{metric}/{key}/series",
    response_model=SeriesOut,
    responses=_ERRORS,
    summary="Count and sum per step over [from, to)",
)
def metric_series(
    request: Request,
    metric: str,
    key: str,
    frm: str = Query(alias="from", max_length=40, description=_TIME_DOC),
    to: str = Query(max_length=40, description=_TIME_DOC),
    step: str | None = Query(
        None,
        max_length=20,
        description="duration (30s 5m 1h 1d 1w) or tier name; default: <= 200 steps",
    ),
    who: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """Buckets of the tier retained longest among those that divide ``step``, summed per step."""
    ctx: ApiContext = request.app.state.ctx
    spec = ctx.spec
    _metric(spec, metric, who)
    lo, hi = _time(frm, "from"), _time(to, "to")
    if hi <= lo:
        raise HTTPException(400, f"empty range: to ({hi}) must be after from ({lo})")
    step_ms = _step(step, lo, hi, spec)
    offset = grid_offset(step_ms)
    grid_from = offset + (lo - offset) // step_ms * step_ms
    grid_to = offset - (-(hi - offset) // step_ms) * step_ms
    n = (grid_to - grid_from) // step_ms
    if n > MAX_STEPS:
        raise HTTPException(400, f"{n} steps requested; at most {MAX_STEPS} (choose a larger step)")
    try:
        with ctx.engine_lock():
            avail = _available(ctx)
            tier = choose_tier(spec, step_ms, avail)
            rows = ctx.store.buckets(metric, tier, key, grid_from, grid_to)
            pending = _pending_tier(ctx, metric, tier, key, grid_from, grid_to)
    except StoreError as exc:
        raise HTTPException(503, str(exc)) from None
    counts = [0] * n
    sums = [0.0] * n
    for frame in (rows, pending):
        if not frame.height:
            continue
        for start, count, total in frame.select("start", "count", "sum").iter_rows():
            i = (int(start) - grid_from) // step_ms
            if 0 <= i < n:
                counts[i] += int(count or 0)
                sums[i] += float(total or 0.0)
    numeric = bool(NUMERIC_VALUE_STATS & set(spec.metrics[metric].stats))
    first = avail[tier]
    buckets = [
        {
            "start": grid_from + i * step_ms,
            "start_iso": iso(grid_from + i * step_ms),
            "count": counts[i],
            "sum": sums[i] if numeric else None,
            "retained": grid_from + i * step_ms >= first,
        }
        for i in range(n)
    ]
    return {
        "metric": metric,
        "key": masked_key(key, spec.metrics[metric].dimension, spec.event.sensitive, who),
        "tier": tier,
        "step": format_duration(step_ms),
        "step_ms": step_ms,
        "from": grid_from,
        "to": grid_to,
        "available_from": max(first, 0),
        "buckets": buckets,
    }


def _available(ctx: ApiContext) -> dict[str, int]:
    if ctx.engine is not None and ctx.engine.watermark() is not None:
        return ctx.engine.available_from()
    meta = ctx.store.meta()
    wm = int(meta["watermark"]) if "watermark" in meta else None
    return ctx.spec.available_from(wm)


def _pending_tier(
    ctx: ApiContext, metric: str, tier: str, key: str, lo: int, hi: int
) -> pl.DataFrame:
    if ctx.engine is None:
        return pl.DataFrame()
    pending = _pending(ctx)
    assert pending is not None
    rows = pending.rows(pending.partials, ctx.spec.tiers, metric, key, [(tier, lo, hi)])
    return rows.select("start", "count", "sum") if rows.height else rows
