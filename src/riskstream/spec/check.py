"""Semantic checks of a structurally valid spec: fields, expressions, windows, list files."""

from __future__ import annotations

from pathlib import Path

from riskstream.core.tiers import TIER_MS, format_duration
from riskstream.errors import SpecError
from riskstream.rules import CompiledExpr, ExpressionError, RuleContext, compile_expression
from riskstream.spec.model import NUMERIC_STATS, PipelineSpec

_NUMERIC_VALUE = NUMERIC_STATS - {"count"}


def rule_context(spec: PipelineSpec) -> RuleContext:
    """What expressions may refer to: declared fields (or any), metrics and their stats, lists."""
    fields: dict[str, str] | None = None
    if spec.event.fields is not None:
        fields = dict(spec.event.fields)
        fields.setdefault(spec.event.time, "any")
        if spec.event.id:
            fields.setdefault(spec.event.id, "str")
    metrics = {name: frozenset(m.stats) | {"count"} for name, m in spec.metrics.items()}
    return RuleContext(
        fields=fields,
        metrics=metrics,
        lists={name: "str" for name in spec.lists},
        models=frozenset(spec.models),
    )


def feature_tier(spec: PipelineSpec, window_ms: int) -> str:
    """The finest tier whose retention holds ``window_ms`` and whose width divides it."""
    for tier in spec.tiers:
        if spec.retention_ms(tier) >= window_ms and window_ms % TIER_MS[tier] == 0:
            return tier
    raise ValueError(f"window {format_duration(window_ms)} is longer than every tier's retention")


def compile_rules(spec: PipelineSpec) -> dict[str, CompiledExpr]:
    """Compile every enabled rule's ``when`` (raising SpecError with the rule's path)."""
    ctx = rule_context(spec)
    out: dict[str, CompiledExpr] = {}
    for name, rule in spec.rules.items():
        path = f"rules.{name}.when"
        try:
            compiled = compile_expression(rule.when, ctx)
        except ExpressionError as exc:
            raise SpecError(path, f"col {exc.col}: {exc.message}") from None
        for feat in compiled.features:
            try:
                feature_tier(spec, feat.window_ms)
            except ValueError as exc:
                raise SpecError(path, f"{feat.name}: {exc}") from None
        out[name] = compiled
    return out


def compile_wheres(spec: PipelineSpec) -> dict[str, CompiledExpr]:
    """Compile every metric's ``where`` clause (no features allowed there)."""
    ctx = rule_context(spec)
    out: dict[str, CompiledExpr] = {}
    for name, metric in spec.metrics.items():
        if metric.where is None:
            continue
        try:
            out[name] = compile_expression(metric.where, ctx, allow_features=False)
        except ExpressionError as exc:
            raise SpecError(f"metrics.{name}.where", f"col {exc.col}: {exc.message}") from None
    return out


def check_spec(spec: PipelineSpec, base_dir: Path | None = None) -> None:
    """Refuse a spec whose parts do not fit together, naming the path of the first problem."""
    declared = spec.event.fields
    for name, metric in spec.metrics.items():
        for i, dim in enumerate(metric.dimension):
            if declared is not None and dim not in declared:
                raise SpecError(f"metrics.{name}.dimension.{i}", f"unknown field {dim!r}")
        if metric.value is not None and declared is not None:
            if metric.value not in declared:
                raise SpecError(f"metrics.{name}.value", f"unknown field {metric.value!r}")
            kind = declared[metric.value]
            if _NUMERIC_VALUE & set(metric.stats) and kind not in ("float", "int", "any"):
                raise SpecError(
                    f"metrics.{name}.value", f"field {metric.value!r} is {kind}, not a number"
                )
    if spec.source.key is not None and declared is not None and spec.source.key not in declared:
        raise SpecError("source.key", f"unknown field {spec.source.key!r}")
    for name, rule in spec.rules.items():
        if rule.once_per is not None and declared is not None and rule.once_per.key not in declared:
            raise SpecError(f"rules.{name}.once_per.key", f"unknown field {rule.once_per.key!r}")
    for name, lst in spec.lists.items():
        if lst.file is not None:
            path = Path(lst.file)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            if not path.is_file():
                raise SpecError(f"lists.{name}.file", f"no such file {str(path)!r}")
    if spec.event.fields is not None and "second" not in spec.tiers and not spec.tiers:
        raise SpecError("tiers", "at least one tier is needed")
    compile_wheres(spec)
    compile_rules(spec)
    for i, sink in enumerate(spec.sinks):
        extra = sink.model_extra or {}
        if sink.kind == "file" and not extra.get("path"):
            raise SpecError(f"sinks.{i}", "a file sink needs 'path'")
        if sink.kind == "webhook" and not str(extra.get("url", "")).startswith(
            ("http://", "https://")
        ):
            raise SpecError(f"sinks.{i}.url", "a webhook sink needs an http(s) 'url'")
        if sink.kind == "kafka" and not extra.get("topic"):
            raise SpecError(f"sinks.{i}", "a kafka sink needs 'topic'")


def partial_features(spec: PipelineSpec) -> list[str]:
    """Why rule features would be partial with several engines sharing one store, one line each.

    An aggregate in the store is exact with any number of engines (every engine merges into
    it). A sliding feature is computed by the engine that sees the event, from that engine's
    history of the key: it is exact only when every event of its key reaches the same engine,
    i.e. when the metric's dimension is the source's partition key (``source.key``).
    """
    key = spec.source.key
    lines: list[str] = []
    for name, compiled in compile_rules(spec).items():
        for feat in compiled.features:
            dims = spec.metrics[feat.metric].dimension
            if key is None:
                lines.append(
                    f"rules.{name}: {feat.name} may be partial (source.key is not set, so "
                    "events of one key may reach several engines)"
                )
            elif dims != [key]:
                lines.append(
                    f"rules.{name}: {feat.name} is partial with several engines "
                    f"(metric {feat.metric!r} is keyed by {'+'.join(dims)}, the source is "
                    f"partitioned by {key})"
                )
    return lines
