"""Features recomputed exactly as live: the real engine over past events, in a throw-away state.

This is the lab's public entry point (backtests here, model training in ``riskstream.models``)::

    from riskstream.lab.replay import replay, replay_archive, archive_events, source_events

    frame = replay_archive(spec, data_dir, ["card.count(1h)", "card.avg(1h)"],
                           from_ms=t0, to_ms=t1)

:func:`replay` runs :class:`riskstream.engine.pipeline.Pipeline` (decode, metric
contributions, sliding features, exactly the live code) over raw events in ingestion
order, with only the metrics the requested features and rules read, no store, no sinks,
no cases. It returns one row per accepted event whose time is in ``[from_ms, to_ms)``:

* ``event_id`` (String), ``event_time`` (Int64, epoch ms), ``label`` (Int8: 1 fraud,
  0 legit, null unknown: the spec's ``labels.field`` of the event, overridden by stored
  labels, i.e. imports and analysts' decisions, when ``labels`` is given);
* one Float64 column per requested feature, named as requested (``card.count(1h)``);
* one Boolean column per rule of ``rules`` (name -> ``when`` text): whether it fires
  (before ``once_per`` throttling).

Events before ``from_ms`` should be included as warm-up so features at the start of
the range see their whole window: :func:`archive_events` does that with ``warmup_ms``
(:func:`warmup_ms` computes it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import polars as pl

from riskstream.core.events import RawBatch
from riskstream.core.lab import LABEL_SCHEMA
from riskstream.core.tiers import TIER_MS
from riskstream.engine.decode import EID, RAW, TIME, label_expr
from riskstream.engine.metrics import Pending
from riskstream.engine.pipeline import Pipeline
from riskstream.errors import SpecError
from riskstream.lab.archive import META_SEQ, ArchiveRangeError, for_spec, format_ms
from riskstream.rules import CompiledExpr, ExpressionError, compile_expression
from riskstream.spec.check import feature_tier, rule_context
from riskstream.spec.model import PipelineSpec, RuleSpec
from riskstream.store.duckdb import Store

__all__ = [
    "archive_events",
    "compile_rule",
    "lookahead_ms",
    "replay",
    "replay_archive",
    "source_events",
    "warmup_ms",
]


def compile_rule(spec: PipelineSpec, name: str, when: str) -> CompiledExpr:
    """Compile a rule condition against ``spec``; a SpecError names ``rules.NAME.when`` and the column."""
    try:
        compiled = compile_expression(when, rule_context(spec))
    except ExpressionError as exc:
        raise SpecError(f"rules.{name}.when", f"col {exc.col}: {exc.message}") from None
    for ref in compiled.features:
        try:
            feature_tier(spec, ref.window_ms)
        except ValueError as exc:
            raise SpecError(f"rules.{name}.when", f"{ref.name}: {exc}") from None
    return compiled


def _feature(spec: PipelineSpec, text: str) -> CompiledExpr:
    compiled = compile_rule(spec, text, f"({text}) == ({text})")
    if len(compiled.features) != 1:
        raise SpecError("features", f"{text!r} is not one feature like card.count(1h)")
    return compiled


def warmup_ms(
    spec: PipelineSpec, features: Sequence[str] = (), rules: Mapping[str, str] = {}
) -> int:
    """How far before a range the replay must start for full windows (longest window + 1 s)."""
    longest = 0
    exprs = [_feature(spec, f) for f in features] + [
        compile_rule(spec, n, w) for n, w in rules.items()
    ]
    for c in exprs:
        for ref in c.features:
            longest = max(longest, ref.window_ms)
    return longest + TIER_MS["second"] if longest else 0


def lookahead_ms(
    spec: PipelineSpec, features: Sequence[str] = (), rules: Mapping[str, str] = {}
) -> int:
    """How far past a range's end the replay must read: an event just after ``to`` shares
    its bucket (and so its features) with events just before it when ingested earlier."""
    widest = 0
    exprs = [_feature(spec, f) for f in features] + [
        compile_rule(spec, n, w) for n, w in rules.items()
    ]
    for c in exprs:
        for ref in c.features:
            widest = max(widest, TIER_MS[feature_tier(spec, ref.window_ms)])
    return widest


def replay(
    spec: PipelineSpec,
    events: Iterable[RawBatch],
    features: Sequence[str] = (),
    *,
    rules: Mapping[str, str] | None = None,
    labels: pl.DataFrame | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    base_dir: Path | None = None,
    with_raw: bool = False,
) -> pl.DataFrame:
    """Run the engine over ``events`` (raw batches in ingestion order); see the module docstring.

    ``with_raw`` adds a ``raw`` column (the event's bytes) at the end.
    """
    rules = dict(rules or {})
    feats = [(text, _feature(spec, text).features[0].name) for text in features]
    compiled = {name: compile_rule(spec, name, when) for name, when in rules.items()}
    used = {ref.metric for c in compiled.values() for ref in c.features} | {
        ref.split(".", 1)[0] for _, ref in feats
    }
    internal = {f"f{i}": RuleSpec(when=f"{ref} == {ref}") for i, (_, ref) in enumerate(feats)}
    internal |= {f"r{i}": RuleSpec(when=when) for i, when in enumerate(rules.values())}
    sub = spec.model_copy(
        update={
            "metrics": {m: s for m, s in spec.metrics.items() if m in used},
            "rules": internal,
            "sinks": [],
            "archive": None,
            "models": {},  # features and rules only (rules reading model.NAME: not replayed)
        }
    )
    pipeline = Pipeline(sub, base_dir)
    pipeline.rules = []  # features only: rules are evaluated below, no cases are raised
    label = label_expr(spec.labels.field)
    parts: list[pl.DataFrame] = []
    for batch in events:
        if not batch.lines:
            continue
        outcome = pipeline.process(batch)
        pipeline.pending = Pending()  # nothing is checkpointed: drop the bucket contributions
        scored = outcome.frame
        if scored is None or not scored.height:
            continue
        if from_ms is not None or to_ms is not None:
            scored = scored.filter(_in_range(from_ms, to_ms))
            if not scored.height:
                continue
        parts.append(
            scored.select(
                pl.col(EID).cast(pl.String).alias("event_id"),
                pl.col(TIME).alias("event_time"),
                label.alias("label"),
                *[pl.col(ref).cast(pl.Float64).alias(text) for text, ref in feats],
                *[
                    c.expr(pipeline.lists).fill_null(False).alias(name)
                    for name, c in compiled.items()
                ],
                *([pl.col(RAW).alias("raw")] if with_raw else []),
            )
        )
    schema = {"event_id": pl.String, "event_time": pl.Int64, "label": pl.Int8}
    schema |= {text: pl.Float64 for text, _ in feats} | {name: pl.Boolean for name in compiled}
    if with_raw:
        schema["raw"] = pl.Binary
    out = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    if labels is not None and labels.height and out.height:
        stored = labels.select(
            pl.col("event_id").cast(pl.String), pl.col("label").cast(pl.Int8).alias("_stored")
        ).unique("event_id", keep="last")
        out = (
            out.join(stored, on="event_id", how="left", maintain_order="left")
            .with_columns(pl.coalesce("_stored", "label").alias("label"))
            .drop("_stored")
        )
    return out


def _in_range(from_ms: int | None, to_ms: int | None) -> pl.Expr:
    cond = pl.lit(True)
    if from_ms is not None:
        cond = cond & (pl.col(TIME) >= from_ms)
    if to_ms is not None:
        cond = cond & (pl.col(TIME) < to_ms)
    return cond


def archive_events(
    spec: PipelineSpec,
    data_dir: str | Path,
    from_ms: int | None = None,
    to_ms: int | None = None,
    *,
    warmup: int = 0,
    lookahead: int = 0,
    batch_size: int = 50_000,
    committed: int | None = None,
) -> Iterator[RawBatch]:
    """Archived events of ``[from_ms - warmup, to_ms + lookahead)`` in ingestion order, as
    raw batches (:func:`replay` keeps only ``[from_ms, to_ms)`` in its answer).

    Raises :class:`ArchiveRangeError` (naming the archived range) when the spec has no
    archive or nothing is archived in ``[from_ms, to_ms)``.
    """
    archive = for_spec(spec, data_dir)
    if archive is None:
        raise ArchiveRangeError("the spec has no archive (add 'archive: {retention: 30d}')")
    if committed is None:  # not given: ask the store (another process's, or none)
        committed = committed_seq(data_dir)
    in_range = archive.scan(committed, from_ms, to_ms).select(pl.len()).collect().item()
    if not in_range:
        lo = "the beginning" if from_ms is None else format_ms(from_ms)
        hi = "the end" if to_ms is None else format_ms(to_ms)
        raise ArchiveRangeError(
            f"no archived events from {lo} to {hi}: {archive.describe(committed)}"
        )
    start = None if from_ms is None else from_ms - warmup
    end = None if to_ms is None else to_ms + lookahead
    for frame in archive.batches(committed, start, end, batch_size):
        yield RawBatch(
            lines=frame["raw"].to_list(),
            positions=frame.select(pl.format("archive#{}", pl.col("n")).alias("p"))["p"].to_list(),
        )


def committed_seq(data_dir: str | Path) -> int | None:
    """The archive sequence the store committed (None: no store, trust every file)."""
    try:
        meta = Store(data_dir, read_only=True).meta()
    except Exception:  # no store yet (an archive copied elsewhere): read every file
        return None
    return int(meta.get(META_SEQ, "0"))


def source_events(spec: PipelineSpec, uri: str) -> Iterator[RawBatch]:
    """Every event of a bounded source URI (``file:``, ``generator:``, ``kafka://`` to its end)."""
    from riskstream.sources.uri import build_source, source_spec_from_uri

    source = build_source(spec, source_spec_from_uri(uri), until_end=True)
    try:
        while True:
            batch = source.read_batch(spec.batch_size, timeout_s=1.0)
            if batch is None:
                return
            if batch.lines:
                yield batch
    finally:
        source.close()


def stored_labels(data_dir: str | Path) -> pl.DataFrame:
    """Labels kept in the store (imports and analysts' decisions); empty without a store."""
    try:
        store = Store(data_dir, read_only=True)
    except Exception:
        return pl.DataFrame(schema=LABEL_SCHEMA)
    try:
        return store.labels()
    finally:
        store.close()


def replay_archive(
    spec: PipelineSpec,
    data_dir: str | Path,
    features: Sequence[str] = (),
    *,
    rules: Mapping[str, str] | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    base_dir: Path | None = None,
) -> pl.DataFrame:
    """:func:`replay` over the archive of ``data_dir`` with warm-up and the stored labels."""
    rules = dict(rules or {})
    events = archive_events(spec, data_dir, from_ms, to_ms, warmup=warmup_ms(spec, features, rules))
    return replay(
        spec,
        events,
        features,
        rules=rules,
        labels=stored_labels(data_dir),
        from_ms=from_ms,
        to_ms=to_ms,
        base_dir=base_dir,
    )
