"""``POST /v1/decide``: score one event against the live engine state, optionally ingest it.

:class:`DecideEndpoint` is a plain ASGI app, not a FastAPI route: FastAPI's routing and
dependency injection cost as much CPU per request as the handler itself (BENCHMARKS.md,
"Issue 17: decide"). It makes the same checks as the other routes, in the order FastAPI
would (Host guard and API key, ``ingest``, engine state, content type, body size, JSON,
hostile input), and answers errors as ``{"error": "one line"}``. :class:`DecideFirst` hands
it the requests ahead of the router; :data:`documented` is the operation as the OpenAPI
document shows it. A :class:`~riskstream.api.batching.DecideWorker` thread scores the event
(with any other events that arrived meanwhile) under the engine's lock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Query
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from riskstream.api.auth import Principal, admit, masked, require, token_from
from riskstream.api.batching import DecideWorker, Item, Quarantine, Scored, score
from riskstream.api.context import ApiContext
from riskstream.api.errors import one_line
from riskstream.api.metrics import ApiMetrics
from riskstream.api.models import DecideOut, ErrorBody
from riskstream.core.case import Case
from riskstream.engine import guard
from riskstream.errors import StoreError
from riskstream.runners.live import LiveEngine

PATH = "/v1/decide"

#: Request headers the endpoint reads (the first of repeated ones counts, as in Starlette).
_WANTED = frozenset({b"host", b"authorization", b"x-api-key", b"content-type"})
#: ``ingest`` parsed as FastAPI parses a ``bool`` query parameter (``true``/``1``/``yes``...).
_BOOL = TypeAdapter(bool)
_JSON = (b"content-type", b"application/json")

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

#: The operation as documented (``/openapi.json``); :class:`DecideEndpoint` serves it.
documented = APIRouter(tags=["decide"])


@documented.post(
    PATH,
    response_model=DecideOut,
    responses={
        413: {"model": ErrorBody},
        415: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
    openapi_extra={"requestBody": _EVENT_BODY},
    summary="Score one event now (rules fired, action, features)",
)
async def decide(
    ingest: bool = Query(False, description="also ingest the event (cases raised are returned)"),
    who: Principal = Depends(require("decide")),
) -> DecideOut:
    """Evaluate one event against the live state without changing it (or ingest it).

    ``action`` is the strongest fired action (block > review > tag > allow), ``score``
    the highest fired score; a malformed event is 422 with the quarantine reason.
    """
    raise NotImplementedError("documentation only: DecideEndpoint serves this operation")


class DecideEndpoint:
    """``POST /v1/decide`` as an ASGI app over ``ctx`` (its worker starts on first use)."""

    def __init__(self, ctx: ApiContext, metrics: ApiMetrics) -> None:
        self.ctx = ctx
        self.metrics = metrics
        self._worker: DecideWorker | None = None
        #: Requests handed to the worker and not answered yet (touched on the loop only).
        self._handed = 0

    def stop(self) -> None:
        """Stop the decide worker, if it started."""
        if self._worker is not None:
            self._worker.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request; every failure is a one-line JSON error."""
        headers: list[tuple[bytes, bytes]] = []
        try:
            answer = await self._answer(scope, receive)
            if answer is None:  # the client went away before sending its body
                return
            status, out = answer
        except HTTPException as exc:
            status, out = exc.status_code, {"error": one_line(exc.detail)}
            headers = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
        except StoreError as exc:
            status, out = 503, {"error": one_line(exc)}
        except Exception as exc:
            self.ctx.log(f"API error on POST {PATH}: {type(exc).__name__}: {exc}")
            status, out = 500, {"error": "internal error (see the server log)"}
        body = orjson.dumps(out)
        headers += [_JSON, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, Any] | None:
        ctx = self.ctx
        seen: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            if name in _WANTED and name not in seen:
                seen[name] = value.decode("latin-1")
        token = token_from(seen.get(b"authorization"), seen.get(b"x-api-key"))
        who = admit(ctx.keys, seen.get(b"host", ""), token, "decide")
        ingest = _ingest(scope["query_string"])
        engine = ctx.engine
        if engine is None:
            raise HTTPException(503, "no engine is running in this process (read-only API)")
        state = engine.state
        if state == "starting" or (ingest and state != "running"):
            raise HTTPException(503, f"the engine is {state}; try again shortly")
        ctype = seen.get(b"content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            # Also keeps browsers from posting events cross-site without a CORS preflight.
            raise HTTPException(415, "send the event as Content-Type: application/json")
        body = await _body(receive)  # BodyLimit (outside) refuses an oversized one: 413
        if body is None:
            return None
        # Depth first (before any recursive parse), then repeated keys: orjson keeps the last of
        # them, the batch decoder would refuse the line, so the API refuses it too.
        max_depth = ctx.spec.event.max_depth
        if body.count(b"{") + body.count(b"[") > max_depth:
            hostile = guard.inspect_line(body, max_depth)
            if hostile is not None:
                return 422, {"error": hostile[1], "reason": hostile[0]}
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return 422, {"error": f"not JSON: {exc}", "reason": "not_json"}
        if not isinstance(event, dict):
            kind = type(event).__name__
            return 422, {"error": f"not a JSON object but {kind}", "reason": "not_object"}
        hostile = guard.check_one(body, max_depth, event)
        if hostile is not None:
            return 422, {"error": hostile[1], "reason": hostile[0]}
        t0 = time.perf_counter()
        item = Item(event=event, line=orjson.dumps(event), ingest=ingest)
        try:
            scored = self._inline(engine, item)
            if scored is None:
                scored = await self._handed_off(engine, item)
        except Quarantine as q:
            return 422, {"error": q.reason, "reason": q.code}
        self.metrics.observe_decide(time.perf_counter() - t0, scored.body["action"])
        out = scored.body
        if ingest:
            out = {**out, "cases": [case_json(c, ctx.sensitive, who) for c in scored.cases]}
        return 200, out

    def _inline(self, engine: LiveEngine, item: Item) -> Scored | None:
        """Score ``item`` here, on the event loop, when that costs no wait: nothing is queued
        for the worker (arrival order holds) and the engine's lock is free. Saves the thread
        hand-off (two futures, a self-pipe wake-up, GIL switches); None: the worker must."""
        if item.ingest or self._handed:
            return None
        with engine.try_locked() as free:
            if not free:
                return None
            result = score(engine, self.ctx.spec.event.id, [item])[0]
        if isinstance(result, Quarantine):
            raise result
        return result

    async def _handed_off(self, engine: LiveEngine, item: Item) -> Scored:
        """Score ``item`` on the decide worker (batched with what else is queued)."""
        if self._worker is None:
            self._worker = DecideWorker(
                engine, self.ctx.spec.event.id, batching=self.ctx.decide_batching
            )
        self._handed += 1
        try:
            return await asyncio.wrap_future(self._worker.submit(item))
        finally:
            self._handed -= 1


class DecideFirst:
    """Pure ASGI middleware: ``POST /v1/decide`` goes straight to ``endpoint`` (the router has
    the same endpoint; this only skips the routing); any other request goes to ``app``."""

    def __init__(self, app: ASGIApp, endpoint: DecideEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch on path and method."""
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST":
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _ingest(query: bytes) -> bool:
    """``?ingest=``, the last one if repeated; 422 (as FastAPI words it) when not a boolean."""
    value: str | None = None
    if query:
        for name, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if name == "ingest":
                value = v
    if value is None:
        return False
    try:
        return _BOOL.validate_python(value)
    except ValidationError as exc:
        raise HTTPException(422, f"query.ingest: {exc.errors()[0]['msg']}") from None


async def _body(receive: Receive) -> bytes | None:
    """The whole request body; None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


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
