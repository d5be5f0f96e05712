"""Apache Kafka source: a consumer group for streaming, an assign-only consumer for replays.

Positions: partition ``"{topic}/{partition}"``, event position ``"{topic}/{partition}@{offset}"``,
``resume[partition] = last offset + 1``; the runner stores them in each checkpoint.

Where a partition starts when it is assigned (consumer group)
    ``max(position in this engine's store, offset committed in Kafka)``; with neither,
    ``auto.offset.reset`` (earliest unless ``source.options.auto_offset_reset`` says otherwise).
    Offsets are committed to Kafka only *after* the store holds them (asynchronously after
    each checkpoint, synchronously when partitions are revoked and at close), so the
    committed offset never runs ahead of what some engine's store counted. One engine: the
    store is the source of truth (committed <= stored) -- exactly-once across crashes.
    Several engines in one group, each with its own data dir: a partition handed over
    continues at the committed offset, which the previous owner wrote right after
    checkpointing it (on revoke), so every event is counted by exactly one store.

Rebalance
    ``on_revoke``: the runner's checkpoint callback runs first (it writes the pending state),
    then the revoked partitions' stored positions are committed synchronously, then they are
    given up. ``on_lost`` (the group dropped us, e.g. a long broker outage): checkpoint too,
    but nothing can be committed. ``on_assign`` of partitions this engine did not hold just
    before: the runner's reload callback reloads the pipeline state from its store.

Replay (``from_ms``/``to_ms``)
    No group: partitions are assigned directly, so the live group is never disturbed. Each
    partition starts at ``offsets_for_times(from - max_lateness)`` and stops at
    ``offsets_for_times(to + max_lateness)`` (or the end seen at start); events whose event
    time is outside ``[from, to)`` are dropped here (not counted, not quarantined). Kafka
    message timestamps must be close to event times (producers should set them to the event
    time) for the offsets to bracket the range.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from riskstream.errors import SourceError
from riskstream.sources._kafka_config import (
    PARTITION_EOF,
    UNKNOWN_TOPIC,
    UNKNOWN_TOPIC_OR_PART,
    DeadLetterProducer,
    client_config,
    log,
    part_name,
    quiet_client,
    split_part,
)
from riskstream.sources._kafka_formats import AvroToJson, TimeFilter
from riskstream.sources.base import RawBatch
from riskstream.spec.durations import parse_duration
from riskstream.spec.model import PipelineSpec, SourceSpec

_META_TIMEOUT_S = 30.0
_LAG_EVERY_S = 0.5


class KafkaSource:
    """Reads one or more topics in micro-batches (see the module docstring for the guarantees)."""

    def __init__(
        self,
        spec: PipelineSpec,
        src: SourceSpec,
        *,
        until_end: bool = False,
        from_ms: int | None = None,
        to_ms: int | None = None,
    ) -> None:
        if not src.topics:
            raise SourceError("source.topics: at least one Kafka topic is needed")
        self.topics = list(src.topics)
        self.group = src.group
        self.replay = from_ms is not None or to_ms is not None
        self.until_end = until_end or self.replay
        # Replays keep their own positions: a replay never resumes from a live run's offsets.
        self.name = ("kafka-replay:" if self.replay else "kafka:") + ",".join(self.topics)
        options = dict(src.options)
        base = client_config(src.brokers, options)
        lateness = parse_duration(spec.event.max_lateness)
        self._from_offset_ms = None if from_ms is None else from_ms - lateness
        self._to_offset_ms = None if to_ms is None else to_ms + lateness
        self._filter = TimeFilter(spec.event.time, from_ms, to_ms) if self.replay else None
        self._avro: AvroToJson | None = None
        if src.format == "avro":
            if not src.avro_schema:
                raise SourceError("source.avro_schema: a schema file (.avsc) is needed for avro")
            self._avro = AvroToJson(
                src.avro_schema, confluent_header=options.get("avro_wire") == "confluent"
            )
        self._dlq: DeadLetterProducer | None = None
        if options.get("dead_letter_topic"):
            dlq_conf = client_config(options.get("dead_letter_brokers") or src.brokers, options)
            self._dlq = DeadLetterProducer(dlq_conf, options["dead_letter_topic"])

        self._next: dict[str, int] = {}  # next offset to read, per partition
        self._checkpointed: dict[str, int] = {}  # what the store holds (safe to commit)
        self._committed: dict[str, int] = {}  # last offsets sent to Kafka
        self._assigned: set[str] = set()
        self._before: set[str] = set()  # held just before the current rebalance
        self._end: dict[str, int] = {}  # stop offsets (until_end, replay)
        self._paused: set[str] = set()
        self._names: dict[tuple[str, int], str] = {}
        self._ever_assigned = False
        self._rebalancing = False
        self._seen_topics: set[str] = set()
        self._closed = False
        self._on_checkpoint: Callable[[], None] | None = None
        self._on_reload: Callable[[], None] | None = None
        self._lag: dict[str, int] = {}
        self._lag_at = 0.0

        conf: dict[str, Any] = {
            "group.id": f"riskstream-replay-{uuid.uuid4().hex}" if self.replay else self.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": options.get("auto_offset_reset", "earliest"),
            "enable.partition.eof": True,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 10_000,
            "on_commit": self._commit_done,
        }
        conf.update(base)
        self._cooperative = "cooperative" in str(conf["partition.assignment.strategy"])
        try:
            self._consumer = Consumer(quiet_client(conf, "source"))
        except KafkaException as exc:
            raise SourceError(f"kafka source: {exc.args[0].str()}") from None
        if not self.replay:
            self._consumer.subscribe(
                self.topics, on_assign=self._assign, on_revoke=self._revoke, on_lost=self._lost
            )

    # ---- the Source protocol -----------------------------------------------------------

    def seek(self, positions: Mapping[str, int]) -> None:
        """Remember the store's positions; they apply when partitions are assigned."""
        for part, offset in positions.items():
            if "/" in part:
                self._next[part] = int(offset)
                self._checkpointed[part] = int(offset)

    def read_batch(self, max_events: int, timeout_s: float) -> RawBatch | None:
        """Up to ``max_events`` messages; an empty batch on timeout; None once past the end offsets."""
        if self.replay and not self._ever_assigned:
            self._assign_replay()
        if self.until_end and self._finished():
            return None
        try:
            msgs: Sequence[Message] = self._consumer.consume(
                num_messages=max_events, timeout=timeout_s
            )
        except KafkaException as exc:
            raise SourceError(f"kafka source: {exc.args[0].str()}") from None
        lines: list[bytes] = []
        positions: list[str] = []
        received: list[int] = []
        resume: dict[str, int] = {}
        assigned, nxt, end, names = self._assigned, self._next, self._end, self._names
        for m in msgs:
            if m.error() is not None:
                self._message_error(m)
                continue
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            if topic is None or partition is None or offset is None:
                continue
            part = names.get((topic, partition))
            if part is None:
                part = names.setdefault((topic, partition), part_name(topic, partition))
            if part not in assigned:
                continue  # fetched before the partition was revoked
            if offset < nxt.get(part, -1):
                continue  # fetched again after a re-assignment
            stop = end.get(part)
            if stop is not None and offset >= stop:
                # Beyond the end offsets of --until-end / the replay: every offset before the
                # end was delivered (a transaction marker may sit just before it).
                nxt[part] = max(nxt.get(part, stop), stop)
                continue
            value = m.value()
            lines.append(value if value is not None else b"")
            positions.append(f"{part}@{offset}")
            received.append(m.timestamp()[1])
            nxt[part] = resume[part] = offset + 1
        if self.until_end:
            self._pause_finished()
        if self._avro is not None and lines:
            lines = self._avro.convert(lines)
        if self._filter is not None and lines:
            keep = self._filter.keep(lines)
            if keep is not None:
                lines = [lines[i] for i in keep]
                positions = [positions[i] for i in keep]
                received = [received[i] for i in keep]
        return RawBatch(lines=lines, positions=positions, resume=resume, received_ms=received)

    def close(self) -> None:
        """Commit the stored positions, leave the group (prompt rebalance), flush the dead letters."""
        if self._closed:
            return
        self._closed = True
        self._on_checkpoint = self._on_reload = None
        try:
            if not self.replay:
                self._commit(self._assigned, asynchronous=False)
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("kafka source: closing: %s", exc)
        finally:
            if self._dlq is not None:
                self._dlq.close()

    # ---- hooks the embedded runner uses ----------------------------------------------------

    def set_checkpoint_callback(self, fn: Callable[[], None] | None) -> None:
        """``fn`` checkpoints the runner's pending state now; called before partitions are given up."""
        self._on_checkpoint = fn

    def set_reload_callback(self, fn: Callable[[], None] | None) -> None:
        """``fn`` reloads pipeline state from the store; called when new partitions arrive."""
        self._on_reload = fn

    def after_checkpoint(self, positions: Mapping[str, int]) -> None:
        """The store now holds ``positions``: commit them to Kafka asynchronously (for lag tools)."""
        for part, offset in positions.items():
            if "/" in part:
                self._checkpointed[part] = int(offset)
        if not self.replay:
            self._commit(self._assigned, asynchronous=True)

    def dead_letter(self, records: Sequence[Any]) -> None:
        """Send quarantined records (committed in a checkpoint) to the dead-letter topic, if set."""
        if self._dlq is not None and records:
            self._dlq.send(records)

    def lag(self) -> dict[str, int]:
        """Per assigned partition: high watermark - next offset to read (refreshed every 0.5 s)."""
        now = time.monotonic()
        if now - self._lag_at < _LAG_EVERY_S:
            return self._lag
        self._lag_at = now
        lag: dict[str, int] = {}
        for part in sorted(self._assigned):
            nxt = self._next.get(part)
            if nxt is None:
                continue
            topic, partition = split_part(part)
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except (KafkaException, RuntimeError):
                continue
            if high is not None and high >= 0:
                lag[part] = max(0, high - nxt)
        self._lag = lag
        return lag

    # ---- rebalance callbacks (run inside consume(), on the runner's thread) ----------------

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalancing = False
        if not partitions:
            self._before = set()
            self._ever_assigned = True
            return
        committed = self._committed_offsets(partitions)
        targets: list[TopicPartition] = []
        for tp in partitions:
            part = part_name(tp.topic, tp.partition)
            self._seen_topics.add(tp.topic)
            known = [o for o in (self._next.get(part), committed.get(part)) if o is not None]
            start = max(known) if known else None
            if start is not None:
                self._next[part] = start
            if self.until_end and part not in self._end:
                self._end[part] = self._watermarks(tp.topic, tp.partition)[1]
            targets.append(
                TopicPartition(tp.topic, tp.partition, OFFSET_INVALID if start is None else start)
            )
        names = {part_name(tp.topic, tp.partition) for tp in partitions}
        new = names - self._assigned - self._before
        self._before = set()
        self._assigned |= names
        if self._cooperative:
            consumer.incremental_assign(targets)
        else:  # eager: the callback always carries the whole new assignment
            consumer.assign(targets)
        log.info("kafka source: assigned %s", ", ".join(sorted(names)))
        if self._ever_assigned and new and self._on_reload is not None:
            self._on_reload()
        self._ever_assigned = True

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        names = {part_name(tp.topic, tp.partition) for tp in partitions}
        self._rebalancing = True
        self._before |= self._assigned
        if self._on_checkpoint is not None:
            self._on_checkpoint()
        if not self._closed:
            self._commit(names & self._assigned, asynchronous=False, force=True)
        self._give_up(names)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        names = {part_name(tp.topic, tp.partition) for tp in partitions}
        log.warning("kafka source: partitions lost (group session expired): %s", sorted(names))
        self._rebalancing = True
        self._before |= self._assigned
        if self._on_checkpoint is not None:
            self._on_checkpoint()
        self._give_up(names)

    def _give_up(self, names: set[str]) -> None:
        self._assigned -= names
        self._paused -= names
        for part in names:
            self._lag.pop(part, None)

    # ---- helpers -------------------------------------------------------------------------

    def _commit(self, parts: set[str], *, asynchronous: bool, force: bool = False) -> None:
        offsets = [
            TopicPartition(*split_part(part), off)
            for part in sorted(parts)
            if (off := self._checkpointed.get(part)) is not None
            and (force or self._committed.get(part) != off)
        ]
        if not offsets:
            return
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("kafka source: commit failed: %s (retried later)", exc.args[0].str())
            return
        for tp in offsets:
            self._committed[part_name(tp.topic, tp.partition)] = tp.offset

    def _commit_done(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """``on_commit``: forget failed commits so that the next checkpoint sends them again."""
        if err is None and all(tp.error is None for tp in partitions):
            return
        for tp in partitions:
            if err is not None or tp.error is not None:
                self._committed.pop(part_name(tp.topic, tp.partition), None)
        log.warning("kafka source: commit failed: %s", err.str() if err else partitions)

    def _committed_offsets(self, partitions: list[TopicPartition]) -> dict[str, int]:
        query = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        for attempt in range(3):
            try:
                got = self._consumer.committed(query, timeout=_META_TIMEOUT_S / 3)
                return {
                    part_name(tp.topic, tp.partition): tp.offset for tp in got if tp.offset >= 0
                }
            except KafkaException as exc:
                log.warning("kafka source: reading committed offsets (%d/3): %s", attempt + 1, exc)
        return {}

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        deadline = time.monotonic() + 3 * _META_TIMEOUT_S
        while True:
            try:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=_META_TIMEOUT_S / 3
                )
                return int(low), int(high)
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise SourceError(
                        f"kafka source: cannot read the offsets of {topic}/{partition}: {exc}"
                    ) from None

    def _finished(self) -> bool:
        if not self._ever_assigned or self._rebalancing:
            return False
        for part in self._assigned:
            stop, nxt = self._end.get(part), self._next.get(part)
            if stop is None or nxt is None or nxt < stop:
                return False
        return True

    def _pause_finished(self) -> None:
        done = [
            part
            for part in self._assigned - self._paused
            if (stop := self._end.get(part)) is not None and self._next.get(part, -1) >= stop
        ]
        if done:
            self._consumer.pause([TopicPartition(*split_part(p)) for p in done])
            self._paused.update(done)

    def _message_error(self, m: Message) -> None:
        err = m.error()
        assert err is not None
        code = err.code()
        if code == PARTITION_EOF:
            part = part_name(str(m.topic()), int(m.partition() or 0))
            if part in self._assigned:
                at = int(m.offset() or 0)
                stop = self._end.get(part)
                if stop is not None:
                    at = min(at, stop)
                self._next[part] = max(self._next.get(part, at), at)
            return
        if err.fatal():
            raise SourceError(f"kafka source: {err.str()}")
        topic = m.topic()
        if code in (UNKNOWN_TOPIC_OR_PART, UNKNOWN_TOPIC) and topic not in self._seen_topics:
            raise SourceError(f"kafka source: topic {topic!r} does not exist ({err.str()})")
        log.warning("kafka source: %s", err.str())

    def _assign_replay(self) -> None:
        """Assign every partition of the topics between the offsets bracketing the time range."""
        try:
            meta = self._consumer.list_topics(timeout=_META_TIMEOUT_S)
        except KafkaException as exc:
            raise SourceError(
                f"kafka source: cannot reach the brokers: {exc.args[0].str()}"
            ) from None
        tps: list[TopicPartition] = []
        for topic in self.topics:
            info = meta.topics.get(topic)
            if info is None or info.error is not None or not info.partitions:
                raise SourceError(f"kafka source: topic {topic!r} does not exist")
            tps += [TopicPartition(topic, p) for p in sorted(info.partitions)]
        marks = {
            part_name(tp.topic, tp.partition): self._watermarks(tp.topic, tp.partition)
            for tp in tps
        }
        starts = self._offsets_for(tps, self._from_offset_ms, marks, use_high=False)
        stops = self._offsets_for(tps, self._to_offset_ms, marks, use_high=True)
        targets: list[TopicPartition] = []
        for tp in tps:
            part = part_name(tp.topic, tp.partition)
            start = max(starts[part], self._next.get(part, starts[part]))
            self._next[part] = start
            self._end[part] = stops[part]
            self._seen_topics.add(tp.topic)
            if start < stops[part]:
                targets.append(TopicPartition(tp.topic, tp.partition, start))
                self._assigned.add(part)
        self._consumer.assign(targets)
        self._ever_assigned = True
        log.info(
            "kafka replay: %s",
            ", ".join(f"{p} [{self._next[p]}, {self._end[p]})" for p in sorted(self._end)),
        )

    def _offsets_for(
        self,
        tps: list[TopicPartition],
        ts: int | None,
        marks: dict[str, tuple[int, int]],
        *,
        use_high: bool,
    ) -> dict[str, int]:
        """First offset with a timestamp >= ``ts`` per partition (the end when there is none)."""
        out = {p: (hi if use_high else lo) for p, (lo, hi) in marks.items()}
        if ts is None:
            return out
        query = [TopicPartition(tp.topic, tp.partition, max(0, ts)) for tp in tps]
        try:
            got = self._consumer.offsets_for_times(query, timeout=_META_TIMEOUT_S)
        except KafkaException as exc:
            raise SourceError(f"kafka source: offsets_for_times: {exc.args[0].str()}") from None
        for tp in got:
            part = part_name(tp.topic, tp.partition)
            if tp.error is not None:
                raise SourceError(f"kafka source: offsets_for_times {part}: {tp.error.str()}")
            out[part] = tp.offset if tp.offset >= 0 else marks[part][1]
        return out
