"""The case queue: list and filter cases, read one, record analysts' decisions."""

from __future__ import annotations

import time
from typing import Any

import duckdb
import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from riskstream.api.auth import Principal, masked, require
from riskstream.api.context import ApiContext
from riskstream.api.models import CaseDetail, CasePage, DecisionIn, ErrorBody
from riskstream.core.events import iso, parse_time
from riskstream.errors import UsageError

router = APIRouter(tags=["cases"])

_COLUMNS = "seq, case_id, rule, action, score, event_id, event_time, created_ms, status, body"
_STATUS = {"confirmed_fraud": "confirmed_fraud", "false_positive": "false_positive"}
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


def _summary(row: tuple[Any, ...], ctx: ApiContext, who: Principal) -> dict[str, Any]:
    seq, case_id, rule, action, score, event_id, event_time, created_ms, status, body = row
    data = orjson.loads(body) if body else {}
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
    where: list[str] = ["TRUE"]
    args: list[Any] = []
    for column, value in (("rule", rule), ("action", action), ("status", status)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    lo, hi = _time(frm, "from"), _time(to, "to")
    if lo is not None:
        where.append("event_time >= ?")
        args.append(lo)
    if hi is not None:
        where.append("event_time < ?")
        args.append(hi)
    cond = " AND ".join(where)
    with ctx.db() as con:
        total_row = con.execute(f"SELECT count(*) FROM cases WHERE {cond}", args).fetchone()
        rows = con.execute(
            f"SELECT {_COLUMNS} FROM cases WHERE {cond} ORDER BY event_time DESC, seq DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        ).fetchall()
    return {
        "total": int(total_row[0]) if total_row else 0,
        "limit": limit,
        "offset": offset,
        "items": [_summary(r, ctx, who) for r in rows],
    }


def _detail(
    con: duckdb.DuckDBPyConnection, ctx: ApiContext, case_id: str, who: Principal
) -> dict[str, Any]:
    row = con.execute(f"SELECT {_COLUMNS} FROM cases WHERE case_id = ?", [case_id]).fetchone()
    if row is None:
        raise HTTPException(404, f"no case {case_id!r}")
    out = _summary(row, ctx, who)
    decisions = con.execute(
        "SELECT decision, note, analyst, at_ms FROM decisions WHERE case_id = ? ORDER BY at_ms, rowid",
        [case_id],
    ).fetchall()
    out["decisions"] = [
        {"decision": d, "note": n, "analyst": a, "at_ms": int(at), "at_iso": iso(int(at))}
        for d, n, a, at in decisions
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
    ctx = _ctx(request)
    with ctx.db() as con:
        return _detail(con, ctx, case_id, who)


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
    # The runner's lock keeps this write from racing a checkpoint on the same DuckDB file.
    with ctx.db() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            found = con.execute("SELECT 1 FROM cases WHERE case_id = ?", [case_id]).fetchone()
            if found is None:
                raise HTTPException(404, f"no case {case_id!r}")
            con.execute(
                "INSERT INTO decisions VALUES (?, ?, ?, ?, ?)",
                [case_id, body.decision, body.note, body.analyst, now],
            )
            if body.decision in _STATUS:
                con.execute(
                    "UPDATE cases SET status = ? WHERE case_id = ?",
                    [_STATUS[body.decision], case_id],
                )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    ctx.log(f"case {case_id}: {body.decision} by {body.analyst!r}")
    with ctx.db() as con:
        return _detail(con, ctx, case_id, who)
