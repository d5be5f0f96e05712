"""``POST /v1/decide``: score one event against the live engine state, optionally ingest it.

The handler only parses the body; a :class:`~riskstream.api.batching.DecideWorker` thread
scores it (with any other events that arrived meanwhile) under the engine's lock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from riskstream.api.auth import Principal, masked, require
from riskstream.api.batching import DecideWorker, Item, Quarantine
from riskstream.api.context import ApiContext
from riskstream.api.models import DecideOut, ErrorBody
from riskstream.core.case import Case
from riskstream.engine import guard
from riskstream.runners.live import LiveEngine

router = APIRouter(tags=["decide"])

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


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def worker_for(request: Request, ctx: ApiContext, engine: LiveEngine) -> DecideWorker:
    """The app's decide worker over ``engine``, started on first use."""
    worker: DecideWorker | None = getattr(request.app.state, "decide_worker", None)
    if worker is None:
        worker = DecideWorker(engine, ctx.spec.event.id, batching=ctx.decide_batching)
        request.app.state.decide_worker = worker
    return worker


@router.post(
    "/v1/decide",
    response_model=DecideOut,
    responses={415: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    openapi_extra={"requestBody": _EVENT_BODY},
    summary="Score one event now (rules fired, action, features)",
)
async def decide(
    request: Request,
    ingest: bool = Query(False, description="also ingest the event (cases raised are returned)"),
    who: Principal = Depends(require("decide")),
) -> Response:
    """Evaluate one event against the live state without changing it (or ingest it).

    ``action`` is the strongest fired action (block > review > tag > allow), ``score``
    the highest fired score; a malformed event is 422 with the quarantine reason.
    """
    ctx: ApiContext = request.app.state.ctx
    engine = ctx.engine
    if engine is None:
        raise HTTPException(503, "no engine is running in this process (read-only API)")
    state = engine.state
    if state == "starting" or (ingest and state != "running"):
        raise HTTPException(503, f"the engine is {state}; try again shortly")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        # Also keeps browsers from posting events cross-site without a CORS preflight.
        raise HTTPException(415, "send the event as Content-Type: application/json")
    body = await request.body()
    # Depth first (before any recursive parse), then repeated keys: orjson keeps the last of
    # them, the batch decoder would refuse the line, so the API refuses it too.
    max_depth = ctx.spec.event.max_depth
    if body.count(b"{") + body.count(b"[") > max_depth:
        hostile = guard.inspect_line(body, max_depth)
        if hostile is not None:
            return _json({"error": hostile[1], "reason": hostile[0]}, 422)
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _json({"error": f"not JSON: {exc}", "reason": "not_json"}, 422)
    if not isinstance(event, dict):
        kind = type(event).__name__
        return _json({"error": f"not a JSON object but {kind}", "reason": "not_object"}, 422)
    hostile = guard.check_one(body, max_depth, event)
    if hostile is not None:
        return _json({"error": hostile[1], "reason": hostile[0]}, 422)
    t0 = time.perf_counter()
    item = Item(event=event, line=orjson.dumps(event), ingest=ingest)
    try:
        scored = await asyncio.wrap_future(worker_for(request, ctx, engine).submit(item))
    except Quarantine as q:
        return _json({"error": q.reason, "reason": q.code}, 422)
    request.app.state.metrics.observe_decide(time.perf_counter() - t0, scored.body["action"])
    out = scored.body
    if ingest:
        out = {**out, "cases": [case_json(c, ctx.sensitive, who) for c in scored.cases]}
    return _json(out)


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
