"""Request and response bodies of the HTTP API (they also make the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Decision = Literal["confirmed_fraud", "false_positive", "note"]


def _utf8(value: str | None) -> str | None:
    """Refuse text that cannot be stored (lone surrogates, NUL)."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid UTF-8") from None
    if "\x00" in value:
        raise ValueError("text contains a NUL character")
    return value


class ErrorBody(BaseModel):
    """Every error: one line."""

    error: str
    reason: str | None = None


class DecisionIn(BaseModel):
    """An analyst's decision on a case."""

    model_config = ConfigDict(extra="ignore")

    decision: Decision
    note: str | None = Field(default=None, max_length=4000)
    analyst: str = Field(min_length=1, max_length=120)

    _check_text = field_validator("note", "analyst")(lambda cls, v: _utf8(v))

    @field_validator("analyst")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("analyst must not be blank")
        return v.strip()


class DecisionOut(BaseModel):
    """A recorded decision."""

    decision: str
    note: str | None
    analyst: str
    at_ms: int
    at_iso: str


class CaseSummary(BaseModel):
    """A case in the queue."""

    case_id: str
    seq: int
    rule: str
    action: str
    score: float
    status: str
    event_id: str | None
    event_time: int
    event_time_iso: str
    created_ms: int
    event: dict[str, Any]
    features: dict[str, Any]


class RuleBrief(BaseModel):
    """The rule that raised a case, as the spec now says."""

    name: str
    when: str | None
    action: str | None
    score: float | None
    description: str | None


class CaseDetail(CaseSummary):
    """A case with its rule and the analysts' decisions (oldest first)."""

    pipeline: str
    rule_spec: RuleBrief
    decisions: list[DecisionOut]


class CasePage(BaseModel):
    """One page of the queue, newest first."""

    total: int
    limit: int
    offset: int
    items: list[CaseSummary]


class FiredRule(BaseModel):
    """A rule that fired for the event."""

    rule: str
    action: str
    score: float


class DecideOut(BaseModel):
    """The synchronous decision on one event."""

    event_id: str | None
    action: Literal["block", "review", "tag", "allow"]
    score: float
    rules_fired: list[FiredRule]
    features: dict[str, float | int | None]
    models: dict[str, float | None] = Field(
        default_factory=dict,
        description="each spec model's calibrated score 0-1 (shadow models too; they never fire)",
    )
    ingested: bool
    cases: list[dict[str, Any]] | None = None


class RuleInfo(BaseModel):
    """One rule of the spec with its hit counts."""

    name: str
    when: str
    action: str
    score: float
    enabled: bool
    description: str | None
    hits: int = Field(description="cases raised, all runs (checkpointed and pending)")
    hits_this_run: int = Field(description="cases raised by the live run since it started")


class RulesOut(BaseModel):
    """Every rule of the spec in force."""

    rules: list[RuleInfo]


class ValidateIn(BaseModel):
    """A rule condition to check."""

    when: str = Field(max_length=10_000)

    _check_text = field_validator("when")(lambda cls, v: _utf8(v))


class ValidateOut(BaseModel):
    """Whether ``when`` compiles against the spec, and what it reads."""

    valid: bool
    error: str | None = None
    features: list[str] = Field(default_factory=list)
    fields: list[str] = Field(default_factory=list)
    lists: list[str] = Field(default_factory=list)


class SeriesBucket(BaseModel):
    """One step of a time series."""

    start: int
    start_iso: str
    count: int
    sum: float | None
    retained: bool


class SeriesOut(BaseModel):
    """Count (and sum) per step over ``[from, to)``."""

    metric: str
    key: str
    tier: str
    step: str
    step_ms: int
    from_: int = Field(alias="from")
    to: int
    available_from: int
    buckets: list[SeriesBucket]

    model_config = ConfigDict(populate_by_name=True)


class Health(BaseModel):
    """Liveness / readiness."""

    status: str
    runner: str | None = None
    detail: str | None = None


class MetricInfo(BaseModel):
    """A metric of the spec."""

    dimension: list[str]
    value: str | None
    stats: list[str]


class PipelineInfo(BaseModel):
    """What the web UI needs to know about the pipeline."""

    name: str
    tiers: list[str]
    retention: dict[str, str]
    metrics: dict[str, MetricInfo]
    rules: list[str]
    sensitive: list[str]
    time_field: str
    id_field: str | None
    watermark: int | None
    runner: str
