"""KafkaSource bookkeeping against a fake consumer: start offsets, rebalance order, batches, end."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TopicPartition

import riskstream.sources.kafka as kafka_mod
from riskstream.sources.kafka import KafkaSource
from riskstream.spec.model import PipelineSpec, SourceSpec

EOF_CODE = -191


class FakeError:
    def __init__(self, code: int) -> None:
        self._code = code

    def code(self) -> int:
        return self._code

    def fatal(self) -> bool:
        return False

    def str(self) -> str:
        return f"error {self._code}"


class FakeMessage:
    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        ts: int = 0,
        value: bytes | None = b"{}",
        eof: bool = False,
    ) -> None:
        self._t, self._p, self._o, self._ts, self._v = topic, partition, offset, ts, value
        self._err = FakeError(EOF_CODE) if eof else None

    def error(self) -> FakeError | None:
        return self._err

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)


class FakeConsumer:
    """Records calls; ``script`` is a list of steps run by consume(): callables or message lists."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.committed_offsets: dict[tuple[str, int], int] = {}
        self.high: dict[tuple[str, int], int] = {}
        self.assigned: list[TopicPartition] = []
        self.commits: list[tuple[list[tuple[str, int, int]], bool]] = []
        self.paused: set[tuple[str, int]] = set()
        self.script: list[Any] = []
        self.events: list[str] = []
        self.cb: dict[str, Callable[..., None]] = {}

    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.cb = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        if not self.script:
            return []
        step = self.script.pop(0)
        if callable(step):
            step()
            return []
        return list(step)

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic, tp.partition, self.committed_offsets.get((tp.topic, tp.partition), -1001)
            )
            for tp in tps
        ]

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float | None = None, cached: bool = False
    ) -> tuple[int, int]:
        return 0, self.high.get((tp.topic, tp.partition), 0)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        """Metadata: the partitions named in ``high`` (at least partition 0 of ``pay``)."""
        parts: dict[str, dict[int, None]] = {"pay": {0: None}}
        for t, p in self.high:
            parts.setdefault(t, {})[p] = None
        topics = {t: SimpleNamespace(error=None, partitions=ps) for t, ps in parts.items()}
        return SimpleNamespace(topics=topics)

    def incremental_assign(self, tps: list[TopicPartition]) -> None:
        self.events.append("assign")
        self.assigned += tps

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.events.append("commit-async" if asynchronous else "commit-sync")
        self.commits.append(([(tp.topic, tp.partition, tp.offset) for tp in offsets], asynchronous))

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in tps}

    def resume(self, tps: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in tps}

    def close(self) -> None:
        self.events.append("close")


def _source(
    monkeypatch: pytest.MonkeyPatch, *, until_end: bool = False
) -> tuple[KafkaSource, FakeConsumer]:
    monkeypatch.setattr(kafka_mod, "Consumer", FakeConsumer)
    spec = PipelineSpec(name="t")
    src = SourceSpec(
        kind="kafka", brokers="fake:9092", topics=["pay"], group="g", options={"align_wait_s": "0"}
    )
    source = KafkaSource(spec, src, until_end=until_end)
    consumer = source._consumer
    assert isinstance(consumer, FakeConsumer)
    return source, consumer


def _tps(*parts: int) -> list[TopicPartition]:
    return [TopicPartition("pay", p) for p in parts]


def test_assignment_starts_at_max_of_store_and_committed(monkeypatch: pytest.MonkeyPatch) -> None:
    source, consumer = _source(monkeypatch)
    source.seek({"pay/0": 50, "pay/1": 10, "file": 3})
    consumer.committed_offsets = {("pay", 0): 40, ("pay", 1): 25}
    consumer.cb["assign"](consumer, _tps(0, 1, 2))
    starts = {tp.partition: tp.offset for tp in consumer.assigned}
    # 0: the store is ahead (the async commit was lost in a crash); 1: another engine
    # processed 10..25 after us; 2: neither knows it -> committed / auto.offset.reset.
    assert starts == {0: 50, 1: 25, 2: -1001}
    assert consumer.conf["enable.auto.commit"] is False and consumer.conf["group.id"] == "g"


def test_revoke_checkpoints_then_commits_only_what_the_store_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, consumer = _source(monkeypatch)
    consumer.cb["assign"](consumer, _tps(0, 1))
    consumer.script = [
        [FakeMessage("pay", 0, i, ts=i) for i in range(5)]
        + [FakeMessage("pay", 1, 0, ts=1, eof=True)]
    ]
    batch = source.read_batch(100, 0.1)
    assert batch is not None and batch.resume == {"pay/0": 5}
    order: list[str] = []

    def checkpoint() -> None:  # the runner writes buckets + positions, then calls the hook
        order.append("checkpoint")
        source.after_checkpoint({"pay/0": 5})

    reloads: list[int] = []
    source.set_checkpoint_callback(checkpoint)
    source.set_reload_callback(lambda: reloads.append(1))
    consumer.events.clear()
    consumer.cb["revoke"](consumer, _tps(0))
    assert order == ["checkpoint"]
    assert consumer.events == ["commit-async", "commit-sync"]
    assert consumer.commits[-1] == ([("pay", 0, 5)], False)
    assert source.lag() == {"pay/1": 0}  # only partition 1 is still ours
    consumer.cb["assign"](consumer, [])  # the rebalance ends (cooperative: nothing added)
    assert reloads == []
    # Partition 0 comes back later: it is new to us now, so the pipeline state is reloaded.
    consumer.committed_offsets = {("pay", 0): 9}
    consumer.cb["assign"](consumer, _tps(0))
    assert reloads == [1]
    assert consumer.assigned[-1].offset == 9


