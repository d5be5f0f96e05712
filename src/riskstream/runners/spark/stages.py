"""The Spark plan of one micro-batch: align, decode, one shuffle per metric, rules.

Everything here builds DataFrames and collects only what the driver must hold: per
partition counts (align), quarantined events, bucket partials (to write them in the
store's one transaction) and the rows where a rule fires.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial, reduce
from typing import Any

import polars as pl
import pyarrow as pa

from riskstream.engine import distinct_features as dfeat
from riskstream.engine import features as feat
from riskstream.engine.decode import Quarantined
from riskstream.engine.pipeline import Pipeline
from riskstream.runners.spark import tasks
from riskstream.runners.spark.align import Carry, PartMark
from riskstream.spec.model import PipelineSpec

#: seq of an event = partition index * 2**40 + offset (unique; offsets stay below 2**40).
_PART_SHIFT = 1 << 40


@dataclass
class BatchResult:
    """What the driver takes from one micro-batch."""

    events: int
    quarantined: list[Quarantined]
    hits: pl.DataFrame
    blobs: list[tuple[str, bytes]]
    max_time: int | None
    state_rows: int
    #: Wall seconds per phase of the batch (decode, one per dimension, rules): the profile.
    phases: dict[str, float]


def spark_schema(schema: pa.Schema) -> Any:
    """The Spark ``StructType`` of an Arrow schema made of the types the tasks use."""
    from pyspark.sql import types as T

    kinds = {
        "int64": T.LongType(),
        "int32": T.IntegerType(),
        "double": T.DoubleType(),
        "string": T.StringType(),
        "binary": T.BinaryType(),
    }
    return T.StructType([T.StructField(f.name, kinds[str(f.type)], True) for f in schema])


def _event_schema() -> Any:
    return spark_schema(pa.schema(list(tasks.EVENT_COLS.items())))


def align(
    spark: Any, df: Any, carry: Carry, batch_id: int, end: dict[str, int]
) -> tuple[Any, Carry, int]:
    """The events this batch releases (with the previous carry), the new carry, rows read."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = df.withColumn("_part", F.concat_ws("/", "topic", F.col("partition").cast("string")))
    parts = {p: PartMark(m.index, m.pmax, m.next_offset) for p, m in carry.parts.items()}
    stats = df.groupBy("_part").agg(
        F.max("offset").alias("last"), F.max("ts").alias("tsmax"), F.count("*").alias("n")
    )
    kafka_rows = 0
    prev_pmax = {p: m.pmax for p, m in parts.items()}
    for row in sorted(stats.collect(), key=lambda r: str(r["_part"])):
        part = str(row["_part"])
        kafka_rows += int(row["n"])
        mark = parts.get(part)
        if mark is None:
            mark = parts[part] = PartMark(len(parts), int(row["tsmax"]), 0)
        mark.pmax = max(mark.pmax, int(row["tsmax"]))
        mark.next_offset = max(mark.next_offset, int(row["last"]) + 1)
    index = {p: m.index for p, m in parts.items()}
    running = F.max("ts").over(
        Window.partitionBy("_part")
        .orderBy("offset")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    pmax = running
    if prev_pmax:
        prev = F.create_map(*[F.lit(x) for kv in prev_pmax.items() for x in kv])
        pmax = F.greatest(running, F.coalesce(prev[F.col("_part")], running))
    idx = F.create_map(*[F.lit(x) for kv in index.items() for x in kv]) if index else None
    batch = df.select(
        (
            (idx[F.col("_part")] if idx is not None else F.lit(0)).cast("long") * _PART_SHIFT
            + F.col("offset")
        ).alias("_seq"),
        pmax.cast("long").alias("_pmax"),
        F.col("_part"),
        F.col("offset").alias("_off"),
        F.concat(F.col("_part"), F.lit("@"), F.col("offset").cast("string")).alias("_pos"),
        F.col("value").alias("_value"),
    )
    if carry.events is not None and carry.events.height:
        old = spark.createDataFrame(carry.events.to_arrow(), schema=_event_schema())
        batch = batch.unionByName(old)
    new = Carry(batch_id, parts)
    frontier = new.frontier(end)
    if frontier is None:
        return batch, new, kafka_rows
    top, part = frontier
    leaves = (F.col("_pmax") < top) | ((F.col("_pmax") == top) & (F.col("_part") <= part))
    batch = batch.persist()
    held = batch.filter(~leaves).toArrow()
    if held.num_rows:
        events = pl.from_arrow(held)
        assert isinstance(events, pl.DataFrame)
        new.events = events
    return batch.filter(leaves), new, kafka_rows


def run_batch(
    spark: Any,
    released: Any,
    ctx: tasks.BatchContext,
    pipe: Pipeline,
    state: dict[tuple[str, str], tuple[pl.DataFrame, pl.DataFrame]],
) -> BatchResult:
    """Decode, features and buckets per metric, rules; see the module docstring."""
    from pyspark.sql import functions as F

    nparts = int(spark.conf.get("spark.sql.shuffle.partitions"))
    persisted: list[Any] = []
    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 3)
        clock = now

    def keep(frame: Any) -> Any:
        persisted.append(frame.persist())
        return frame

    released = keep(released)
    dec = keep(
        released.mapInArrow(
            partial(tasks.decode_part, ctx), spark_schema(tasks.decode_schema(ctx.spec))
        )
    )
    agg = dec.agg(F.max("_t").alias("wm"), F.count("_t").alias("n")).collect()[0]
    bad = _polars(
        dec.filter(F.col("_qcode").isNotNull())
        .select("_pmax", "_part", "_off", "_pos", "_qcode", "_qreason", "_value")
        .toArrow()
    )
    quarantined = [
        Quarantined(r["_qcode"], r["_qreason"], r["_pos"], r["_value"] or b"")
        for r in tasks.ordered(bad).iter_rows(named=True)
    ]
    lap("decode")
    events = ["_seq", "_pmax", "_part", "_off", "_pos", "_value"]
    joined = dec.filter(F.col("_t").isNotNull()).select(*events)
    blobs: list[tuple[str, bytes]] = []
    state_rows = 0
    # One shuffle per dimension: the metrics keyed by the same fields share it.
    by_dim: dict[tuple[str, ...], list[int]] = {}
    for i, metric in enumerate(pipe.metrics):
        by_dim.setdefault(tuple(metric.spec.dimension), []).append(i)
    for members in by_dim.values():
        names = [pipe.metrics[i].name for i in members]
        key = tasks.metric_key_col(members[0])
        inputs = [
            dec.filter(F.col(key).isNotNull()).select(
                F.lit(tasks.EVENT).alias("_kind"),
                F.col(key).alias("key"),
                F.lit(None).cast("string").alias("_tier"),
                *events,
            )
        ]
        for (m, tier), (numeric, values) in state.items():
            if m not in names:
                continue
            for kind, frame, schema in (
                (tasks.STATE, numeric, feat.STATE_SCHEMA),
                (tasks.VALUES, values, dfeat.VALUE_STATE_SCHEMA),
            ):
                if frame.height:
                    state_rows += frame.height
                    typed = (
                        frame.select(list(schema))
                        .cast(schema)  # type: ignore[arg-type]
                        .with_columns(
                            pl.lit(kind, pl.Int32).alias("_kind"),
                            pl.lit(f"{m}|{tier}").alias("_tier"),
                        )
                    )
                    inputs.append(spark.createDataFrame(typed.to_arrow()))
        rows = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), inputs)
        out = keep(
            rows.repartition(nparts, "key").mapInArrow(
                partial(tasks.metric_part, ctx, names),
                spark_schema(tasks.metric_schema(pipe, names)),
            )
        )
        for r in out.filter(F.col("_slot").isNotNull()).select("_slot", "_blob").collect():
            blobs.append((str(r["_slot"]), bytes(r["_blob"])))
        safe = tasks.safe_names(pipe)
        cols = [safe[n] for n, _ in tasks.feature_schema(pipe, names)]
        if cols:
            feats = out.filter(F.col("_slot").isNull()).select("_seq", *cols)
            joined = joined.join(feats, on="_seq", how="left")
        lap("metric:" + ",".join(names))
    hits = pl.DataFrame()
    if pipe.rules:
        hits = _polars(
            joined.mapInArrow(
                partial(tasks.rules_part, ctx), spark_schema(tasks.rules_schema(pipe))
            ).toArrow()
        )
    result = BatchResult(
        events=int(agg["n"]),
        quarantined=quarantined,
        hits=hits,
        blobs=blobs,
        max_time=None if agg["wm"] is None else int(agg["wm"]),
        state_rows=state_rows,
        phases=phases,
    )
    lap("rules")
    for frame in persisted:
        frame.unpersist()
    return result


def _polars(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def end_offsets(source: Any) -> dict[str, int]:
    """Each partition's current end offset (high watermark), by partition name."""
    from confluent_kafka import Consumer, TopicPartition

    from riskstream.kafka.config import part_name

    consumer = Consumer(
        {
            "bootstrap.servers": source.brokers,
            "group.id": "riskstream-spark-offsets",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        meta = consumer.list_topics(timeout=30)
        out: dict[str, int] = {}
        for topic in source.topics:
            t = meta.topics.get(topic)
            if t is None:
                continue
            for p in t.partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                out[part_name(topic, p)] = int(high)
        return out
    finally:
        consumer.close()


def dead_letter_producer(spec: PipelineSpec, brokers: str) -> Any:
    """The dead-letter producer of the spec's source options, or None."""
    opts = spec.source.options
    topic = opts.get("dead_letter_topic")
    if not topic:
        return None
    from riskstream.errors import SourceError
    from riskstream.kafka.config import DeadLetterProducer, client_config

    conf = client_config(opts.get("dead_letter_brokers") or brokers, opts, error=SourceError)
    return DeadLetterProducer(conf, topic)
