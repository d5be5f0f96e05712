"""Typed models of the pipeline spec (the contract: README, "The pipeline spec"; layers: docs/architecture.md); unknown keys are refused."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from riskstream.core.tiers import TIER_ORDER, available_from, parse_duration

FieldType = Literal["float", "int", "str", "bool", "any"]
Tier = Literal["second", "minute", "hour", "day", "week"]
Stat = Literal["count", "sum", "avg", "min", "max", "var", "stddev", "distinct", "distribution"]
Action = Literal["review", "block", "allow", "tag"]
NUMERIC_STATS: frozenset[str] = frozenset({"count", "sum", "avg", "min", "max", "var", "stddev"})

DEFAULT_RETENTION: dict[str, str] = {
    "second": "2h",
    "minute": "2d",
    "hour": "90d",
    "day": "3y",
    "week": "10y",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: Any) -> str:
    parse_duration(str(value))
    return str(value)


class SourceSpec(_Model):
    """Where events come from; ``--source`` on the command line overrides it."""

    kind: Literal["kafka", "file", "generator", "stdin"] = "generator"
    brokers: str | None = None
    topics: list[str] = Field(default_factory=list)
    group: str = "riskstream"
    path: str | None = None
    events: int | None = None
    seed: int = 7
    format: Literal["json", "avro"] = "json"
    avro_schema: str | None = None
    options: dict[str, str] = Field(default_factory=dict)
    #: The event field the topic is partitioned by (several engines: sliding features of
    #: other dimensions are partial; ``validate`` says which).
    key: str | None = None


class StoreSpec(_Model):
    """Where state lives: the embedded DuckDB file (default) or a shared PostgreSQL schema.

    The PostgreSQL DSN comes only from the environment variable ``dsn_env`` (or
    ``--store-dsn``), never from the spec, and is never logged with its password.
    """

    kind: Literal["duckdb", "postgres"] = "duckdb"
    dsn_env: str = Field(default="RISKSTREAM_PG_DSN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    schema_: str = Field(default="riskstream", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")


class EventSpec(_Model):
    """How to read an event: its time and id fields, lateness bound and optional schema."""

    time: str = "event_time"
    id: str | None = "event_id"
    max_lateness: str = "7d"
    #: later than the wall clock + this: quarantined ``too_early`` (never moves the watermark)
    max_future: str = "5m"
    max_bytes: int = Field(default=1_000_000, ge=64, le=1 << 30)
    #: objects/arrays nested deeper: quarantined ``too_deep`` (orjson writes at most 255 levels)
    max_depth: int = Field(default=64, ge=1, le=200)
    fields: dict[str, FieldType] | None = None
    sensitive: list[str] = Field(default_factory=list)

    _check_lateness = field_validator("max_lateness", "max_future")(lambda cls, v: _duration(v))


class MetricSpec(_Model):
    """A named aggregation: dimension fields form the key; ``value`` feeds numeric stats."""

    dimension: list[str] = Field(min_length=1)
    value: str | None = None
    where: str | None = None
    stats: list[Stat] = Field(default_factory=lambda: list[Stat](["count"]))

    @model_validator(mode="after")
    def _value_needed(self) -> MetricSpec:
        needs_value = set(self.stats) - {"count"}
        if needs_value and self.value is None:
            raise ValueError(f"stats {sorted(needs_value)} need a 'value' field")
        return self


class ListSpec(_Model):
    """A named list: inline ``values`` or a ``file`` with one entry per line (hot-reloaded)."""

    values: list[str] | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ListSpec:
        if (self.values is None) == (self.file is None):
            raise ValueError("give exactly one of 'values' or 'file'")
        return self


class ThrottleSpec(_Model):
    """At most one case per ``key`` value within ``within``."""

    key: str
    within: str

    _check_within = field_validator("within")(lambda cls, v: _duration(v))


class RuleSpec(_Model):
    """A boolean expression over fields, features and lists, with an action and score."""

    when: str
    action: Action = "review"
    score: float = 50.0
    description: str | None = None
    once_per: ThrottleSpec | None = None
    enabled: bool = True


class SinkSpec(BaseModel):
    """A case destination; kind-specific keys are checked by the sink factory."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["file", "stdout", "webhook", "kafka"]


