"""``POST /v1/decide``: score one event against the live engine state, optionally ingest it."""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from riskstream.api.auth import Principal, masked, require
from riskstream.api.context import ApiContext, runner_state
from riskstream.api.models import DecideOut, ErrorBody
from riskstream.sinks.case import Case
from riskstream.sources.base import RawBatch

router = APIRouter(tags=["decide"])

#: The strongest action wins.
ACTION_RANK: dict[str, int] = {"allow": 0, "tag": 1, "review": 2, "block": 3}
_ingest_seq = itertools.count(1)

_EVENT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "One event, shaped as the pipeline's source events",
                "additionalProperties": True,
            }
        }
    },
}


class Quarantine(Exception):
    """The event was refused by the decoder."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


@router.post(
    "/v1/decide",
    response_model=DecideOut,
    responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    openapi_extra={"requestBody": _EVENT_BODY},
    summary="Score one event now (rules fired, action, features)",
)
async def decide(
    request: Request,
    ingest: bool = Query(False, description="also ingest the event (cases raised are returned)"),
    who: Principal = Depends(require("decide")),
) -> Response:
    """Evaluate one event against the live state without changing it (or ingest it)."""
    ctx: ApiContext = request.app.state.ctx
    runner = ctx.runner
    if runner is None:
        raise HTTPException(503, "no engine is running in this process (read-only API)")
    state = runner_state(runner)
    if state == "starting" or (ingest and state != "running"):
        raise HTTPException(503, f"the engine is {state}; try again shortly")
    body = await request.body()
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _json({"error": f"not JSON: {exc}", "reason": "not_json"}, 422)
    if not isinstance(event, dict):
        return _json(
            {"error": f"not a JSON object but {type(event).__name__}", "reason": "not_object"}, 422
        )
    line = orjson.dumps(event)
    t0 = time.perf_counter()
    lock = runner.lock
    try:
        # Fast path: the engine is idle, so score inline; else wait for it off the event loop.
        if lock.acquire(blocking=False):
            try:
                out = _score(ctx, line, ingest, who)
            finally:
                lock.release()
        else:
            out = await run_in_threadpool(_score_locked, ctx, line, ingest, who)
    except Quarantine as q:
        return _json({"error": q.reason, "reason": q.code}, 422)
    observe = getattr(request.app.state, "observe_decide", None)
    if observe is not None:
        observe(time.perf_counter() - t0, out["action"])
    return _json(out)


def _score_locked(ctx: ApiContext, line: bytes, ingest: bool, who: Principal) -> dict[str, Any]:
    assert ctx.runner is not None
    with ctx.runner.lock:
        return _score(ctx, line, ingest, who)


def _score(ctx: ApiContext, line: bytes, ingest: bool, who: Principal) -> dict[str, Any]:
    """Evaluate (and ingest) one encoded event; the caller holds the runner lock."""
    runner = ctx.runner
    assert runner is not None
    pipeline = runner.pipeline
    frame, quarantined, fired = pipeline.evaluate(RawBatch(lines=[line], positions=["api"]))
    if quarantined or not frame.height:
        q = quarantined[0] if quarantined else None
        raise Quarantine(q.code if q else "rejected", q.reason if q else "event refused")
    rules_fired: list[dict[str, Any]] = []
    names: list[str] = []
    for rule in pipeline.rules:
        for ref in rule.compiled.features:
            if ref.name not in names:
                names.append(ref.name)
        hit = fired.get(rule.name)
        if hit is not None and hit[0]:
            rules_fired.append(
                {"rule": rule.name, "action": rule.action, "score": float(rule.score)}
            )
    rules_fired.sort(key=lambda r: (-ACTION_RANK.get(r["action"], 0), -r["score"], r["rule"]))
    present = [n for n in names if n in frame.columns]
    features = frame.select(present).row(0, named=True) if present else {}
    id_field = ctx.spec.event.id
    event_id = frame[id_field][0] if id_field and id_field in frame.columns else None
    out: dict[str, Any] = {
        "event_id": None if event_id is None else str(event_id),
        "action": rules_fired[0]["action"] if rules_fired else "allow",
        "score": max((r["score"] for r in rules_fired), default=0.0),
        "rules_fired": rules_fired,
        "features": features,
        "ingested": False,
    }
    if ingest:
        position = f"api@{time.time_ns()}-{next(_ingest_seq)}"
        cases = runner.ingest_api(RawBatch(lines=[line], positions=[position]))
        out["ingested"] = True
        out["cases"] = [case_json(c, ctx.sensitive, who) for c in cases]
    return out


def case_json(case: Case, sensitive: list[str], who: Principal) -> dict[str, Any]:
    """A raised case as JSON, sensitive fields masked for ``who``."""
    return {
        "case_id": case.case_id,
        "rule": case.rule,
        "action": case.action,
        "score": case.score,
        "event_id": case.event_id,
        "event_time": case.event_time,
        "features": case.features,
        "event": masked(case.event, sensitive, who),
    }
