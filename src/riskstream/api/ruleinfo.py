"""Rules: what the spec in force says, how often each fired, and a validator for new conditions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from riskstream.api.auth import Principal, require
from riskstream.api.context import ApiContext
from riskstream.api.models import RulesOut, ValidateIn, ValidateOut
from riskstream.errors import StoreError
from riskstream.rules import ExpressionError, compile_expression
from riskstream.spec.check import feature_tier, rule_context

router = APIRouter(tags=["rules"])


@router.get("/v1/rules", response_model=RulesOut, summary="Rules with their hit counts")
def list_rules(request: Request, _who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Each rule (when, action, score, enabled) with hits: stored + pending, and this run's."""
    ctx: ApiContext = request.app.state.ctx
    try:
        with ctx.engine_lock():
            stored = ctx.store.rule_hits()
            run: dict[str, int] = {}
            pending: dict[str, int] = {}
            if ctx.engine is not None:
                # Hits counted by the engine but not yet written by a checkpoint: pending.
                hits = ctx.engine.rule_hits()
                run, pending = hits.this_run, hits.pending
    except StoreError as exc:
        raise HTTPException(503, str(exc)) from None
    rules = [
        {
            "name": name,
            "when": rule.when,
            "action": rule.action,
            "score": rule.score,
            "enabled": rule.enabled,
            "description": rule.description,
            "hits": stored.get(name, 0) + pending.get(name, 0),
            "hits_this_run": run.get(name, 0),
        }
        for name, rule in ctx.live_spec().rules.items()
    ]
    return {"rules": rules}


@router.post("/v1/rules/validate", response_model=ValidateOut, summary="Check a rule condition")
def validate_rule(
    request: Request, body: ValidateIn, _who: Principal = Depends(require("read"))
) -> dict[str, Any]:
    """Compile ``when`` against the spec's fields, metrics and lists: ``{valid, error?, features, fields}``."""
    ctx: ApiContext = request.app.state.ctx
    spec = ctx.live_spec()
    try:
        compiled = compile_expression(body.when, rule_context(spec))
    except ExpressionError as exc:
        return {"valid": False, "error": f"col {exc.col}: {exc.message}"}
    except (ValueError, TypeError, RecursionError):  # never expected: no internals shown
        return {"valid": False, "error": "col 1: the expression cannot be compiled"}
    for ref in compiled.features:
        try:
            feature_tier(spec, ref.window_ms)
        except ValueError as exc:
            return {"valid": False, "error": f"{ref.name}: {exc}"}
    return {
        "valid": True,
        "features": [f.name for f in compiled.features],
        "fields": list(compiled.fields),
        "lists": list(compiled.lists),
    }
