"""The training set: every candidate feature at each event, computed exactly as live.

Events are replayed in source order through a throw-away :class:`Pipeline` (the engine's own
code, a fresh in-memory state, no store, no sinks), which computes the requested sliding
features on every batch exactly as the live engine does; the model's feature expressions are
then evaluated on that frame with the same compiled Polars expressions the live scorer uses.
So a model applied to these rows gives the score the live engine gives the same event.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl

from riskstream.core.events import RawBatch
from riskstream.core.tiers import parse_duration
from riskstream.engine.decode import EID, TIME, label_expr
from riskstream.engine.metrics import Pending
from riskstream.engine.pipeline import Pipeline
from riskstream.models.registry import compile_features
from riskstream.rules import FeatureRef
from riskstream.spec.check import compile_rules, feature_tier
from riskstream.spec.model import PipelineSpec

#: Windows of the automatic velocity features (each kept when the spec's tiers can serve it).
AUTO_WINDOWS = ("1m", "10m", "1h", "1d")
#: Stats of the automatic velocity features (each kept when the metric keeps it).
AUTO_STATS = ("count", "sum", "avg", "max", "distinct")
LABEL = "label"
RULE_PREFIX = "rule:"


def rule_features(spec: PipelineSpec) -> list[str]:
    """Every sliding feature the spec's rules read, in order of first appearance."""
    seen: dict[str, None] = {}
    for compiled in compile_rules(spec).values():
        for ref in compiled.features:
            seen[ref.name] = None
    return list(seen)


def auto_features(spec: PipelineSpec) -> list[str]:
    """The rules' features, the numeric event fields, and the usual velocity windows per metric."""
    out: dict[str, None] = dict.fromkeys(rule_features(spec))
    skip = {spec.event.time, spec.event.id}
    if spec.labels.field:
        skip.add(spec.labels.field)
    for name, kind in (spec.event.fields or {}).items():
        if kind in ("float", "int", "bool") and name not in skip:
            out[name] = None
    for metric, m in spec.metrics.items():
        kept = set(m.stats) | {"count"}
        for window in AUTO_WINDOWS:
            ms = parse_duration(window)
            try:
                feature_tier(spec, ms)
            except ValueError:
                continue
            for stat in AUTO_STATS:
                if stat in kept:
                    out[FeatureRef(metric, stat, ms).name] = None
    return list(out)


def parse_feature_list(spec: PipelineSpec, text: str) -> list[str]:
    """``auto`` or a comma-separated list of feature expressions (``card.count(1h),amount``)."""
    if text.strip() == "auto":
        return auto_features(spec)
    items = [t.strip() for t in text.split(",") if t.strip()]
    return list(dict.fromkeys(items))


def build_dataset(
    spec: PipelineSpec,
    batches: Iterable[RawBatch],
    features: list[str],
    *,
    base_dir: Path | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    labels: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per accepted event in ``[from_ms, to_ms)``: event_id, event_time, label, features.

    Also one boolean column ``rule:NAME`` per enabled rule (did it fire), so the model can be
    compared with the rules on the same events. ``labels`` (event_id, label) override the
    spec's label field (analyst decisions, imported chargebacks). Events before ``from_ms``
    are replayed too: they are the history the features of later events read.
    """
    compiled = compile_features(spec, features)
    # Rules that read a model (``model.fraud > 0.9``) are left out: no model is scored while
    # the training set is built (the one being trained may not exist yet).
    reads_model = {n for n, c in compile_rules(spec).items() if c.models}
    no_model = {n: r for n, r in spec.rules.items() if n not in reads_model}
    run_spec = spec.model_copy(update={"models": {}, "sinks": [], "rules": no_model})
    pipe = Pipeline(run_spec, base_dir)
    pipe.add_features([ref for c in compiled for ref in c.features])
    pipe.rules = []  # the rules' features stay computed; their flags are evaluated below
    rules = compile_rules(run_spec)
    label_field = spec.labels.field
    parts: list[pl.DataFrame] = []
    for batch in batches:
        if not batch.lines:
            continue
        outcome = pipe.process(batch)
        frame = outcome.frame
        if frame is None or not outcome.events:
            continue
        lists = pipe.lists
        label = label_expr(label_field).cast(pl.Float64)
        cols = [
            pl.col(EID).cast(pl.String).alias("event_id"),
            pl.col(TIME).alias("event_time"),
            label.alias(LABEL),
            *[
                c.expr(lists).cast(pl.Float64, strict=False).alias(name)
                for name, c in zip(features, compiled, strict=True)
            ],
            *[
                r.expr(lists).fill_null(False).alias(f"{RULE_PREFIX}{name}")
                for name, r in rules.items()
                if spec.rules[name].enabled
            ],
        ]
        rows = frame.select(cols)
        if from_ms is not None:
            rows = rows.filter(pl.col("event_time") >= from_ms)
        if to_ms is not None:
            rows = rows.filter(pl.col("event_time") < to_ms)
        parts.append(rows)
        pipe.pending = Pending()  # nothing is checkpointed: drop the bucket contributions
    if not parts:
        return pl.DataFrame(
            schema={"event_id": pl.String, "event_time": pl.Int64, LABEL: pl.Float64}
        )
    data = pl.concat(parts, how="vertical_relaxed")
    if labels is not None and labels.height:
        override = labels.select(
            pl.col("event_id").cast(pl.String), pl.col("label").cast(pl.Float64).alias("_lbl")
        ).unique(subset="event_id", keep="last")
        data = (
            data.join(override, on="event_id", how="left", maintain_order="left")
            .with_columns(pl.coalesce("_lbl", LABEL).alias(LABEL))
            .drop("_lbl")
        )
    return data


def describe_range(from_ms: int | None, to_ms: int | None) -> str:
    """``[from, to)`` in ISO-8601 for messages."""
    if from_ms is None and to_ms is None:
        return "all the events"
    from datetime import UTC, datetime

    def iso(ms: int | None) -> str:
        if ms is None:
            return "…"
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return f"[{iso(from_ms)}, {iso(to_ms)})"


__all__ = [
    "AUTO_STATS",
    "AUTO_WINDOWS",
    "LABEL",
    "RULE_PREFIX",
    "auto_features",
    "build_dataset",
    "describe_range",
    "parse_feature_list",
    "rule_features",
]