def test_batches_merge_partitions_by_time_and_drop_stale_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, consumer = _source(monkeypatch)
    consumer.cb["assign"](consumer, _tps(0, 1))
    consumer.script = [
        [
            FakeMessage("pay", 0, 0, ts=100),
            FakeMessage("pay", 0, 1, ts=300),
            FakeMessage("pay", 1, 7, ts=200),
            FakeMessage("pay", 2, 0, ts=1),
        ],
        [
            FakeMessage("pay", 0, 1, ts=300),
            FakeMessage("pay", 0, 2, ts=400, eof=True),
            FakeMessage("pay", 1, 8, ts=250, eof=True),
        ],
    ]
    first = source.read_batch(100, 0.1)
    assert first is not None
    # Partition 1 ran dry at 200 and is not at its end: nothing newer than 200 leaves yet.
    assert first.positions == ["pay/0@0", "pay/1@7"]
    second = source.read_batch(100, 0.1)
    assert second is not None
    # The duplicate of pay/0@1 is dropped; partition 2 was never assigned; EOFs release the rest.
    assert second.positions == ["pay/0@1"]
    assert second.resume == {"pay/0": 2}


def test_until_end_stops_at_the_end_offsets_seen_at_assignment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, consumer = _source(monkeypatch, until_end=True)
    consumer.high = {("pay", 0): 2, ("pay", 1): 0}
    consumer.committed_offsets = {("pay", 0): 0}
    assert source.read_batch(10, 0.1) is not None  # not assigned yet: keep waiting
    consumer.cb["assign"](consumer, _tps(0, 1))
    consumer.script = [
        [
            FakeMessage("pay", 0, 0, ts=1),
            FakeMessage("pay", 0, 1, ts=2),
            FakeMessage("pay", 0, 2, ts=3),
            FakeMessage("pay", 1, 0, eof=True),
        ]
    ]
    batch = source.read_batch(10, 0.1)
    assert batch is not None and batch.positions == ["pay/0@0", "pay/0@1"]  # offset 2 came later
    assert ("pay", 0) in consumer.paused
    assert source.read_batch(10, 0.1) is None
    source.close()
    assert consumer.events[-1] == "close"


def test_eager_protocol_assigns_the_whole_assignment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_mod, "Consumer", FakeConsumer)
    src = SourceSpec(
        kind="kafka",
        brokers="fake:9092",
        topics=["pay"],
        options={"kafka.partition.assignment.strategy": "range"},
    )
    source = KafkaSource(PipelineSpec(name="t"), src)
    consumer = source._consumer
    assert isinstance(consumer, FakeConsumer)
    checkpoints: list[int] = []
    source.set_checkpoint_callback(lambda: checkpoints.append(1))
    consumer.cb["assign"](consumer, _tps(0, 1))
    assert [tp.partition for tp in consumer.assigned] == [0, 1]
    consumer.cb["revoke"](consumer, _tps(0, 1))  # eager: everything is revoked first
    assert checkpoints == [1]
    consumer.cb["assign"](consumer, _tps(1))
    assert [tp.partition for tp in consumer.assigned] == [1]
    assert source.lag() == {}  # nothing read yet: no position known


def test_replay_uses_no_group_and_its_own_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka_mod, "Consumer", FakeConsumer)
    src = SourceSpec(kind="kafka", brokers="fake:9092", topics=["pay"], group="live")
    source = KafkaSource(PipelineSpec(name="t"), src, from_ms=1_000, to_ms=2_000)
    consumer = source._consumer
    assert isinstance(consumer, FakeConsumer)
    assert consumer.cb == {}  # assign-only: never subscribes, never joins "live"
    assert consumer.conf["group.id"].startswith("riskstream-replay-")
    assert source.name == "kafka-replay:pay" and source.until_end
    source.after_checkpoint({"pay/0": 5})
    assert consumer.commits == []


def test_until_end_waits_for_partitions_another_member_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 12.4: ends are taken for every partition at start; pay/1 is held elsewhere."""
    source, consumer = _source(monkeypatch, until_end=True)
    consumer.high = {("pay", 0): 2, ("pay", 1): 5, ("pay", 2): 0}
    assert source.read_batch(10, 0.1) is not None  # ends taken, nothing assigned yet
    consumer.cb["assign"](consumer, _tps(0))  # the group gives this engine pay/0 only
    consumer.script = [[FakeMessage("pay", 0, 0, ts=1), FakeMessage("pay", 0, 1, ts=2)]]
    batch = source.read_batch(10, 0.1)
    assert batch is not None and batch.positions == ["pay/0@0", "pay/0@1"]
    for _ in range(3):  # pay/0 is done, pay/1 is not: the run must not end
        source._elsewhere_at = 0.0
        assert source.read_batch(10, 0.1) is not None
    assert source.waiting_for() == ["pay/1"]
    assert source.lag() == {"pay/0": 0, "pay/1": 5, "pay/2": 0}
    consumer.committed_offsets[("pay", 1)] = 5  # the other member consumed and committed it
    source._elsewhere_at = 0.0
    assert source.read_batch(10, 0.1) is None
    assert source.waiting_for() == [] and source.lag() == {"pay/0": 0, "pay/1": 0, "pay/2": 0}
    source.close()
