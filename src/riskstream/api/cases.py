"""The case queue: list and filter cases, read one, record analysts' decisions."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from riskstream.api.auth import Principal, masked, require
from riskstream.api.context import ApiContext
from riskstream.api.models import CaseDetail, CasePage, DecisionIn, ErrorBody
from riskstream.core.case import CaseQuery, Decision, StoredCase
from riskstream.core.events import iso, parse_time
from riskstream.errors import UsageError

router = APIRouter(tags=["cases"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    404: {"model": ErrorBody},
    503: {"model": ErrorBody},
}
_TIME_DOC = "event time bound: epoch ms or ISO-8601 (from inclusive, to exclusive)"


def _ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def _time(text: str | None, name: str) -> int | None:
    if text is None or text == "":
        return None
    try:
        value = parse_time(text)
        iso(value)
    except (UsageError, ValueError, OverflowError, OSError):
        raise HTTPException(
            400, f"bad {name} time {text!r}: use epoch ms or ISO-8601 like 2026-01-05T10:00:00Z"
        ) from None
    return value


def _summary(case: StoredCase, ctx: ApiContext, who: Principal) -> dict[str, Any]:
    seq, case_id, rule, action, score = case.seq, case.case_id, case.rule, case.action, case.score
    event_id, event_time, created_ms, status = (
        case.event_id,
        case.event_time,
        case.created_ms,
        case.status,
    )
    data = orjson.loads(case.body) if case.body else {}
    return {
        "case_id": case_id,
        "seq": int(seq),
        "rule": rule,
        "action": action,
        "score": float(score),
        "status": status or "open",
        "event_id": event_id,
        "event_time": int(event_time),
        "event_time_iso": iso(int(event_time)),
        "created_ms": int(created_ms or 0),
        "event": masked(data.get("event") or {}, ctx.sensitive, who),
        "features": data.get("features") or {},
        "pipeline": data.get("pipeline", ctx.spec.name),
    }


@router.get(
    "/v1/cases", response_model=CasePage, responses=_ERRORS, summary="The case queue, newest first"
)
def list_cases(
    request: Request,
    rule: str | None = Query(None, max_length=200),
    action: str | None = Query(None, max_length=20),
    status: str | None = Query(
        None, max_length=40, description="open, confirmed_fraud or false_positive"
    ),
    frm: str | None = Query(None, alias="from", max_length=40, description=_TIME_DOC),
    to: str | None = Query(None, max_length=40, description=_TIME_DOC),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=10_000_000),
    who: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """Cases matching every filter given, newest event first, one page."""
    ctx = _ctx(request)
    query = CaseQuery(
        rule=rule or None,
        action=action or None,
        status=status or None,
        event_time_from=_time(frm, "from"),
        event_time_to=_time(to, "to"),
    )
    with ctx.engine_lock():
        total, rows = ctx.store.find_cases(query, limit, offset)
    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "items": [_summary(r, ctx, who) for r in rows],
    }


def _detail(ctx: ApiContext, case_id: str, who: Principal) -> dict[str, Any]:
    with ctx.engine_lock():
        case = ctx.store.get_case(case_id)
        decisions = ctx.store.decisions(case_id) if case is not None else []
    if case is None:
        raise HTTPException(404, f"no case {case_id!r}")
    out = _summary(case, ctx, who)
    out["decisions"] = [
        {
            "decision": d.decision,
            "note": d.note,
            "analyst": d.analyst,
            "at_ms": d.at_ms,
            "at_iso": iso(d.at_ms),
        }
        for d in decisions
    ]
    spec_rule = ctx.live_spec().rules.get(out["rule"])
    out["rule_spec"] = {
        "name": out["rule"],
        "when": spec_rule.when if spec_rule else None,
        "action": spec_rule.action if spec_rule else None,
        "score": spec_rule.score if spec_rule else None,
        "description": spec_rule.description if spec_rule else None,
    }
    return out


@router.get("/v1/cases/{case_id}", response_model=CaseDetail, responses=_ERRORS, summary="One case")
def get_case(
    request: Request,
    case_id: str = Path(max_length=200),
    who: Principal = Depends(require("read")),
) -> dict[str, Any]:
    """The case, its event (masked), features, rule and decisions."""
    return _detail(_ctx(request), case_id, who)


@router.post(
    "/v1/cases/{case_id}/decision",
    response_model=CaseDetail,
    responses=_ERRORS,
    summary="Record an analyst's decision",
)
def decide_case(
    request: Request,
    body: DecisionIn,
    case_id: str = Path(max_length=200),
    who: Principal = Depends(require("analyst")),
) -> dict[str, Any]:
    """Store the decision; ``confirmed_fraud``/``false_positive`` set the status, ``note`` keeps it."""
    ctx = _ctx(request)
    if ctx.store.read_only:
        raise HTTPException(503, "the store is open read-only; decisions cannot be recorded")
    now = int(time.time() * 1000)
    decision = Decision(decision=body.decision, note=body.note, analyst=body.analyst, at_ms=now)
    # The engine lock keeps this write from racing a checkpoint on the same DuckDB file.
    with ctx.engine_lock():
        found = ctx.store.record_decision(case_id, decision)
    if not found:
        raise HTTPException(404, f"no case {case_id!r}")
    ctx.log(f"case {case_id}: {body.decision} by {body.analyst!r}")
    return _detail(ctx, case_id, who)
