"""Kafka case sink: one message per case (key = case_id, value = the case body), exactly once.

Spec entry: ``{kind: kafka, brokers: host:port, topic: risk-cases}``; optional ``config``
(librdkafka settings, ``<name>_env: VAR`` reads a secret from the environment),
``dead_letter`` (file for cases Kafka refused permanently, default
``DATA_DIR/kafka-dead-letter.jsonl``), ``recover_scan`` (messages per partition searched
at start, default 100000).

How no case is written twice (by key), even when the engine is SIGKILLed:

* The producer is idempotent (``enable.idempotence``, ``acks=all``, no delivery timeout):
  librdkafka's retries never duplicate or reorder a partition's messages.
* The sink chooses the partition itself (murmur2 of the key, like Java clients), and
  each message carries headers ``riskstream-origin`` (an id kept in the data dir),
  ``riskstream-seq`` (the case's outbox seq) and ``riskstream-hw`` (the sink's delivered
  mark when it was produced). Within a partition, one origin's seqs only grow.
* At start the sink reads the tail of every partition back to its newest message of this
  origin: every case of this origin with seq <= that message's seq, in that partition, is
  already on the topic. Re-delivered cases (the engine re-sends everything after its
  persisted mark) are skipped when they are. The largest ``riskstream-hw`` seen is the
  sink's starting mark.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from riskstream.core.case import Case
from riskstream.errors import SinkError
from riskstream.kafka.config import PARTITION_EOF, client_config, quiet_client
from riskstream.sinks.base import SinkStats

log = logging.getLogger(__name__)

H_ORIGIN = "riskstream-origin"
H_SEQ = "riskstream-seq"
H_HW = "riskstream-hw"
H_PIPELINE = "riskstream-pipeline"

_KEYS = frozenset({"kind", "brokers", "topic", "config", "dead_letter", "recover_scan"})
_WINDOW = 2_000


def build_kafka_sink(spec: Mapping[str, Any], data_dir: Path, pipeline: str) -> KafkaCaseSink:
    """The sink for a ``{kind: kafka, brokers, topic, ...}`` entry; SinkError with one line if not."""
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise SinkError(
            f"kafka sink: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_KEYS - {'kind'}))})"
        )
    topic = spec.get("topic")
    if not isinstance(topic, str) or not topic:
        raise SinkError("kafka sink: 'topic' is required")
    brokers = spec.get("brokers")
    if not isinstance(brokers, str) or not brokers:
        raise SinkError(f"kafka sink {topic}: 'brokers' is required (host:port[,host:port])")
    config = spec.get("config") or {}
    if not isinstance(config, Mapping):
        raise SinkError(f"kafka sink {topic}: 'config' must be a map of librdkafka settings")
    scan = spec.get("recover_scan", 100_000)
    if not isinstance(scan, int) or isinstance(scan, bool) or scan < 1:
        raise SinkError(f"kafka sink {topic}: recover_scan must be a positive integer")
    dead = spec.get("dead_letter")
    return KafkaCaseSink(
        brokers,
        topic,
        data_dir=data_dir,
        pipeline=pipeline,
        config={str(k): v for k, v in config.items()},
        dead_letter_path=Path(dead).expanduser() if dead else None,
        recover_scan=scan,
    )


class KafkaCaseSink:
    """Delivers cases to a Kafka topic; ``delivered_seq`` is a contiguous high-water mark."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        *,
        data_dir: Path,
        pipeline: str,
        config: Mapping[str, Any] | None = None,
        dead_letter_path: Path | None = None,
        recover_scan: int = 100_000,
        recover_timeout_s: float = 60.0,
        stall_s: float = 10.0,
    ) -> None:
        self.name = f"kafka:{topic}"  # the key of the engine's mark (runners/session.py)
        self.topic = topic
        self.pipeline = pipeline
        self.stall_s = stall_s
        where = f"kafka sink {topic}"
        self._base = client_config(
            brokers, dict(config or {}), prefix="", where=where, error=SinkError
        )
        origin, self._fresh = _origin_id(data_dir)
        self._origin = origin.encode()
        self._dead_letter_path = dead_letter_path or data_dir / "kafka-dead-letter.jsonl"
        conf = quiet_client(dict(self._base), "cases")
        conf = {
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": 0,  # retry until delivered (the engine's backpressure)
            "linger.ms": 20,
            "compression.type": "lz4",
            **conf,
        }
        self._reporter = conf["error_cb"]
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            raise SinkError(f"{where}: {exc.args[0].str()}") from None
        self._partitions, self._tail, hw = self._recover(recover_scan, recover_timeout_s)
        self._handed = hw  # highest seq handed over (or known delivered)
        self._first = True
        self._order: deque[int] = deque()  # produced, in seq order, not yet known delivered
        self._done: set[int] = set()
        self._delivered = 0
        self._skipped = 0
        self._dead = 0
        self._closed = False

    # ---- the Sink protocol ---------------------------------------------------------------

    def deliver(self, cases: Sequence[Case]) -> None:
        """Produce cases not yet on the topic; blocks while librdkafka's queue is full."""
        if self._closed:
            raise SinkError(f"{self.name}: sink is closed")
        if self._reporter.fatal is not None:
            raise SinkError(f"{self.name}: producer failed: {self._reporter.fatal.str()}")
        for case in cases:
            if case.seq <= self._handed:
                continue  # handed over before (re-delivery after a restart)
            if self._first:  # the engine re-sends from its mark: everything below is delivered
                self._first = False
                self._handed = max(self._handed, case.seq - 1)
            self._handed = case.seq
            key = case.case_id.encode()
            partition = murmur2_partition(key, self._partitions)
            if case.seq <= self._tail.get(partition, 0):
                self._skipped += 1  # written before a crash; the mark did not know it yet
                continue
            self._order.append(case.seq)
            headers: list[tuple[str, str | bytes | None]] = [
                (H_ORIGIN, self._origin),
                (H_SEQ, str(case.seq).encode()),
                (H_HW, str(self.delivered_seq()).encode()),
                (H_PIPELINE, self.pipeline.encode()),
            ]
            callback = functools.partial(self._on_delivery, case.seq)
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        value=case.body(),
                        key=key,
                        partition=partition,
                        headers=headers,
                        on_delivery=callback,
                    )
                    break
                except BufferError:  # local queue full: wait for deliveries
                    self._producer.poll(0.1)
        self._producer.poll(0)

    def delivered_seq(self) -> int:
        """Every case with ``seq <=`` this is on the topic (or dead-lettered)."""
        order, done = self._order, self._done
        while order and order[0] in done:
            done.discard(order.popleft())
        return order[0] - 1 if order else self._handed

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait for outstanding deliveries; False when some are still in flight.

        Gives up early when nothing was delivered for ``stall_s`` (brokers unreachable): the
        engine re-delivers from its outbox on the next start, so a shutdown stays prompt.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last, last_change = self._delivered + self._dead, time.monotonic()
        while True:
            now = time.monotonic()
            step = 1.0 if deadline is None else max(0.0, min(1.0, deadline - now))
            left = self._producer.flush(step)
            done = self._delivered + self._dead
            if done != last:
                last, last_change = done, time.monotonic()
            if left == 0 or (deadline is not None and time.monotonic() >= deadline):
                break
            if time.monotonic() - last_change > self.stall_s:
                log.warning(
                    "%s: no delivery for %.0f s; giving up the flush", self.name, self.stall_s
                )
                break
        self.delivered_seq()
        return left == 0 and not self._order

    def stats(self) -> SinkStats:
        """Delivered, dead-lettered and in-flight cases since start."""
        return SinkStats(
            delivered=self._delivered,
            dead_lettered=self._dead,
            in_flight=len(self._order) - len(self._done),
        )

    def close(self) -> None:
        """Flush (up to 10 s); what is left is re-delivered by the engine on the next start."""
        if self._closed:
            return
        if not self.flush(10.0):
            log.warning("%s: %d cases still in flight at close", self.name, len(self._order))
        self._closed = True

    # ---- internals -----------------------------------------------------------------------

    def _on_delivery(self, seq: int, err: Any, msg: Message) -> None:
        if err is None:
            self._delivered += 1
        else:  # not retriable (message too large, authorization ...): keep it in a file
            self._dead += 1
            log.error("%s: case seq %d refused by Kafka: %s", self.name, seq, err.str())
            record = {
                "error": err.str(),
                "topic": self.topic,
                "key": (msg.key() or b"").decode(errors="replace"),
                "case": orjson.loads(msg.value() or b"null"),
            }
            with contextlib.suppress(OSError), self._dead_letter_path.open("ab") as f:
                f.write(orjson.dumps(record) + b"\n")
        self._done.add(seq)

    def _recover(self, limit: int, timeout_s: float) -> tuple[int, dict[int, int], int]:
        """(partition count, newest seq of this origin per partition, largest hw header)."""
        conf = quiet_client(dict(self._base), "cases-recovery")
        conf.update(
            {
                "group.id": f"riskstream-sink-recovery-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        consumer = Consumer(conf)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    meta = consumer.list_topics(self.topic, timeout=10)
                    info = meta.topics.get(self.topic)
                    if info is not None and info.error is None and info.partitions:
                        break
                    problem = f"topic {self.topic!r} does not exist (create it first)"
                except KafkaException as exc:
                    problem = f"cannot reach the brokers: {exc.args[0].str()}"
                if time.monotonic() > deadline:
                    raise SinkError(f"{self.name}: {problem}")
                time.sleep(1.0)
            parts = sorted(info.partitions)
            tail: dict[int, int] = {}
            hw = 0
            if not self._fresh:  # a new data dir wrote nothing yet: nothing to look for
                ranges: dict[int, tuple[int, int]] = {}
                for p in parts:
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(self.topic, p), timeout=max(1.0, deadline - time.monotonic())
                    )
                    ranges[p] = (int(low), int(high))
                tail, hw = _scan_tail(consumer, self.topic, ranges, self._origin, limit, deadline)
        except KafkaException as exc:
            raise SinkError(f"{self.name}: reading the topic back: {exc.args[0].str()}") from None
        finally:
            consumer.close()
        if tail:
            log.info("%s: newest cases of this engine per partition: %s", self.name, tail)
        return len(parts), tail, hw


def _scan_tail(
    consumer: Consumer,
    topic: str,
    ranges: dict[int, tuple[int, int]],
    origin: bytes,
    limit: int,
    deadline: float,
) -> tuple[dict[int, int], int]:
    """Read partitions backwards in windows until each shows a message of ``origin``."""
    tail: dict[int, int] = {}
    hw = 0
    ends = {p: high for p, (low, high) in ranges.items() if high > low}
    window = _WINDOW
    while ends:
        starts = {
            p: max(ranges[p][0], end - window, ranges[p][1] - limit) for p, end in ends.items()
        }
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
        pending = set(ends)
        while pending:
            if time.monotonic() > deadline:
                raise SinkError(f"kafka:{topic}: timed out reading the topic back")
            for m in consumer.consume(num_messages=5_000, timeout=0.5):
                p = m.partition()
                assert p is not None
                if p not in pending:
                    continue
                err = m.error()
                offset = int(m.offset() or 0)
                if err is not None:
                    if err.code() == PARTITION_EOF:
                        pending.discard(p)
                    continue
                if offset >= ends[p]:
                    pending.discard(p)
                    continue
                headers = dict(m.headers() or [])
                if headers.get(H_ORIGIN) == origin:
                    with contextlib.suppress(KeyError, ValueError):
                        tail[p] = max(tail.get(p, 0), int(headers[H_SEQ]))  # type: ignore[arg-type]
                        hw = max(hw, int(headers[H_HW]))  # type: ignore[arg-type]
                if offset >= ends[p] - 1:
                    pending.discard(p)
        consumer.unassign()
        for p in list(ends):
            low, high = ranges[p]
            if p in tail or starts[p] <= low or high - starts[p] >= limit:
                del ends[p]
            else:
                ends[p] = starts[p]
        window *= 4
    return tail, hw


def _origin_id(data_dir: Path) -> tuple[str, bool]:
    """This data dir's producer identity (created once; it moves with the data dir), and
    whether it was created just now (then no message of it can be on the topic)."""
    path = data_dir / "kafka-sink.origin"
    with contextlib.suppress(OSError):
        text = path.read_text().strip()
        if text:
            return text, False
    data_dir.mkdir(parents=True, exist_ok=True)
    origin = uuid.uuid4().hex
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(origin + "\n")
    os.replace(tmp, path)
    return origin, True


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``) as an unsigned 32-bit int."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    end = length - length % 4
    for i in range(0, end, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    extra = length % 4
    if extra == 3:
        h ^= data[end + 2] << 16
    if extra >= 2:
        h ^= data[end + 1] << 8
    if extra >= 1:
        h ^= data[end]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Java's default partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