class CheckpointSpec(_Model):
    """Checkpoint every ``every`` of time or ``events`` events, whichever comes first."""

    every: str = "1s"
    events: int = 200_000
    #: How often retention drops and the folding of appended bucket rows run.
    compact_every: str = "60s"

    _check_every = field_validator("every", "compact_every")(lambda cls, v: _duration(v))


class ArchiveSpec(_Model):
    """Accepted events kept as Parquet (zstd) by event day, for backtests (``riskstream.lab``)."""

    retention: str = "30d"
    #: Directory of the archive; relative to the data dir; default ``DATA_DIR/archive``.
    path: str | None = None

    _check_retention = field_validator("retention")(lambda cls, v: _duration(v))


class LabelsSpec(_Model):
    """Where ground truth comes from: a boolean (or 0/1) event field; imports and decisions add to it."""

    field: str | None = None


class ReviewSpec(_Model):
    """How rule changes made in the lab go live: ``four_eyes`` needs a second analyst."""

    four_eyes: bool = True


class ModelEntrySpec(_Model):
    """A trained model the rules read as ``model.NAME`` (a calibrated probability 0-1).

    ``model`` names the model under ``DATA_DIR/models/`` (default: the entry's own name), so a
    champion and a shadow challenger can be two entries on two versions of one model.
    """

    version: int | Literal["latest"] = "latest"
    shadow: bool = False
    model: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class PipelineSpec(_Model):
    """A whole pipeline: source, event shape, tiers, metrics, lists, rules, sinks."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    source: SourceSpec = Field(default_factory=SourceSpec)
    event: EventSpec = Field(default_factory=EventSpec)
    tiers: list[Tier] = Field(
        default_factory=lambda: list[Tier](["second", "minute", "hour", "day", "week"])
    )
    retention: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_RETENTION))
    metrics: dict[str, MetricSpec] = Field(default_factory=dict)
    lists: dict[str, ListSpec] = Field(default_factory=dict)
    rules: dict[str, RuleSpec] = Field(default_factory=dict)
    sinks: list[SinkSpec] = Field(default_factory=list)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    store: StoreSpec = Field(default_factory=StoreSpec)
    models: dict[str, ModelEntrySpec] = Field(default_factory=dict)
    batch_size: int = Field(default=20_000, ge=1, le=1_000_000)
    archive: ArchiveSpec | None = None
    labels: LabelsSpec = Field(default_factory=LabelsSpec)
    review: ReviewSpec = Field(default_factory=ReviewSpec)

    @field_validator("tiers")
    @classmethod
    def _tiers_ordered(cls, v: list[Tier]) -> list[Tier]:
        if not v:
            raise ValueError("at least one tier is needed")
        if len(set(v)) != len(v):
            raise ValueError("tiers repeat")
        return sorted(v, key=TIER_ORDER.index)

    @field_validator("models")
    @classmethod
    def _model_names(cls, v: dict[str, ModelEntrySpec]) -> dict[str, ModelEntrySpec]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"model name {name!r} must be a plain identifier")
        return v

    @field_validator("retention")
    @classmethod
    def _retention(cls, v: dict[str, str]) -> dict[str, str]:
        for tier, text in v.items():
            if tier not in TIER_ORDER:
                raise ValueError(f"unknown tier {tier!r} (tiers: {', '.join(TIER_ORDER)})")
            _duration(text)
        return {**DEFAULT_RETENTION, **v}

    def retention_ms(self, tier: str) -> int:
        """Retention of ``tier`` in milliseconds."""
        return parse_duration(self.retention.get(tier, DEFAULT_RETENTION[tier]))

    def available_from(self, watermark: int | None) -> dict[str, int]:
        """First retained instant per tier at ``watermark`` (see :func:`core.tiers.available_from`)."""
        retention: dict[str, int] = {t: self.retention_ms(t) for t in self.tiers}
        return available_from(watermark, self.tiers, retention)
