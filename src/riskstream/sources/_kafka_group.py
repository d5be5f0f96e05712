"""Partition ownership of the Kafka source: group rebalance callbacks, commits, replay assignment.

See ``riskstream.sources.kafka`` for the guarantees; this mixin keeps the bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from riskstream.errors import SourceError
from riskstream.kafka.config import (
    PARTITION_EOF,
    UNKNOWN_TOPIC,
    UNKNOWN_TOPIC_OR_PART,
    log,
    part_name,
    split_part,
)
from riskstream.sources._kafka_align import Aligner
from riskstream.sources._kafka_offsets import (
    committed_offsets,
    replay_bounds,
    topic_partitions,
    watermarks,
)


class PartitionOwnership:
    """Which partitions this engine owns, where each starts and ends, and what is committed."""

    topics: list[str]
    until_end: bool
    _consumer: Consumer
    _aligner: Aligner
    _cooperative: bool
    _from_offset_ms: int | None
    _to_offset_ms: int | None
    _next: dict[str, int]  # next offset to hand to the engine, per partition
    _fetched: dict[str, int]  # next offset to fetch (the buffered ones are in between)
    _checkpointed: dict[str, int]  # what the store holds (safe to commit)
    _committed: dict[str, int]  # last offsets sent to Kafka
    _assigned: set[str]
    _before: set[str]  # held just before the current rebalance
    _end: dict[str, int]  # stop offsets (until_end, replay)
    _low: dict[str, int]  # low watermarks when the ends were taken (nothing to read below)
    _elsewhere: dict[str, int]  # committed offsets of partitions another member holds
    _elsewhere_at: float  # when ``_elsewhere`` was last asked of the group coordinator
    _all_ends: bool  # the end offsets of *every* partition were taken at start (bounded group run)
    _paused: set[str]
    _seen_topics: set[str]
    _ever_assigned: bool
    _rebalancing: bool
    _closed: bool
    _on_checkpoint: Callable[[], None] | None
    _on_reload: Callable[[], None] | None
    _positions_provider: Callable[[], Mapping[str, int]] | None

    # ---- rebalance callbacks (run inside consume(), on the runner's thread) ----------------

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._rebalancing = False
        before, self._before = self._before, set()
        first = not self._ever_assigned
        self._ever_assigned = True
        if not partitions:
            return
        committed = committed_offsets(consumer, partitions)
        if self._positions_provider is not None:
            # A shared store: its positions are the truth (another engine may have moved a
            # partition past what this engine remembers, and past Kafka's committed offset).
            shared = self._positions_provider()
            for tp in partitions:
                part = part_name(tp.topic, tp.partition)
                if part in shared:
                    self._next[part] = int(shared[part])
                    self._checkpointed[part] = int(shared[part])
                    committed.pop(part, None)
        targets: list[TopicPartition] = []
        names: set[str] = set()
        for tp in partitions:
            part = part_name(tp.topic, tp.partition)
            names.add(part)
            self._seen_topics.add(tp.topic)
            known = [o for o in (self._next.get(part), committed.get(part)) if o is not None]
            start = max(known) if known else None
            self._start(part, start)
            if self.until_end and part not in self._end:
                self._end[part] = watermarks(consumer, tp.topic, tp.partition)[1]
            targets.append(
                TopicPartition(tp.topic, tp.partition, OFFSET_INVALID if start is None else start)
            )
        new = names - self._assigned - before
        self._assigned |= names
        if self._cooperative:
            consumer.incremental_assign(targets)
        else:  # eager: the callback always carries the whole new assignment
            consumer.assign(targets)
        log.info("kafka source: assigned %s", ", ".join(sorted(names)))
        if not first and new and self._on_reload is not None:
            self._on_reload()

    def _start(self, part: str, offset: int | None) -> None:
        """Reading of ``part`` (re)starts at ``offset`` (None: committed / auto.offset.reset)."""
        self._aligner.drop([part])
        self._paused.discard(part)
        if offset is None:
            self._fetched.pop(part, None)
        else:
            self._next[part] = self._fetched[part] = offset

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
        self._aligner.drop(names)
        for part in names:
            self._fetched.pop(part, None)

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

    def _finished(self) -> bool:
        """Every partition of the topics consumed to its end offset taken at start (bounded run).

        Partitions this engine holds count by what it delivered; partitions another member of
        the group holds (a live engine, or a killed one until its session times out) count by
        the group's committed offsets: the run never ends while part of the topic is unread.
        """
        if not self._ever_assigned or self._rebalancing:
            return False
        if self._active():
            return False
        return not self.waiting_for(refresh=True)

    def take_all_ends(self) -> None:
        """A bounded group run: the end offsets of every partition of the topics, now."""
        for tp in topic_partitions(self._consumer, self.topics):
            part = part_name(tp.topic, tp.partition)
            low, high = watermarks(self._consumer, tp.topic, tp.partition)
            self._end.setdefault(part, high)
            self._low[part] = low
            self._seen_topics.add(tp.topic)
        self._all_ends = True

    def waiting_for(self, *, refresh: bool = False) -> list[str]:
        """Partitions this bounded run still needs but another group member holds.

        ``refresh`` asks the group coordinator for their committed offsets (at most once a
        second); otherwise the last answer is used.
        """
        if not self._all_ends:
            return []
        others = [p for p in self._end if p not in self._assigned and self._behind(p)]
        if others and refresh and time.monotonic() - self._elsewhere_at >= 1.0:
            self._elsewhere_at = time.monotonic()
            query = [TopicPartition(*split_part(p)) for p in others]
            self._elsewhere.update(committed_offsets(self._consumer, query))
            others = [p for p in others if self._behind(p)]
        return sorted(others)

    def _behind(self, part: str) -> bool:
        """Whether ``part`` has not been consumed (by anyone we know of) to its end offset."""
        end = self._end[part]
        if end <= self._low.get(part, 0):
            return False  # nothing to read (empty, or every message removed by retention)
        return max(self._next.get(part, -1), self._elsewhere.get(part, -1)) < end

    def _position(self, part: str) -> int | None:
        """The next offset of ``part`` to be counted, as far as this engine knows."""
        known = [o for o in (self._next.get(part), self._elsewhere.get(part)) if o is not None]
        if known:
            return max(known)
        return self._low.get(part)

    def _message_error(self, m: Message) -> str | None:
        """Handle an error event; returns the partition when it is an end-of-partition event."""
        err = m.error()
        assert err is not None
        code = err.code()
        if code == PARTITION_EOF:
            part = part_name(str(m.topic()), int(m.partition() or 0))
            if part not in self._assigned:
                return None
            at = int(m.offset() or 0)
            stop = self._end.get(part)
            if stop is not None:
                at = min(at, stop)
            self._fetched[part] = max(self._fetched.get(part, at), at)
            return part
        if err.fatal():
            raise SourceError(f"kafka source: {err.str()}")
        topic = m.topic()
        if code in (UNKNOWN_TOPIC_OR_PART, UNKNOWN_TOPIC) and topic not in self._seen_topics:
            raise SourceError(f"kafka source: topic {topic!r} does not exist ({err.str()})")
        log.warning("kafka source: %s", err.str())
        return None

    def _assign_replay(self) -> None:
        """Assign every partition of the topics between the offsets bracketing the time range."""
        bounds = replay_bounds(
            self._consumer, self.topics, self._from_offset_ms, self._to_offset_ms
        )
        targets: list[TopicPartition] = []
        for part, (first, stop) in bounds.items():
            start = max(first, self._next.get(part, first))  # a crashed replay resumes
            self._start(part, start)
            self._end[part] = stop
            self._low[part] = first
            topic, partition = split_part(part)
            self._seen_topics.add(topic)
            if start < stop:
                targets.append(TopicPartition(topic, partition, start))
                self._assigned.add(part)
        self._consumer.assign(targets)
        self._ever_assigned = True
        log.info(
            "kafka replay: %s",
            ", ".join(f"{p} [{self._next[p]}, {self._end[p]})" for p in sorted(self._end)),
        )

    def _active(self) -> set[str]:
        """Assigned partitions that still have events to deliver in this run."""
        return {
            part
            for part in self._assigned
            if (stop := self._end.get(part)) is None or self._next.get(part, -1) < stop
        }
