"""The Spark runner's driver: one Structured Streaming query, ``foreachBatch`` per micro-batch.

Per micro-batch (batch id *N*):

1. **Fence.** The store holds the id of the last committed batch under the source
   ``spark:<pipeline>``; a batch at or below it is a replay after a crash and changes nothing.
2. **Align.** The batch's events plus the events carried by batch *N-1*; those every
   partition has passed are released in ingestion order, the rest carried (``align.py``).
3. **Decode** on the executors (times, metric keys, quarantine reasons).
4. **Features and buckets**, one shuffle per metric: the released events and their keys'
   recent state from the store meet in one partition per key (``tasks.metric_part``).
5. **Rules** on the executors over the events joined with all their features; the driver
   turns the (few) hits into cases in ingestion order (throttles, deterministic ids).
6. **Commit**: carry *N* to the checkpoint dir, then buckets, cases (outbox), throttles,
   quarantine length and the fence *N* in one store transaction; then the sinks deliver
   from the outbox and the quarantined events go to the dead-letter topic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from riskstream.core.checkpoint import Checkpoint
from riskstream.core.keys import CODE
from riskstream.engine.decode import Quarantined
from riskstream.engine.pipeline import Pipeline
from riskstream.runners.handoff import Handoff
from riskstream.runners.quarantine import QuarantineFile
from riskstream.runners.reload import SpecWatcher
from riskstream.runners.spark import stages
from riskstream.runners.spark.align import CarryStore
from riskstream.runners.spark.metrics import SparkMetrics
from riskstream.runners.spark.tasks import BatchContext, read_ipc
from riskstream.runners.stats import RunStats
from riskstream.sinks.base import Sink
from riskstream.spec.durations import parse_duration
from riskstream.spec.model import ListSpec, PipelineSpec
from riskstream.store.factory import open_store

FENCE = "batch"


@dataclass
class KafkaInput:
    """Where the stream comes from."""

    brokers: str
    topics: list[str]
    options: dict[str, str]


#: An open end for bucket reads (every bucket start is below it).
_NO_END = 2**62


class SparkRunner:
    """Runs one pipeline as a Spark Structured Streaming query into one store."""

    def __init__(
        self,
        spec: PipelineSpec,
        source: KafkaInput,
        data_dir: Path,
        checkpoint_dir: Path,
        sinks: Callable[[dict[str, int]], list[Sink]],
        *,
        master: str | None = "local[2]",
        until_end: bool = False,
        spec_path: Path | None = None,
        log: Callable[[str], None] | None = None,
        on_batch: Callable[[RunStats], None] | None = None,
        session: Any = None,
        max_events: int | None = None,
        store_dsn: str | None = None,
    ) -> None:
        self.spec = spec
        self.source = source
        self.data_dir = data_dir
        self.checkpoint_dir = checkpoint_dir
        self._make_sinks = sinks
        self.master = master
        self.until_end = until_end
        self.spec_path = spec_path
        self.log = log or (lambda msg: None)
        self.on_batch = on_batch
        self.session = session
        self.max_events = max_events or spec.batch_size
        self.store_dsn = store_dsn
        self.stats = RunStats()
        self.pipeline = Pipeline(spec, spec_path.parent if spec_path else None)
        self.fence_source = f"spark:{spec.name}"
        self._spec_watch = SpecWatcher(spec_path)
        self.metrics = SparkMetrics()
        self.progress: dict[str, Any] = {}
        self._end_offsets: dict[str, int] | None = None
        self._last_compact = time.monotonic()

    # ---- the run -----------------------------------------------------------------------

    def run(self) -> RunStats:
        """Start the query; return when the source is consumed (``until_end``) or on a stop."""
        from riskstream.runners.spark.session import build_session

        spark = self.session or build_session(self.master)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_store(self.spec, self.data_dir, self.store_dsn, engine=True, log=self.log)
        self.store.configure_tiers(self.spec.tiers)
        meta = self.store.meta()
        self.quarantine = QuarantineFile(
            self.data_dir / "quarantine.jsonl", int(meta.get("quarantine_bytes", "0"))
        )
        self._restore(meta)
        self.carries = CarryStore(self.checkpoint_dir)
        marks = self.store.sink_marks()
        self.handoff = Handoff(self._make_sinks(marks))
        self.handoff.redeliver(self.store, marks, self.log)
        self.dead_letter = stages.dead_letter_producer(self.spec, self.source.brokers)
        if self.until_end:
            self._end_offsets = stages.end_offsets(self.source)
        reader = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", self.source.brokers)
            .option("subscribe", ",".join(self.source.topics))
            .option("startingOffsets", "earliest")
            .option("failOnDataLoss", "false")
            .option("maxOffsetsPerTrigger", str(self.max_events))
        )
        for k, v in self.source.options.items():
            reader = reader.option(k, v)
        raw = reader.load().selectExpr(
            "topic", "partition", "offset", "unix_millis(timestamp) AS ts", "value"
        )
        writer = (
            raw.writeStream.foreachBatch(self._batch)
            .option("checkpointLocation", str(self.checkpoint_dir / "spark"))
            .queryName(f"riskstream-{self.spec.name}")
        )
        writer = (
            writer.trigger(availableNow=True)
            if self.until_end
            else writer.trigger(processingTime="1 second")
        )
        query = writer.start()
        try:
            query.awaitTermination()
        finally:
            self.handoff.flush(60.0, self.log)
            self.handoff.close()
            if self.dead_letter is not None:
                self.dead_letter.close()
            self.quarantine.close()
            self.store.close()
        self.stats.finished = time.monotonic()
        return self.stats

    def _restore(self, meta: dict[str, str]) -> None:
        self.pipeline.restore(meta, {}, self.store.throttles(), {})

    # ---- one micro-batch ---------------------------------------------------------------

    def metrics_summary(self) -> dict[str, Any]:
        """Batch count and latency percentiles."""
        return self.metrics.summary()

    def _batch(self, df: Any, batch_id: int) -> None:
        started = time.monotonic()
        t0 = time.perf_counter()
        fence = int(self.store.positions(self.fence_source).get(FENCE, -1))
        if batch_id <= fence:
            self.log(f"batch {batch_id} was committed before: skipped (replay)")
            return
        self._maybe_reload()
        self.pipeline.lists.refresh()
        carry = self.carries.load(fence)
        spark = df.sparkSession
        end = (
            self._end_offsets if self._end_offsets is not None else stages.end_offsets(self.source)
        )
        batch, cut, new_carry, kafka_rows = stages.align(spark, df, carry, batch_id, end)
        t_align = time.perf_counter()
        ctx = self._context()
        state = self._state(ctx)
        t_state = time.perf_counter()
        result = stages.run_batch(spark, batch, cut, ctx, self.pipeline, state)
        new_carry.events = result.carried
        t_run = time.perf_counter()
        cases = self._cases(result.hits)
        cp = self.pipeline.take_checkpoint(
            self.fence_source,
            {FENCE: batch_id, **{p: m.next_offset for p, m in new_carry.parts.items()}},
            cases,
        )
        for slot, blob in result.blobs:
            kind, metric, tier = slot.split("|")
            target = {
                "partials": cp.partials,
                "sketches": cp.sketches,
                "dists": cp.distributions,
                "values": cp.feature_values,
            }[kind]
            # Key codes are per task (engine.metrics.CODE): the store maps keys by text here.
            frame = read_ipc(blob).drop(CODE, strict=False)
            old = target.get((metric, tier))
            target[(metric, tier)] = frame if old is None else pl.concat([old, frame])
        if result.max_time is not None:
            wm = self.pipeline.watermark
            self.pipeline.watermark = result.max_time if wm is None else max(wm, result.max_time)
            cp.meta["watermark"] = str(self.pipeline.watermark)
        self.carries.save(new_carry)
        t_cases = time.perf_counter()
        self._commit(cp, cases, result.quarantined)
        self.carries.prune(batch_id - 1)
        now = time.perf_counter()
        dt = now - t0
        phases = {
            "align": t_align - t0,
            "state": t_state - t_align,
            **result.phases,
            "cases": t_cases - t_run,
            "commit": now - t_cases,
        }
        self.stats.batches += 1
        self.stats.events += result.events
        self.stats.cases += len(cases)
        for c in cases:
            self.stats.cases_by_rule[c.rule] += 1
        for q in result.quarantined:
            self.stats.quarantined[q.code] += 1
        self.stats.last_batch_s = dt
        self.stats.lag = {
            p: max(0, end.get(p, m.next_offset) - m.next_offset) for p, m in new_carry.parts.items()
        }
        carried = 0 if new_carry.events is None else new_carry.events.height
        self.metrics.observe(
            started=started,
            duration_s=dt,
            rows_read=kafka_rows,
            events=result.events,
            cases=len(cases),
            state_rows=result.state_rows + carried,
            lag=self.stats.lag,
        )
        self.progress = {
            "batch_id": batch_id,
            "kafka_rows": kafka_rows,
            "released": result.events + len(result.quarantined),
            "carried": carried,
            "state_rows": result.state_rows,
            "duration_s": round(dt, 3),
            "lag": dict(self.stats.lag),
            "phases_s": {k: round(v, 3) for k, v in phases.items()},
        }
        self.log(
            f"batch {batch_id}: {kafka_rows} read, {result.events} events, {len(cases)} cases, "
            f"{self.progress['carried']} carried, {dt:.2f}s "
            f"({', '.join(f'{k} {v:.2f}' for k, v in phases.items())})"
        )
        if self.on_batch:
            self.on_batch(self.stats)

    def _context(self) -> BatchContext:
        from riskstream.core import layout

        lists = self.pipeline.lists
        inline = {name: ListSpec(values=list(lists[name].values)) for name in self.spec.lists}
        spec = self.spec.model_copy(update={"lists": inline})
        return BatchContext(
            spec=spec,
            watermark=self.pipeline.watermark,
            available=self.pipeline.available_from(),
            rolled=layout.marks_from_meta(self.store.meta()),
        )

    def _state(self, ctx: BatchContext) -> dict[tuple[str, str], tuple[pl.DataFrame, pl.DataFrame]]:
        """Per feature group: the recent numeric state and distinct value rows from the store."""
        wm = ctx.watermark
        out: dict[tuple[str, str], tuple[pl.DataFrame, pl.DataFrame]] = {}
        if wm is None:
            return out
        for (metric, tier), group in self.pipeline.feature_groups.items():
            since = max(ctx.available[tier], wm - group.horizon_ms - 1000)
            numeric = pl.DataFrame()
            values = pl.DataFrame()
            if group.numeric:
                rows = self.store.buckets(metric, tier, None, since, _NO_END)
                numeric = rows.select(
                    "key",
                    pl.col("start").alias("b"),
                    "count",
                    "sum",
                    (pl.col("m2") + pl.col("sum") ** 2 / pl.col("count")).alias("sumsq"),
                    "min",
                    "max",
                )
            if group.distinct:
                values = self.store.feature_values(metric, tier, since)
            out[(metric, tier)] = (numeric, values)
        return out

    def _cases(self, hits: pl.DataFrame) -> list[Any]:
        if not hits.height:
            return []
        from riskstream.runners.spark.tasks import ordered, with_features

        frame = with_features(self.pipeline, ordered(hits))
        return self.pipeline._commit_cases(self.pipeline._fired(frame))

    def _commit(self, cp: Checkpoint, cases: list[Any], quarantined: list[Quarantined]) -> None:
        cp.meta["quarantine_bytes"] = str(self.quarantine.append(quarantined))
        cp.sink_marks = self.handoff.marks()
        self.store.write_checkpoint(cp)
        self.stats.checkpoints += 1
        self.handoff.deliver(cases)
        if quarantined and self.dead_letter is not None:
            self.dead_letter.send(quarantined)
        if (
            time.monotonic() - self._last_compact
            > parse_duration(self.spec.checkpoint.compact_every) / 1000
        ):
            self._compact()

    def _compact(self) -> None:
        wm = self.pipeline.watermark
        if wm is not None:
            self.store.roll_up(wm, self.spec.tiers)
            self.store.compact_before(
                self.pipeline.available_from(), self.pipeline.value_horizons()
            )
        self.store.fold_when_grown()
        self._last_compact = time.monotonic()

    def _maybe_reload(self) -> None:
        """Rules and lists hot-reload between micro-batches; a broken edit is refused and logged."""
        from riskstream.errors import SpecError

        try:
            new = self._spec_watch.changed(self.spec)
            if new is None:
                return
            self.pipeline.reload(new)
        except SpecError as exc:
            self.stats.reload_errors.append(str(exc))
            self.log(f"spec reload refused, keeping the running rules: {exc}")
            return
        self.spec = new
        self.stats.reloads += 1
        self.log(f"spec reloaded: {len(new.rules)} rules, {len(new.lists)} lists")
