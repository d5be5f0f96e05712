"""Apache Kafka source: a consumer group for streaming, an assign-only consumer for replays.

Positions: partition ``"{topic}/{partition}"``, event position ``"{topic}/{partition}@{offset}"``,
``resume[partition] = last offset + 1``; the runner stores them in each checkpoint.

Where a partition starts when it is assigned (consumer group)
    ``max(position in this engine's store, offset committed in Kafka)``; with neither,
    ``auto.offset.reset`` (earliest unless ``source.options.auto_offset_reset`` says otherwise).
    Offsets are committed to Kafka only *after* the store holds them (asynchronously after
    each checkpoint, synchronously when partitions are revoked and at close), so the
    committed offset never runs ahead of what some engine's store counted. One engine: the
    store is the source of truth (committed <= stored) -- exactly-once across crashes. A
    fresh data dir joining an existing group continues at the group's committed offsets
    (use a new group, or a replay, to count a topic again).
    Several engines in one group, each with its own data dir: a partition handed over
    continues at the committed offset, which the previous owner wrote right after
    checkpointing it (on revoke), so every event is counted by exactly one store; a metric's
    totals are the sum over the stores. Features of a key whose partition moved see only the
    new owner's history until their windows refill.

Rebalance
    ``on_revoke``: the runner's checkpoint callback runs first (it writes the pending state),
    then the revoked partitions' stored positions are committed synchronously, then they are
    given up. ``on_lost`` (the group dropped us, e.g. a long broker outage): checkpoint too,
    but nothing can be committed (with several engines, the events since the last commit may
    then be counted twice; one engine stays exact). ``on_assign`` of partitions this engine
    did not hold just before: the runner's reload callback reloads the pipeline state from
    its store.

Order
    Partitions are merged by message timestamp (see ``_kafka_align``), so an engine catching
    up does not run one partition's event time far ahead of another's. Lateness is judged
    against the engine's watermark: events of a partition arriving more than ``max_lateness``
    behind the others (e.g. handed over with an old backlog) are quarantined as too late.

Replay (``from_ms``/``to_ms``)
    No group: partitions are assigned directly, so the live group is never disturbed. Each
    partition starts at ``offsets_for_times(from - max_lateness)`` and stops at
    ``offsets_for_times(to + max_lateness)`` (or the end seen at start); events whose event
    time is outside ``[from, to)`` are dropped here (not counted, not quarantined). Kafka
    message timestamps must be close to event times (producers should set them to the event
    time) for the offsets to bracket the range.

``source.options``: ``kafka.<setting>`` (any librdkafka setting; ``kafka.<setting>_env``
reads it from an environment variable), ``auto_offset_reset``, ``dead_letter_topic``,
``dead_letter_brokers``, ``avro_wire: confluent`` (Schema Registry framing), ``align_wait_s``.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)

from riskstream.core.events import RawBatch
from riskstream.core.tiers import parse_duration
from riskstream.errors import SourceError
from riskstream.kafka.config import (
    DeadLetterProducer,
    client_config,
    log,
    part_name,
    quiet_client,
    split_part,
)
from riskstream.sources._kafka_align import Aligner
from riskstream.sources._kafka_formats import AvroToJson, TimeFilter
from riskstream.sources._kafka_group import PartitionOwnership
from riskstream.spec.model import PipelineSpec, SourceSpec


class KafkaSource(PartitionOwnership):
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
        base = client_config(src.brokers, options, error=SourceError)
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
            dlq_conf = client_config(
                options.get("dead_letter_brokers") or src.brokers, options, error=SourceError
            )
            self._dlq = DeadLetterProducer(dlq_conf, options["dead_letter_topic"])

        self._next: dict[str, int] = {}  # next offset to hand to the engine, per partition
        self._fetched: dict[str, int] = {}  # next offset to fetch (buffered ones are between)
        self._aligner = Aligner(float(options.get("align_wait_s", "10")))
        self._checkpointed: dict[str, int] = {}  # what the store holds (safe to commit)
        self._committed: dict[str, int] = {}  # last offsets sent to Kafka
        self._assigned: set[str] = set()
        self._before: set[str] = set()  # held just before the current rebalance
        self._end: dict[str, int] = {}  # stop offsets (until_end, replay)
        self._low: dict[str, int] = {}
        self._elsewhere: dict[str, int] = {}
        self._elsewhere_at = 0.0
        self._all_ends = False
        self._paused: set[str] = set()
        self._names: dict[tuple[str, int], str] = {}
        self._ever_assigned = False
        self._rebalancing = False
        self._seen_topics: set[str] = set()
        self._closed = False
        self._on_checkpoint: Callable[[], None] | None = None
        self._on_reload: Callable[[], None] | None = None
        #: A shared store's current positions (several engines, one store): read on assignment.
        self._positions_provider: Callable[[], Mapping[str, int]] | None = None

        conf: dict[str, Any] = {
            "group.id": f"riskstream-replay-{uuid.uuid4().hex}" if self.replay else self.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": options.get("auto_offset_reset", "earliest"),
            "enable.partition.eof": True,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 10_000,
            "fetch.wait.max.ms": 100,  # a paused partition's resume waits for the fetch in flight
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
        """Up to ``max_events`` events in timestamp order across partitions; None past the end."""
        if self.replay and not self._ever_assigned:
            self._assign_replay()
        elif self.until_end and not self._all_ends:
            self.take_all_ends()  # before the first assignment: ends "taken at start"
        if self.until_end and self._finished():
            return None
        buffered = sum(map(len, self._aligner.buffers.values()))
        if buffered >= max_events or (self._assigned and self._paused >= self._assigned):
            timeout_s = 0.0  # enough is buffered: do not wait for the network
        try:
            msgs: Sequence[Message] = self._consumer.consume(
                num_messages=max_events, timeout=timeout_s
            )
        except KafkaException as exc:
            raise SourceError(f"kafka source: {exc.args[0].str()}") from None
        self._buffer(msgs)
        self._flow_control(max_events)
        lines: list[bytes] = []
        positions: list[str] = []
        received: list[int] = []
        resume: dict[str, int] = {}
        for part, (ts, offset, value) in self._aligner.take(max_events, self._active()):
            lines.append(value)
            positions.append(f"{part}@{offset}")
            received.append(ts)
            resume[part] = offset + 1
        nxt = self._next
        nxt.update(resume)
        for part, fetched in self._fetched.items():
            if fetched > nxt.get(part, -1) and not self._aligner.size(part):
                nxt[part] = fetched  # offsets without messages (transaction markers, compaction)
        if self._avro is not None and lines:
            lines = self._avro.convert(lines)
        if self._filter is not None and lines:
            keep = self._filter.keep(lines)
            if keep is not None:
                lines = [lines[i] for i in keep]
                positions = [positions[i] for i in keep]
                received = [received[i] for i in keep]
        return RawBatch(lines=lines, positions=positions, resume=resume, received_ms=received)

    def _buffer(self, msgs: Sequence[Message]) -> None:
        """Fetched messages into the per-partition buffers (dropping stale and out-of-range ones)."""
        assigned, fetched, end, names = self._assigned, self._fetched, self._end, self._names
        aligner = self._aligner
        buffers = aligner.buffers
        latest: dict[str, int] = {}  # per partition, the timestamp of its last message here
        for m in msgs:
            if m.error() is not None:
                if part := self._message_error(m):  # end of partition: flush what came before
                    if part in latest:
                        aligner.fetched(part, latest.pop(part))
                    aligner.at_end(part)
                continue
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            if topic is None or partition is None or offset is None:
                continue
            part = names.get((topic, partition))
            if part is None:
                part = names.setdefault((topic, partition), part_name(topic, partition))
            if part not in assigned:
                continue  # fetched before the partition was revoked
            if offset < fetched.get(part, -1):
                continue  # fetched again after a re-assignment
            stop = end.get(part)
            if stop is not None and offset >= stop:
                # Past the end offset of --until-end / the replay: every offset before it
                # was delivered (a transaction marker may sit just before it).
                fetched[part] = max(fetched.get(part, stop), stop)
                continue
            buf = buffers.get(part)
            if buf is None:
                buf = buffers[part] = deque()
            ts = m.timestamp()[1]
            buf.append((ts, offset, m.value() or b""))
            fetched[part] = offset + 1
            latest[part] = ts
        for part, ts in latest.items():
            aligner.fetched(part, ts)

    def _flow_control(self, max_events: int) -> None:
        """Pause partitions at their end offsets, and those whose buffer is full (resume later)."""
        cap = max(5_000, 2 * max_events)
        pause: list[str] = []
        resume: list[str] = []
        for part in self._assigned:
            stop = self._end.get(part)
            at_end = stop is not None and self._fetched.get(part, -1) >= stop
            full = self._aligner.size(part) >= cap
            want = at_end or full
            if want and part not in self._paused:
                pause.append(part)
            elif part in self._paused and not at_end and self._aligner.size(part) < cap // 2:
                resume.append(part)
        if pause:
            self._consumer.pause([TopicPartition(*split_part(p)) for p in pause])
            self._paused.update(pause)
        if resume:
            self._consumer.resume([TopicPartition(*split_part(p)) for p in resume])
            self._paused.difference_update(resume)

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

    def set_positions_provider(self, fn: Callable[[], Mapping[str, int]] | None) -> None:
        """``fn`` returns the shared store's positions; assigned partitions start there."""
        self._positions_provider = fn

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
        """Events behind, per partition.

        Streaming: per assigned partition, high watermark (as last fetched) - next offset.
        Bounded (``--until-end``, replay): per partition of the run, held or not, its end
        offset - the next offset to be counted (what this run still has to read).
        """
        if self._all_ends or self.replay:
            lag: dict[str, int] = {}
            for part, end in sorted(self._end.items()):
                pos = self._position(part)
                if end <= self._low.get(part, 0):
                    lag[part] = 0
                elif pos is not None:
                    lag[part] = max(0, end - pos)
                else:
                    lag[part] = end
            return lag
        lag = {}
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
        return lag
