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
from riskstream.engine.decode import TIME, Quarantined
from riskstream.engine.pipeline import Pipeline
from riskstream.runners.spark import tasks
from riskstream.runners.spark.align import Carry, Cut, PartMark
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
    #: Events read but not released (the next batch's carry), or None.
    carried: pl.DataFrame | None
    #: Wall seconds per phase of the batch (building the plan, the one job): the profile.
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
) -> tuple[Any, Cut, Carry, int]:
    """This batch's rows (Kafka rows and the previous carry, not aligned yet), the :class:`Cut`
    that aligns them in the decode tasks, the new carry (without its events yet), Kafka rows read.

    One small Spark job: per partition, its last offset and largest message timestamp."""
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
    idx = F.create_map(*[F.lit(x) for kv in index.items() for x in kv]) if index else None
    batch = df.select(
        (
            (idx[F.col("_part")] if idx is not None else F.lit(0)).cast("long") * _PART_SHIFT
            + F.col("offset")
        ).alias("_seq"),
        F.lit(None).cast("long").alias("_pmax"),
        F.col("_part"),
        F.col("offset").alias("_off"),
        F.concat(F.col("_part"), F.lit("@"), F.col("offset").cast("string")).alias("_pos"),
        F.col("value").alias("_value"),
        F.col("ts").cast("long").alias("_ts"),
    )
    if carry.events is not None and carry.events.height:
        # One partition: a local relation is otherwise cut in defaultParallelism slices, each
        # one more Python task in every stage that reads it.
        old = spark.createDataFrame(carry.events.to_arrow(), schema=_event_schema()).coalesce(1)
        batch = batch.unionByName(old, allowMissingColumns=True)
    new = Carry(batch_id, parts)
    return batch, Cut(prev_pmax, new.frontier(end)), new, kafka_rows


def run_batch(
    spark: Any,
    batch: Any,
    cut: Cut,
    ctx: tasks.BatchContext,
    pipe: Pipeline,
    state: dict[tuple[str, str], tuple[pl.DataFrame, pl.DataFrame]],
) -> BatchResult:
    """Decode, features and buckets per dimension, rules: ONE Spark job, one collect.

    Every stage's output the driver needs (bucket blobs, quarantined events, the rows where a
    rule fires, counts, the carried events) travels to the last stage (``tasks.finish_part``)
    and is collected once: Spark's fixed cost per job (planning, scheduling, a Python worker
    round trip per stage) is paid once per batch, not once per result.
    """
    from pyspark.sql import functions as F

    started = time.perf_counter()
    nparts = int(spark.conf.get("spark.sql.shuffle.partitions"))
    # The decoded events feed every dimension and the last stage: decode each partition once.
    dec = batch.mapInArrow(
        partial(tasks.decode_part, ctx, cut), spark_schema(tasks.decode_schema(ctx.spec))
    ).persist()
    events = ["_seq", "_pmax", "_part", "_off", "_pos", "_value"]
    final = spark_schema(tasks.finish_schema(pipe))
    branches = [_conform(dec, final)]  # released events (EVENT) and carried ones (HELD)
    state_rows = 0
    # One shuffle per dimension: the metrics keyed by the same fields share it.
    by_dim: dict[tuple[str, ...], list[int]] = {}
    for i, metric in enumerate(pipe.metrics):
        by_dim.setdefault(tuple(metric.spec.dimension), []).append(i)
    for members in by_dim.values():
        names = [pipe.metrics[i].name for i in members]
        key = tasks.metric_key_col(members[0])
        inputs = [
            dec.filter((F.col("_kind") == tasks.EVENT) & F.col(key).isNotNull()).select(
                F.lit(tasks.EVENT).alias("_kind"),
                F.col(key).alias("key"),
                F.lit(None).cast("string").alias("_tier"),
                *events,
            )
        ]
        # The keys' recent state: one local relation per dimension (one round trip to the JVM).
        typed: list[pl.DataFrame] = []
        for (m, tier), (numeric, values) in state.items():
            if m not in names:
                continue
            for kind, frame, schema in (
                (tasks.STATE, numeric, feat.STATE_SCHEMA),
                (tasks.VALUES, values, dfeat.VALUE_STATE_SCHEMA),
            ):
                if frame.height:
                    state_rows += frame.height
                    typed.append(
                        frame.select(list(schema))
                        .cast(schema)  # type: ignore[arg-type]
                        .with_columns(
                            pl.lit(kind, pl.Int32).alias("_kind"),
                            pl.lit(f"{m}|{tier}").alias("_tier"),
                        )
                    )
        if typed:
            state_frame = pl.concat(typed, how="diagonal_relaxed").to_arrow()
            inputs.append(spark.createDataFrame(state_frame).coalesce(1))
        rows = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), inputs)
        out = rows.repartition(nparts, "key").mapInArrow(
            partial(tasks.metric_part, ctx, names),
            spark_schema(tasks.metric_schema(pipe, names)),
        )
        branches.append(_conform(out.withColumn("_kind", F.lit(tasks.FEATS)), final))
    planned = time.perf_counter()
    rows = reduce(lambda a, b: a.unionByName(b), branches)
    got = _polars(
        rows.repartition(nparts, "_seq")
        .mapInArrow(partial(tasks.finish_part, ctx), final)
        .toArrow()
    )
    dec.unpersist()
    of = pl.col("_kind")
    stats = got.filter(of == tasks.STATS)
    bad = got.filter(of == tasks.QUARANTINED)
    quarantined = [
        Quarantined(r["_qcode"], r["_qreason"], r["_pos"], r["_value"] or b"")
        for r in tasks.ordered(bad).iter_rows(named=True)
    ]
    blobs = [
        (str(r["_slot"]), bytes(r["_blob"]))
        for r in got.filter(of == tasks.FEATS).select("_slot", "_blob").iter_rows(named=True)
    ]
    wm = stats[TIME].max()
    carried = got.filter(of == tasks.HELD).select(events)
    done = time.perf_counter()
    return BatchResult(
        events=int(stats["_n"].sum()),
        quarantined=quarantined,
        hits=got.filter(of == tasks.HIT).drop("_kind", "_n", "_slot", "_blob"),
        blobs=blobs,
        max_time=None if wm is None else int(wm),  # type: ignore[arg-type]
        state_rows=state_rows,
        carried=carried if carried.height else None,
        phases={"plan": planned - started, "job": done - planned},
    )


def _conform(frame: Any, schema: Any) -> Any:
    """``frame`` with exactly the columns of ``schema`` (missing ones null), in its order."""
    from pyspark.sql import functions as F

    have = set(frame.columns)
    return frame.select(
        *[
            (F.col(f.name) if f.name in have else F.lit(None)).cast(f.dataType).alias(f.name)
            for f in schema.fields
        ]
    )


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
