"""The spec's models over HTTP and on ``/metrics``: report, live score distribution, drift.

* ``GET /v1/models``: per ``models:`` entry its version, shadow flag, test metrics from
  training (AUC-PR, precision at recall, each rule on the same test events), the live score
  distribution and the drift (PSI of the score and the top features against the training
  set, since the engine loaded the model; ``stable`` < 0.1 <= ``drifting`` < 0.25 <= ``shifted``).
* ``GET /v1/models/{entry}/report/{file}``: the training report (``report.html`` and its
  PNG plots), for the web UI.
* ``/metrics`` (:class:`ModelCollector`): ``riskstream_model_info{entry,model,version,shadow}``,
  ``riskstream_model_score{entry,model,version}`` (histogram of the calibrated scores) and
  ``riskstream_model_psi{entry,model,version,column}`` (``column`` = ``score`` or a feature).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from riskstream.api.auth import Principal, require
from riskstream.api.context import ApiContext
from riskstream.models.registry import ModelError, models_root, read_version
from riskstream.models.scoring import ModelSet
from riskstream.training.report import PLOTS

router = APIRouter(tags=["models"])
REPORT_FILES = {"report.html": "text/html; charset=utf-8", **dict.fromkeys(PLOTS, "image/png")}


def _live(ctx: ApiContext) -> ModelSet | None:
    return ctx.engine.model_set() if ctx.engine is not None else None


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("events", "fraud", "base_rate", "auc_pr", "precision_at_recall", "brier", "rules")
    return {k: metrics.get(k) for k in keys}


def describe(ctx: ApiContext) -> list[dict[str, Any]]:
    """Every entry of the spec in force; drift and scores only with a live engine."""
    live = _live(ctx)
    out: list[dict[str, Any]] = []
    if live is not None:
        for entry, d in live.describe().items():
            out.append(
                {
                    "entry": entry,
                    **{k: d[k] for k in ("model", "version", "shadow", "features", "trained")},
                    "test_range": d["test_range"],
                    "test": _brief(d["metrics"]),
                    "importance": (d["metrics"].get("importance") or [])[:10],
                    "drift": d["drift"],
                    "scores": d["scores"],
                }
            )
        return out
    root = models_root(ctx.data_dir)
    for entry, es in ctx.spec.models.items():
        name = es.model or entry
        try:
            stored = read_version(root, name, es.version)
        except ModelError as exc:
            out.append({"entry": entry, "model": name, "error": str(exc)})
            continue
        meta = stored.meta
        out.append(
            {
                "entry": entry,
                "model": name,
                "version": stored.version,
                "shadow": es.shadow,
                "features": stored.features,
                "trained": meta.get("trained_at"),
                "test_range": meta.get("test_range"),
                "test": _brief(meta.get("metrics") or {}),
                "importance": ((meta.get("metrics") or {}).get("importance") or [])[:10],
                "drift": None,
                "scores": None,
            }
        )
    return out


@router.get("/v1/models", summary="The spec's models: test metrics, live scores and drift")
def list_models(request: Request, _who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Each ``models:`` entry with its report's numbers and its current drift."""
    ctx: ApiContext = request.app.state.ctx
    return {"models": describe(ctx)}


@router.get(
    "/v1/models/{entry}/report/{file}",
    summary="A model's training report (report.html or one of its PNG plots)",
    response_class=Response,
)
def report_file(
    request: Request, entry: str, file: str, _who: Principal = Depends(require("read"))
) -> Response:
    """The file of the version the engine scores with (the spec's version without an engine)."""
    ctx: ApiContext = request.app.state.ctx
    if file not in REPORT_FILES:
        raise HTTPException(404, f"no report file {file!r} (one of {', '.join(REPORT_FILES)})")
    spec = ctx.live_spec()
    es = spec.models.get(entry)
    if es is None:
        raise HTTPException(404, f"no model entry {entry!r} in the spec")
    live = _live(ctx)
    loaded = live.models.get(entry) if live is not None else None
    try:
        stored = (
            loaded.stored
            if loaded is not None
            else read_version(models_root(ctx.data_dir), es.model or entry, es.version)
        )
    except ModelError as exc:
        raise HTTPException(404, str(exc)) from None
    path = stored.path / file
    if not path.is_file():
        raise HTTPException(404, f"model {entry!r} v{stored.version} has no {file}")
    return Response(
        path.read_bytes(),
        media_type=REPORT_FILES[file],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


class ModelCollector(Collector):
    """Score histograms and PSI of the live engine's models, read at scrape time."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        """The current values (nothing without a live engine or models)."""
        live = _live(self.ctx)
        if live is None or not live:
            return
        info = GaugeMetricFamily(
            "riskstream_model_info",
            "Models the engine scores with (1 per entry)",
            labels=["entry", "model", "version", "shadow"],
        )
        scores = HistogramMetricFamily(
            "riskstream_model_score",
            "Calibrated model scores of the events scored since the model loaded",
            labels=["entry", "model", "version"],
        )
        psi = GaugeMetricFamily(
            "riskstream_model_psi",
            "Population stability index against the training set (score and top features)",
            labels=["entry", "model", "version", "column"],
        )
        for entry, m in list(live.models.items()):
            labels = [entry, m.name, str(m.version)]
            info.add_metric([*labels, str(live.shadow.get(entry, False)).lower()], 1.0)
            buckets, _events, total = m.drift.score_distribution()
            scores.add_metric(
                labels, [(_le(b), float(c)) for b, c in buckets], sum_value=float(total)
            )
            if m.drift.events:
                for column, value in m.drift.psi().items():
                    psi.add_metric([*labels, column], value)
        yield info
        yield scores
        yield psi


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
