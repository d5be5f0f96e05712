"""The FastAPI application: routes, auth, errors as ``{"error": "one line"}``, the web UI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from riskstream import __version__
from riskstream.api import cases, decide, lab, modelview, ruleinfo, timeseries
from riskstream.api.auth import SECURITY_SCHEMES, Principal, require
from riskstream.api.context import ApiContext, engine_state
from riskstream.api.errors import one_line
from riskstream.api.limits import BodyLimit
from riskstream.api.metrics import CONTENT_TYPE, ApiMetrics
from riskstream.api.models import Health, PipelineInfo
from riskstream.errors import StoreError

STATIC = Path(__file__).with_name("static")

_DESCRIPTION = """\
HTTP API of a riskstream pipeline: synchronous decisions, the case queue, metric
queries, rules, health and Prometheus metrics.

Send the API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Scopes:
`read` (cases, metrics, rules, this document), `decide` (`POST /v1/decide`),
`analyst` (decisions on cases), `sensitive` (unmasked sensitive event fields).
Errors are `{"error": "one line"}`. Times: epoch milliseconds or ISO-8601; ranges are `[from, to)`.
"""


def create_app(ctx: ApiContext) -> FastAPI:
    """The API over ``ctx`` (no server: see :func:`riskstream.api.server.start_background`)."""
    metrics = ApiMetrics(ctx)
    decider = decide.DecideEndpoint(ctx, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics.start()
        try:
            yield
        finally:
            metrics.stop()
            decider.stop()

    app = FastAPI(
        title="riskstream",
        version=__version__,
        description=_DESCRIPTION,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # No OpenTelemetry here (Prometheus is at /metrics): FastAPI's per-request check for
        # configured providers took ~10% of the event loop's time on decide (cProfile).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.ctx = ctx
    app.state.metrics = metrics
    # POST /v1/decide past the router (the hot path); the last middleware added is the outer one.
    app.add_middleware(decide.DecideFirst, endpoint=decider)
    # Request bodies are capped while they stream in (413), like source lines (event.max_bytes).
    app.add_middleware(BodyLimit, max_bytes=ctx.spec.event.max_bytes)
    _errors(app, ctx)
    app.router.routes.append(Route(decide.PATH, decider, methods=["POST"], include_in_schema=False))
    for module in (cases, timeseries, ruleinfo, lab, modelview):
        app.include_router(module.router)
    _operations(app, ctx, metrics)
    _ui(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


_PUBLIC = {"/healthz", "/readyz"}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated document plus the API-key security schemes on every non-public operation."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=[*app.routes, *decide.documented.routes],
        )
        doc.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        for path, ops in doc.get("paths", {}).items():
            for op in ops.values():
                if path not in _PUBLIC:
                    op["security"] = [{"bearer": []}, {"apiKey": []}]
                    op.setdefault("responses", {}).setdefault("401", _AUTH_ERROR)
                    op["responses"].setdefault("403", _AUTH_ERROR)
        app.openapi_schema = doc
    return app.openapi_schema


_AUTH_ERROR = {
    "description": "Missing or unknown API key (401) or scope missing (403)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


def _errors(app: FastAPI, ctx: ApiContext) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return _error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        return _error(503, str(exc))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        ctx.log(f"API error on {request.method} {request.url.path}: {type(exc).__name__}: {exc}")
        return _error(500, "internal error (see the server log)")


def _operations(app: FastAPI, ctx: ApiContext, metrics: ApiMetrics) -> None:
    @app.get(
        "/healthz",
        response_model=Health,
        response_model_exclude_none=True,
        tags=["operations"],
        summary="Liveness (always 200)",
    )
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["operations"],
        responses={503: {"model": Health}},
        summary="Readiness: the store opens and the runner (if any) is running",
    )
    def readyz() -> Any:
        state = engine_state(ctx.engine)
        if state == "starting":
            return JSONResponse(
                {"status": "unavailable", "runner": state, "detail": "runner starting"},
                status_code=503,
            )
        try:
            with ctx.engine_lock():
                ctx.store.ping()
        except (StoreError, StarletteHTTPException) as exc:
            return JSONResponse(
                {"status": "unavailable", "runner": state, "detail": str(exc)}, status_code=503
            )
        if state not in ("none", "running"):
            return JSONResponse(
                {"status": "unavailable", "runner": state, "detail": f"runner {state}"},
                status_code=503,
            )
        return {"status": "ready", "runner": state}

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
    )
    def prometheus(_who: Principal = Depends(require("read"))) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get(
        "/v1/pipeline", response_model=PipelineInfo, tags=["operations"], summary="The pipeline"
    )
    def pipeline(_who: Principal = Depends(require("read"))) -> dict[str, Any]:
        spec = ctx.live_spec()
        watermark = ctx.engine.watermark() if ctx.engine is not None else None
        if watermark is None:
            with ctx.engine_lock():
                meta = ctx.store.meta()
            watermark = int(meta["watermark"]) if "watermark" in meta else None
        return {
            "name": spec.name,
            "tiers": list(spec.tiers),
            "retention": {t: spec.retention[t] for t in spec.tiers if t in spec.retention},
            "metrics": {
                n: m.model_dump(include={"dimension", "value", "stats"})
                for n, m in spec.metrics.items()
            },
            "rules": list(spec.rules),
            "sensitive": list(spec.event.sensitive),
            "time_field": spec.event.time,
            "id_field": spec.event.id,
            "watermark": watermark,
            "runner": engine_state(ctx.engine),
        }

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_who: Principal = Depends(require("read"))) -> JSONResponse:
        return JSONResponse(app.openapi())


_UI_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _ui(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_UI_HEADERS)
