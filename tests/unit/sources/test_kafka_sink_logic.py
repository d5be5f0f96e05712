"""Kafka case sink without a broker: partitioner, delivered mark, skipping what a crash left behind."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from confluent_kafka import TopicPartition

import riskstream.sinks.kafka as sink_mod
from riskstream.core.case import Case
from riskstream.errors import SinkError
from riskstream.sinks.factory import build_sink
from riskstream.sinks.kafka import (
    H_HW,
    H_ORIGIN,
    H_SEQ,
    KafkaCaseSink,
    build_kafka_sink,
    murmur2,
    murmur2_partition,
)


def test_murmur2_matches_kafka_java_client() -> None:
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, signed in cases.items():
        assert murmur2(key) == signed & 0xFFFFFFFF, key
    assert all(0 <= murmur2_partition(k, 7) < 7 for k in cases)


class FakeProducer:
    instances: ClassVar[list[FakeProducer]] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.sent: list[dict[str, Any]] = []
        FakeProducer.instances.append(self)

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        partition: int,
        headers: list[tuple[str, bytes]],
        on_delivery: Any,
    ) -> None:
        self.sent.append(
            {
                "key": key,
                "value": value,
                "partition": partition,
                "headers": dict(headers),
                "cb": on_delivery,
            }
        )

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return sum(1 for m in self.sent if m["cb"] is not None)

    def ack(self, index: int, err: Any = None) -> None:
        m = self.sent[index]
        msg = SimpleNamespace(key=lambda: m["key"], value=lambda: m["value"])
        m["cb"](err, msg)
        m["cb"] = None


class FakeMsg:
    def __init__(
        self,
        partition: int,
        offset: int,
        headers: dict[str, bytes] | None = None,
        eof: bool = False,
    ) -> None:
        self.p, self.o, self.h, self.eof = partition, offset, headers or {}, eof

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def error(self) -> Any:
        return SimpleNamespace(code=lambda: -191) if self.eof else None

    def headers(self) -> list[tuple[str, bytes]]:
        return list(self.h.items())


class FakeTailConsumer:
    """A topic of 2 partitions whose messages are ``TOPIC[p]`` (lists of header dicts)."""

    topic: ClassVar[dict[int, list[dict[str, bytes]]]] = {}

    def __init__(self, conf: dict[str, Any]) -> None:
        self.queue: list[FakeMsg] = []

    def list_topics(self, topic: str, timeout: float) -> Any:
        info = SimpleNamespace(error=None, partitions={p: None for p in self.topic})
        return SimpleNamespace(topics={topic: info})

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, len(self.topic[tp.partition])

    def assign(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            msgs = self.topic[tp.partition]
            self.queue += [FakeMsg(tp.partition, o, msgs[o]) for o in range(tp.offset, len(msgs))]
            self.queue.append(FakeMsg(tp.partition, len(msgs), eof=True))

    def consume(self, num_messages: int, timeout: float) -> list[FakeMsg]:
        out, self.queue = self.queue, []
        return out

    def unassign(self) -> None:
        self.queue = []

    def close(self) -> None:
        pass


def _case(seq: int) -> Case:
    return Case(
        case_id=f"c{seq}",
        pipeline="p",
        rule="r",
        action="review",
        score=1.0,
        event_id=f"e{seq}",
        event_time=0,
        features={},
        event={},
        seq=seq,
    )


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeProducer.instances = []
    FakeTailConsumer.topic = {0: [], 1: []}
    monkeypatch.setattr(sink_mod, "Producer", FakeProducer)
    monkeypatch.setattr(sink_mod, "Consumer", FakeTailConsumer)


def _sink(tmp_path: Path) -> tuple[KafkaCaseSink, FakeProducer]:
    sink = build_kafka_sink({"kind": "kafka", "brokers": "fake:1", "topic": "cases"}, tmp_path, "p")
    return sink, FakeProducer.instances[-1]


def test_delivered_mark_is_contiguous(fakes: None, tmp_path: Path) -> None:
    sink, producer = _sink(tmp_path)
    assert sink.name == "kafka:cases" and sink.delivered_seq() == 0
    assert producer.conf["enable.idempotence"] is True and producer.conf["acks"] == "all"
    sink.deliver([_case(s) for s in (11, 12, 13)])  # the engine re-sends from its mark (10)
    assert sink.delivered_seq() == 10
    producer.ack(1)
    assert sink.delivered_seq() == 10  # 11 is still in flight
    producer.ack(0)
    assert sink.delivered_seq() == 12
    producer.ack(2, err=SimpleNamespace(str=lambda: "MSG_SIZE_TOO_LARGE"))  # refused: dead letter
    assert sink.delivered_seq() == 13 and sink.stats().dead_lettered == 1
    assert "MSG_SIZE_TOO_LARGE" in (tmp_path / "kafka-dead-letter.jsonl").read_text()
    sink.deliver([_case(12), _case(13)])  # already handed over: nothing produced again
    assert len(producer.sent) == 3
    sent = producer.sent[0]
    assert sent["key"] == b"c11" and sent["partition"] == murmur2_partition(b"c11", 2)
    assert (
        sent["headers"][H_SEQ] == b"11"
        and sent["headers"][H_ORIGIN]
        == (tmp_path / "kafka-sink.origin").read_text().strip().encode()
    )


def test_restart_skips_cases_already_on_the_topic(fakes: None, tmp_path: Path) -> None:
    sink, producer = _sink(tmp_path)
    cases = [_case(s) for s in range(1, 21)]
    sink.deliver(cases)
    # The engine is SIGKILLed: the topic holds seqs 1..14 (in partition order), its mark said 5.
    for m in producer.sent:
        if int(m["headers"][H_SEQ]) <= 14:
            FakeTailConsumer.topic[m["partition"]].append(m["headers"])
    FakeTailConsumer.topic[0].append({H_ORIGIN: b"someone-else", H_SEQ: b"999", H_HW: b"999"})
    again, producer2 = _sink(tmp_path)
    hw = max(int(m["headers"][H_HW]) for m in producer.sent if int(m["headers"][H_SEQ]) <= 14)
    assert again.delivered_seq() == hw  # the largest mark seen on the topic
    again.deliver(cases[5:])  # what the engine re-sends after its mark
    assert sorted(int(m["headers"][H_SEQ]) for m in producer2.sent) == list(range(15, 21))


def test_sink_spec_errors(fakes: None, tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="topic"):
        build_kafka_sink({"kind": "kafka", "brokers": "b:1"}, tmp_path, "p")
    with pytest.raises(SinkError, match="brokers"):
        build_kafka_sink({"kind": "kafka", "topic": "t"}, tmp_path, "p")
    with pytest.raises(SinkError, match="unknown key 'acks'"):
        build_kafka_sink(
            {"kind": "kafka", "brokers": "b:1", "topic": "t", "acks": 1}, tmp_path, "p"
        )
    sink = build_sink(
        {"kind": "kafka", "brokers": "b:1", "topic": "t", "config": {"linger.ms": 5}}, tmp_path, "p"
    )
    assert sink.name == "kafka:t" and FakeProducer.instances[-1].conf["linger.ms"] == 5
