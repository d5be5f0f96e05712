"""What Spark executors run on each micro-batch: Arrow in, Arrow out, the engine's own functions.

Each function takes one Spark partition's rows (all of them: the ``mapInArrow`` iterator is
drained) and is vectorized over it (Polars/NumPy), one Python call per partition per batch,
never one per key or per event:

* :func:`decode_part` decodes the raw events and returns, per event, its time, its key for
  every metric (the shuffle keys) or its quarantine reason;
* :func:`metric_part` runs on the rows of one metric's keys (after a shuffle by that key):
  the events of the batch plus the keys' recent state from the store, and computes the exact
  sliding features of every feature group of the metric (``engine.features`` /
  ``engine.distinct_features``) and the bucket partials (``engine.metrics.Pending``);
* :func:`finish_part` runs on the rows of some events (after a shuffle by event id): each
  event and its feature rows from every dimension meet there; it evaluates the rules and
  keeps the rows where one fires (the driver makes the cases), and passes on what the driver
  must collect (bucket blobs, quarantined and carried events, counts) so that a micro-batch
  is one Spark job.

Ingestion order (the order the embedded engine's timestamp merge would give, see
``docs/spark.md``) is the sort by (``_pmax``, ``_part``, ``_off``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from riskstream.core.events import RawBatch
from riskstream.core.keys import KEY
from riskstream.engine import distinct_features as dfeat
from riskstream.engine import features as feat
from riskstream.engine.decode import SEQ, TIME
from riskstream.engine.metrics import Pending
from riskstream.engine.pipeline import Pipeline
from riskstream.runners.spark.align import Cut
from riskstream.spec.model import PipelineSpec

#: Columns of an event row as it travels between stages.
ORDER = ["_pmax", "_part", "_off"]
EVENT_COLS = {
    "_seq": pa.int64(),
    "_pmax": pa.int64(),
    "_part": pa.string(),
    "_off": pa.int64(),
    "_pos": pa.string(),
    "_value": pa.binary(),
}
#: The event's ``_seq`` (unique in the batch, not ordered) once decoded; see :func:`_decode`.
GSEQ = "_gseq"
#: Row kinds in a metric stage's input: batch event, numeric state row, distinct value row;
#: and in the finishing stage: feature rows or blobs of a metric stage, carried events, and
#: its outputs (events where a rule fires, quarantined events, per-partition counts).
EVENT, STATE, VALUES = 0, 1, 2
FEATS, HELD, HIT, QUARANTINED, STATS = 3, 4, 5, 6, 7


@dataclass(frozen=True)
class BatchContext:
    """What every task of one micro-batch needs (pickled into the tasks).

    ``spec`` has its lists inlined (the driver read the files), so executors need no files.
    """

    spec: PipelineSpec
    watermark: int | None
    available: dict[str, int]
    rolled: dict[str, int]

    def pipeline(self) -> Pipeline:
        """A fresh engine for this spec, at this batch's watermark (decoder and feature groups)."""
        p = Pipeline(self.spec)
        p.watermark = self.watermark
        return p


def metric_key_col(i: int) -> str:
    """The column holding metric number ``i``'s key in the decoded rows."""
    return f"_k{i}"


def feature_type(stat: str) -> pa.DataType:
    """Spark/Arrow type of a feature column: counts are integers, the rest floats."""
    return pa.int64() if stat in ("count", "distinct") else pa.float64()


def feature_schema(
    pipe: Pipeline, metrics: Sequence[str] | None = None
) -> list[tuple[str, pa.DataType]]:
    """(name, type) of the feature columns of ``metrics``' groups (all if None), in order."""
    out: dict[str, pa.DataType] = {}
    for (m, _tier), group in pipe.feature_groups.items():
        if metrics is not None and m not in metrics:
            continue
        for req in group.requests:
            out[req.name] = feature_type(req.stat)
    return list(out.items())


def safe_names(pipe: Pipeline) -> dict[str, str]:
    """Feature name -> its column name in Spark (``card.count(1m)`` -> ``_f0``: Spark resolves
    dots in column names as struct fields)."""
    return {name: f"_f{j}" for j, (name, _) in enumerate(feature_schema(pipe))}


