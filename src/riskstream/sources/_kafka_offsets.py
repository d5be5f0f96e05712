"""Offset look-ups of the Kafka source: watermarks, committed offsets, replay bounds by time."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from riskstream.errors import SourceError
from riskstream.kafka.config import log, part_name

META_TIMEOUT_S = 30.0


def watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    """(low, high) offsets, asked of the broker (retried for up to 90 s)."""
    deadline = time.monotonic() + 3 * META_TIMEOUT_S
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=META_TIMEOUT_S / 3
            )
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise SourceError(
                    f"kafka source: cannot read the offsets of {topic}/{partition}: {exc}"
                ) from None


def committed_offsets(consumer: Consumer, partitions: list[TopicPartition]) -> dict[str, int]:
    """The group's committed offsets by partition name (partitions without one are left out)."""
    query = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
    deadline = time.monotonic() + META_TIMEOUT_S
    while True:
        try:
            got = consumer.committed(query, timeout=META_TIMEOUT_S / 3)
            return {part_name(tp.topic, tp.partition): tp.offset for tp in got if tp.offset >= 0}
        except KafkaException as exc:  # e.g. NOT_COORDINATOR while the coordinator moves
            if time.monotonic() > deadline:
                log.warning("kafka source: committed offsets unknown (%s): using the store's", exc)
                return {}
            time.sleep(0.5)


def topic_partitions(consumer: Consumer, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics``; SourceError when a topic does not exist."""
    try:
        meta = consumer.list_topics(timeout=META_TIMEOUT_S)
    except KafkaException as exc:
        raise SourceError(f"kafka source: cannot reach the brokers: {exc.args[0].str()}") from None
    tps: list[TopicPartition] = []
    for topic in topics:
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise SourceError(f"kafka source: topic {topic!r} does not exist")
        tps += [TopicPartition(topic, p) for p in sorted(info.partitions)]
    return tps


def replay_bounds(
    consumer: Consumer, topics: list[str], from_ts: int | None, to_ts: int | None
) -> dict[str, tuple[int, int]]:
    """Per partition ``[start, stop)`` offsets: the first offsets with timestamps >= ``from_ts``
    and >= ``to_ts`` (the start / the end seen now when a bound is open or nothing is that new)."""
    tps = topic_partitions(consumer, topics)
    marks = {
        part_name(tp.topic, tp.partition): watermarks(consumer, tp.topic, tp.partition)
        for tp in tps
    }
    starts = _offsets_for(consumer, tps, from_ts, {p: lo for p, (lo, _) in marks.items()}, marks)
    stops = _offsets_for(consumer, tps, to_ts, {p: hi for p, (_, hi) in marks.items()}, marks)
    return {p: (starts[p], stops[p]) for p in marks}


def _offsets_for(
    consumer: Consumer,
    tps: list[TopicPartition],
    ts: int | None,
    default: dict[str, int],
    marks: dict[str, tuple[int, int]],
) -> dict[str, int]:
    if ts is None:
        return dict(default)
    query = [TopicPartition(tp.topic, tp.partition, max(0, ts)) for tp in tps]
    try:
        got = consumer.offsets_for_times(query, timeout=META_TIMEOUT_S)
    except KafkaException as exc:
        raise SourceError(f"kafka source: offsets_for_times: {exc.args[0].str()}") from None
    out: dict[str, int] = {}
    for tp in got:
        part = part_name(tp.topic, tp.partition)
        if tp.error is not None:
            raise SourceError(f"kafka source: offsets_for_times {part}: {tp.error.str()}")
        out[part] = tp.offset if tp.offset >= 0 else marks[part][1]
    return out
