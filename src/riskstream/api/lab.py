"""The rule lab over HTTP: backtest jobs, proposals, four-eyes approval, versions, rollback.

* ``POST /v1/rules/backtest`` (analyst) starts a backtest over the archive as a job;
  ``GET /v1/rules/backtest/{job}`` reports ``state`` (queued, running, done, failed),
  ``events_done``/``events_total`` and, once done, the result (the CLI's JSON).
* ``POST /v1/rules/proposals`` records a new version of a rule as ``proposed`` (with the
  author's backtest summary and a diff against the live version).
* ``POST /v1/rules/{name}/versions/{v}/approve``: another analyst (another API key) approves;
  the rule is written into the spec file and the engine hot-reloads it. With
  ``review.four_eyes: false`` in the spec a proposal goes live at once.
* ``POST /v1/rules/{name}/rollback`` makes an earlier version live again (a new version).
* ``GET /v1/rules/{name}/versions``: the history. A hand edit of the spec file shows up as a
  new version by ``spec file`` (synced whenever the history is read or changed).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from riskstream.api.auth import Principal, require
from riskstream.api.context import ApiContext
from riskstream.core.events import parse_time
from riskstream.errors import RiskstreamError, SpecError
from riskstream.lab.archive import META_SEQ
from riskstream.lab.backtest import backtest_archive
from riskstream.lab.replay import compile_rule
from riskstream.lab.specfile import diff_text, rule_body, write_rule
from riskstream.spec.model import PipelineSpec
from riskstream.store.protocol import Store

router = APIRouter(tags=["rule lab"])
_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
SPEC_FILE = "spec file"


class BacktestIn(BaseModel):
    """A rule to backtest over archived events of ``[from, to)`` (both optional)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field("candidate", pattern=_NAME)
    when: str = Field(max_length=2000)
    from_: str | int | None = Field(None, alias="from")
    to: str | int | None = None


class ProposalIn(BaseModel):
    """A new version of rule ``name``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=_NAME)
    when: str = Field(max_length=2000)
    action: str = Field("review", pattern="^(review|block|allow|tag)$")
    score: float = Field(50.0, ge=0, le=1000)
    note: str = Field("", max_length=2000)
    backtest: dict[str, Any] | None = None


class RollbackIn(BaseModel):
    """Which earlier version to make live again."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)


@dataclass
class _Job:
    id: str
    state: str = "queued"
    events_done: int = 0
    events_total: int | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def view(self) -> dict[str, Any]:
        return {
            "job": self.id,
            "state": self.state,
            "events_done": self.events_done,
            "events_total": self.events_total,
            "result": self.result,
            "error": self.error,
        }


_JOBS: dict[str, _Job] = {}
_ONE_AT_A_TIME = threading.Lock()  # two cores: backtests queue rather than share them


def _ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def _check(spec: PipelineSpec, name: str, when: str) -> None:
    try:
        compile_rule(spec, name, when)
    except SpecError as exc:
        raise HTTPException(422, str(exc)) from None


@router.post("/v1/rules/backtest", status_code=202, summary="Start a backtest job")
def start_backtest(
    request: Request, body: BacktestIn, who: Principal = Depends(require("analyst"))
) -> dict[str, Any]:
    """Validate, then run the backtest in the background; poll the returned job."""
    ctx = _ctx(request)
    spec = ctx.live_spec()
    _check(spec, body.name, body.when)
    try:
        frm = parse_time(body.from_) if body.from_ not in (None, "") else None
        to = parse_time(body.to) if body.to not in (None, "") else None
    except RiskstreamError as exc:
        raise HTTPException(422, str(exc)) from None
    live = spec.rules.get(body.name)
    live_when = live.when if live is not None and live.when != body.when else None
    job = _Job(uuid.uuid4().hex[:16])
    _JOBS[job.id] = job
    base = ctx.engine.spec_path.parent if ctx.engine and ctx.engine.spec_path else None

    def progress(done: int) -> None:
        job.events_done = done

    def run() -> None:
        with _ONE_AT_A_TIME:
            job.state = "running"
            try:
                with ctx.engine_lock():
                    committed = int(ctx.store.meta().get(META_SEQ, "0"))
                    labels = ctx.store.labels()
                    cases = ctx.store.case_hits(frm, to)
                job.result = backtest_archive(
                    spec,
                    ctx.data_dir,
                    body.name,
                    body.when,
                    live_when=live_when,
                    from_ms=frm,
                    to_ms=to,
                    labels=labels,
                    live_cases=cases,
                    base_dir=base,
                    progress=progress,
                    committed=committed,
                )
                job.events_total = job.events_done
                job.state = "done"
            except RiskstreamError as exc:
                job.error, job.state = str(exc), "failed"
            except Exception as exc:  # a bug: reported on the job, never a dead thread
                job.error, job.state = f"internal error: {type(exc).__name__}: {exc}", "failed"

    threading.Thread(target=run, name=f"backtest-{job.id}", daemon=True).start()
    ctx.log(f"backtest {job.id} of {body.name!r} started by {who.label}")
    return job.view()


@router.get("/v1/rules/backtest/{job_id}", summary="A backtest job's progress and result")
def backtest_job(job_id: str, _who: Principal = Depends(require("analyst"))) -> dict[str, Any]:
    """``state``, ``events_done`` and, when done, ``result``."""
    job = _JOBS.get(job_id)
    if job is None:
        raise HTTPException(404, f"no backtest job {job_id!r}")
    return job.view()