def decode_schema(spec: PipelineSpec) -> pa.Schema:
    """Output of :func:`decode_part`."""
    fields = [pa.field("_kind", pa.int32())]
    fields += [pa.field(n, t) for n, t in EVENT_COLS.items()]
    fields += [pa.field(TIME, pa.int64()), pa.field("_qcode", pa.string())]
    fields += [pa.field("_qreason", pa.string())]
    fields += [pa.field(metric_key_col(i), pa.string()) for i in range(len(spec.metrics))]
    return pa.schema(fields)


def _drain(batches: Iterator[pa.RecordBatch]) -> pl.DataFrame | None:
    parts = [b for b in batches if b.num_rows]
    if not parts:
        return None
    frame = pl.from_arrow(pa.Table.from_batches(parts))
    assert isinstance(frame, pl.DataFrame)
    return frame


def _decode(pipe: Pipeline, events: pl.DataFrame) -> tuple[pl.DataFrame, Any]:
    """Decode ``events`` (already in ingestion order); ``_seq`` of the result is the events' own."""
    lines = events["_value"].to_list()
    raw = RawBatch(lines=[x or b"" for x in lines], positions=events["_pos"].to_list())
    decoded = pipe.decoder.decode(raw, 0, pipe.watermark)
    frame = decoded.frame
    seqs = events["_seq"].to_numpy()
    # The engine reads ``_seq`` as ingestion order (which of two rows came first): it stays the
    # rank in this sorted frame; ``_gseq`` is the event's id across the batch (the join key).
    frame = frame.with_columns(pl.Series(GSEQ, seqs[frame[SEQ].to_numpy()], dtype=pl.Int64))
    return frame, decoded.quarantined


def decode_part(
    ctx: BatchContext, cut: Cut, batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """Align, then decode: the rows this batch carries (HELD, as they are), and for the events
    it releases (EVENT) their times, metric keys and quarantine reasons (one row per event).

    Input: one Kafka partition's rows of the batch (``_pmax`` null, ``_ts`` the message
    timestamp) or carried rows (``_pmax`` set); see :class:`~riskstream.runners.spark.align.Cut`.
    """
    rows = _drain(batches)
    schema = decode_schema(ctx.spec)
    if rows is None:
        return
    rows = cut.apply(rows)
    held = rows.filter(pl.col("_held"))
    if held.height:
        yield from _to_arrow(held.with_columns(pl.lit(HELD, pl.Int32).alias("_kind")), schema)
    events = rows.filter(~pl.col("_held")).select(list(EVENT_COLS))
    if not events.height:
        return
    pipe = ctx.pipeline()
    events = events.sort(ORDER)
    frame, quarantined = _decode(pipe, events)
    keys = frame.select(
        pl.col(GSEQ).alias("_seq"),
        pl.col(TIME),
        *[m.key_expr().alias(metric_key_col(i)) for i, m in enumerate(pipe.metrics)],
    )
    bad = pl.DataFrame(
        {
            "_pos": [q.position for q in quarantined],
            "_qcode": [q.code for q in quarantined],
            "_qreason": [q.reason for q in quarantined],
        },
        schema={"_pos": pl.String, "_qcode": pl.String, "_qreason": pl.String},
    )
    out = (
        events.join(keys, on="_seq", how="left")
        .join(bad, on="_pos", how="left")
        .with_columns(pl.lit(EVENT, pl.Int32).alias("_kind"))
    )
    yield from _to_arrow(out, schema)


def metric_schema(pipe: Pipeline, metrics: Sequence[str]) -> pa.Schema:
    """Output of :func:`metric_part`: per event its features; per partition the bucket blobs."""
    fields = [pa.field("_seq", pa.int64()), pa.field("_slot", pa.string())]
    fields += [pa.field("_blob", pa.binary())]
    safe = safe_names(pipe)
    fields += [pa.field(safe[n], t) for n, t in feature_schema(pipe, metrics)]
    return pa.schema(fields)


def metric_part(
    ctx: BatchContext, metrics: Sequence[str], batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """Features and bucket partials of ``metrics`` (one dimension) for the keys in this partition.

    Input rows: ``_kind`` EVENT (an event of the batch with its key in ``key``), STATE (a
    numeric state row of ``_tier`` = ``metric|tier``: key, b, count, sum, sumsq, min, max) or
    VALUES (a distinct value row: key, b, c). Every row of a key is in this partition.
    """
    rows = _drain(batches)
    if rows is None:
        return
    pipe = ctx.pipeline()
    schema = metric_schema(pipe, metrics)
    events = rows.filter(pl.col("_kind") == EVENT).sort(ORDER)
    if not events.height:
        return  # keys with state but no event in this batch
    frame, _ = _decode(pipe, events)
    chosen = [m for m in pipe.metrics if m.name in metrics]
    contribs = {m.name: m.contributions(frame, pipe.lists) for m in chosen}
    queries = frame.select(chosen[0].key_expr().alias(KEY), pl.col(TIME), pl.col(SEQ))
    cols: list[pl.Series] = [frame[GSEQ].alias("_seq")]
    for (gm, tier), group in pipe.feature_groups.items():
        if gm not in metrics:
            continue
        contrib = contribs[gm]
        of_tier = rows.filter(pl.col("_tier") == f"{gm}|{tier}")
        avail = ctx.available[tier]
        if group.numeric:
            state = _state_of(of_tier, STATE, feat.STATE_SCHEMA, avail)
            out = feat.compute(queries, contrib, state, tier, group.numeric)
            cols.extend(out.get_columns())
        if group.distinct:
            vstate = _state_of(of_tier, VALUES, dfeat.VALUE_STATE_SCHEMA, avail)
            out = dfeat.compute_distinct(queries, contrib, vstate, tier, group.distinct)
            cols.extend(out.get_columns())
    feats = pl.DataFrame(cols).rename(safe_names(pipe), strict=False)
    yield from _to_arrow(feats.with_columns(_slot=pl.lit(None, pl.String)), schema)
    # Bucket partials and new distinct value rows of this partition's keys (one blob each).
    pending = Pending(rolled=dict(ctx.rolled))
    for m in chosen:
        pending.add(m, contribs[m.name], ctx.spec.tiers)
    partials, sketches, dists = pending.frames()
    blobs: list[tuple[str, bytes]] = []
    for kind, frames in (("partials", partials), ("sketches", sketches), ("dists", dists)):
        for (fm, tier), f in frames.items():
            if f.height:
                blobs.append((f"{kind}|{fm}|{tier}", _ipc(f)))
    for (gm, tier), group in pipe.feature_groups.items():
        if gm in metrics and group.distinct and contribs[gm].height:
            blobs.append((f"values|{gm}|{tier}", _ipc(dfeat.value_rows(contribs[gm], tier))))
    if blobs:
        out = pl.DataFrame(
            {"_slot": [s for s, _ in blobs], "_blob": [b for _, b in blobs]},
            schema={"_slot": pl.String, "_blob": pl.Binary},
        )
        yield from _to_arrow(out, schema)


def _state_of(
    rows: pl.DataFrame, kind: int, schema: dict[str, pl.DataType], avail: int
) -> pl.DataFrame:
    """The state rows of ``kind`` in ``rows`` (typed as ``schema``) still retained by the store."""
    if any(c not in rows.columns for c in schema):
        return pl.DataFrame(schema=schema)
    return (
        rows.filter(pl.col("_kind") == kind)
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
        .filter(pl.col("b") >= avail)
    )


def with_features(pipe: Pipeline, events: pl.DataFrame) -> pl.DataFrame:
    """Decode ``events`` (sorted) and attach their feature columns (matched on ``_seq``)."""
    frame, _ = _decode(pipe, events)
    names = [n for n, _ in feature_schema(pipe)]
    if not names:
        return frame
    # Rows without a key for a metric got no row from its stage: their count, sum and
    # distinct features are 0, as the embedded engine gives them.
    zero = list(
        {
            r.name
            for g in pipe.feature_groups.values()
            for r in g.requests
            if r.stat in ("count", "sum", "distinct")
        }
    )
    safe = safe_names(pipe)
    feats = events.select("_seq", *[pl.col(safe[n]).alias(n) for n in names])
    feats = feats.rename({"_seq": GSEQ})
    joined = frame.join(feats, on=GSEQ, how="left", maintain_order="left")
    return joined.with_columns(pl.col(zero).fill_null(0)) if zero else joined


def finish_schema(pipe: Pipeline) -> pa.Schema:
    """Input and output of :func:`finish_part`: one row layout for every kind of row."""
    fields = [pa.field("_kind", pa.int32())]
    fields += [pa.field(n, t) for n, t in EVENT_COLS.items()]
    fields += [pa.field(TIME, pa.int64()), pa.field("_n", pa.int64())]
    fields += [pa.field("_qcode", pa.string()), pa.field("_qreason", pa.string())]
    fields += [pa.field("_slot", pa.string()), pa.field("_blob", pa.binary())]
    safe = safe_names(pipe)
    fields += [pa.field(safe[n], t) for n, t in feature_schema(pipe)]
    return pa.schema(fields)


def finish_part(ctx: BatchContext, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The last stage of a micro-batch, over rows shuffled by event id (``_seq``).

    Input: the decoded events (``_kind`` EVENT, quarantined ones with ``_qcode``), their
    feature rows from every dimension's stage (FEATS: one row per event and dimension), the
    bucket blobs of those stages (FEATS with ``_slot``) and the carried rows (HELD). Output,
    collected by the driver in the batch's one action: the events where a rule fires (HIT,
    with all their features), the quarantined events (QUARANTINED), the blobs and carried
    rows as they came, and one STATS row (events, largest event time).
    """
    rows = _drain(batches)
    if rows is None:
        return
    pipe = ctx.pipeline()
    schema = finish_schema(pipe)
    kind = pl.col("_kind")
    passed = rows.filter((kind == HELD) | ((kind == FEATS) & pl.col("_slot").is_not_null()))
    if passed.height:
        yield from _to_arrow(passed, schema)
    events = rows.filter(kind == EVENT)
    bad = events.filter(pl.col("_qcode").is_not_null())
    if bad.height:
        yield from _to_arrow(bad.with_columns(pl.lit(QUARANTINED, pl.Int32).alias("_kind")), schema)
    valid = events.filter(pl.col(TIME).is_not_null())
    stats = pl.DataFrame(
        {"_kind": [STATS], "_n": [valid.height], TIME: [valid[TIME].max()]},
        schema={"_kind": pl.Int32, "_n": pl.Int64, TIME: pl.Int64},
    )
    yield from _to_arrow(stats, schema)
    if not valid.height or not pipe.rules:
        return
    safe = safe_names(pipe)
    cols = [safe[n] for n, _ in feature_schema(pipe)]
    base = valid.select(list(EVENT_COLS))
    if cols:
        # Each feature column is set by exactly one dimension's row of the event.
        feats = (
            rows.filter((kind == FEATS) & pl.col("_slot").is_null())
            .group_by("_seq")
            .agg([pl.col(c).drop_nulls().first() for c in cols])
        )
        base = base.join(feats, on="_seq", how="left")
    base = base.sort(ORDER)
    frame = with_features(pipe, base)
    fired = pl.any_horizontal(
        [r.compiled.expr(pipe.lists).fill_null(False) for r in pipe.rules]
    ).alias("_fired")
    hit = frame.select(GSEQ, fired).filter(pl.col("_fired"))[GSEQ]
    if hit.len():
        hits = base.filter(pl.col("_seq").is_in(hit.implode()))
        yield from _to_arrow(hits.with_columns(pl.lit(HIT, pl.Int32).alias("_kind")), schema)


def _ipc(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_ipc(buf)
    return buf.getvalue()


def read_ipc(blob: bytes) -> pl.DataFrame:
    """A frame written by a task (bucket partials, value rows)."""
    return pl.read_ipc(io.BytesIO(blob))


def _to_arrow(frame: pl.DataFrame, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``frame`` as record batches of exactly ``schema`` (missing columns null)."""
    n = frame.height
    arrays = []
    for f in schema:
        if f.name in frame.columns:
            arrays.append(frame[f.name].to_arrow().cast(f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    table = pa.Table.from_arrays(arrays, schema=schema)
    yield from table.to_batches(max_chunksize=100_000)


def ordered(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows in ingestion order."""
    return frame.sort(ORDER)