def _sync(store: Store, spec: PipelineSpec) -> None:
    """Record rules whose spec-file text differs from their live version (hand edits)."""
    now = int(time.time() * 1000)
    for name, rule in spec.rules.items():
        body = rule_body(rule)
        history = store.rule_versions(name)
        live = next((v for v in history if v.status == "live"), None)
        if live is None or live.body != body:
            v = store.add_rule_version(
                name,
                body,
                author=SPEC_FILE,
                status="live",
                at_ms=now,
                diff=diff_text(live.body if live else None, body),
                note="as in the spec file",
            )
            store.set_rule_status(name, v, "live")


def _spec_path(ctx: ApiContext) -> Path:
    path = ctx.engine.spec_path if ctx.engine is not None else None
    if path is None:
        raise HTTPException(
            409, "no live engine with a spec file here (serve a pipeline: riskstream serve -c SPEC)"
        )
    return path


def _writable(ctx: ApiContext) -> None:
    if ctx.store.read_only:
        raise HTTPException(503, "the store is open read-only; rule versions cannot be recorded")


def _go_live(ctx: ApiContext, name: str, body: dict[str, Any]) -> bool:
    """Write the rule into the spec file; wait (briefly) for the engine to reload it."""
    try:
        write_rule(_spec_path(ctx), name, body)
    except SpecError as exc:
        raise HTTPException(422, str(exc)) from None
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        rule = ctx.live_spec().rules.get(name)
        if rule is not None and rule_body(rule) == body:
            return True
        time.sleep(0.05)
    return False


@router.post("/v1/rules/proposals", status_code=201, summary="Propose a new version of a rule")
def propose(
    request: Request, body: ProposalIn, who: Principal = Depends(require("analyst"))
) -> dict[str, Any]:
    """Record the proposal (live at once when the spec says ``review.four_eyes: false``)."""
    ctx = _ctx(request)
    spec = ctx.live_spec()
    _check(spec, body.name, body.when)
    _writable(ctx)
    new = {"when": body.when, "action": body.action, "score": body.score}
    four_eyes = spec.review.four_eyes
    if not four_eyes:
        _spec_path(ctx)
    with ctx.engine_lock():
        _sync(ctx.store, spec)
        live = spec.rules.get(body.name)
        version = ctx.store.add_rule_version(
            body.name,
            new,
            author=who.label,
            status="proposed",
            at_ms=int(time.time() * 1000),
            summary=_summary(body.backtest),
            diff=diff_text(rule_body(live) if live else None, new),
            note=body.note,
        )
    went_live = False
    if not four_eyes:
        went_live = _go_live(ctx, body.name, new)
        with ctx.engine_lock():
            ctx.store.set_rule_status(body.name, version, "live", approved_by=who.label)
    ctx.log(f"rule {body.name} v{version} proposed by {who.label}")
    return {"rule": body.name, "version": version, "four_eyes": four_eyes, "live": went_live}


def _summary(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if not result:
        return None
    keys = ("events", "hits", "hit_rate", "labelled", "true_positives", "false_positives")
    return {k: result.get(k) for k in (*keys, "precision", "recall", "from", "to")}


@router.post("/v1/rules/{name}/versions/{version}/approve", summary="Approve a proposal")
def approve(
    request: Request, name: str, version: int, who: Principal = Depends(require("analyst"))
) -> dict[str, Any]:
    """A second analyst approves: the version goes live by hot reload."""
    ctx = _ctx(request)
    _writable(ctx)
    with ctx.engine_lock():
        found = [v for v in ctx.store.rule_versions(name) if v.version == version]
    if not found:
        raise HTTPException(404, f"no version {version} of rule {name!r}")
    item = found[0]
    if item.status != "proposed":
        raise HTTPException(409, f"version {version} of {name!r} is {item.status}, not proposed")
    if ctx.live_spec().review.four_eyes and item.author == who.label:
        raise HTTPException(403, "four-eyes: a second analyst must approve this proposal")
    live = _go_live(ctx, name, item.body)
    with ctx.engine_lock():
        ctx.store.set_rule_status(
            name, version, "live", approved_by=who.label, approved_ms=int(time.time() * 1000)
        )
    ctx.log(f"rule {name} v{version} approved by {who.label}")
    return {"rule": name, "version": version, "live": live}


@router.post("/v1/rules/{name}/rollback", summary="Make an earlier version live again")
def rollback(
    request: Request, name: str, body: RollbackIn, who: Principal = Depends(require("analyst"))
) -> dict[str, Any]:
    """Restore an earlier version's rule (recorded as a new live version)."""
    ctx = _ctx(request)
    _writable(ctx)
    _spec_path(ctx)
    with ctx.engine_lock():
        _sync(ctx.store, ctx.live_spec())
        history = ctx.store.rule_versions(name)
    old = next((v for v in history if v.version == body.version), None)
    if old is None:
        raise HTTPException(404, f"no version {body.version} of rule {name!r}")
    live_now = ctx.live_spec().rules.get(name)
    went_live = _go_live(ctx, name, old.body)
    with ctx.engine_lock():
        version = ctx.store.add_rule_version(
            name,
            old.body,
            author=who.label,
            status="proposed",
            at_ms=int(time.time() * 1000),
            diff=diff_text(rule_body(live_now) if live_now else None, old.body),
            note=f"rollback to version {body.version}",
        )
        ctx.store.set_rule_status(name, version, "live", approved_by=who.label)
    return {"rule": name, "version": version, "restored": body.version, "live": went_live}


@router.get("/v1/rules/{name}/versions", summary="A rule's versions, newest first")
def rule_versions(
    request: Request, name: str, _who: Principal = Depends(require("read"))
) -> dict[str, Any]:
    """Author, time, status, backtest summary and diff of every version."""
    ctx = _ctx(request)
    with ctx.engine_lock():
        if not ctx.store.read_only:
            _sync(ctx.store, ctx.live_spec())
        return {"rule": name, "versions": [v.as_dict() for v in ctx.store.rule_versions(name)]}
