"""The development broker of tools/kafka.py: a real Kafka that keeps its data across restarts."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

from tests.integration.kafka.helpers import committed
from tests.kafka_broker import (
    BrokerError,
    KafkaBroker,
    broker_or_fail,
    unique_topic,
)

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 1_000
PARTITIONS = 4


def _produce(broker: KafkaBroker, topic: str, count: int, start: int = 0) -> set[int]:
    errors: list[KafkaError] = []
    partitions: set[int] = set()

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            partitions.add(msg.partition() or 0)

    producer = Producer(broker.client_config({"acks": "all", "linger.ms": 5, "log_level": 0}))
    for i in range(start, start + count):
        producer.produce(topic, key=f"card-{i % 50}", value=str(i), on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still in flight after 30 s"
    assert errors == []
    return partitions


def _consume(broker: KafkaBroker, topic: str, group: str, expected: int) -> list[Message]:
    consumer = Consumer(
        broker.client_config(
            {
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )
    )
    got: list[Message] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(got) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                assert msg.error() is None, msg.error()
                got.append(msg)
        if got:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


def _committed(broker: KafkaBroker, topic: str, group: str) -> int:
    # Retries NOT_COORDINATOR while a restarted broker loads its offsets.
    return sum(committed(broker.bootstrap, group, topic, PARTITIONS).values())


def _partition_count(broker: KafkaBroker, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
    return len(admin.list_topics(topic=topic, timeout=30).topics[topic].partitions)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.kafka
def test_produce_consume_restart_and_stop(tmp_path: Path) -> None:
    broker = broker_or_fail(tmp_path / "kafka")
    try:
        print(f"\nbroker up in {broker.start_seconds:.1f}s {broker.timings}")
        assert re.fullmatch(r"127\.0\.0\.1:\d+", broker.bootstrap)
        assert (tmp_path / "kafka" / "bootstrap").read_text().strip() == broker.bootstrap
        topic = unique_topic("payments")
        broker.create_topic(topic, partitions=PARTITIONS)
        assert _partition_count(broker, topic) == PARTITIONS

        assert _produce(broker, topic, MESSAGES) == set(range(PARTITIONS))
        got = _consume(broker, topic, "riskstream-test", MESSAGES)
        assert sorted(int(m.value() or b"-1") for m in got) == list(range(MESSAGES))
        assert {m.partition() for m in got} == set(range(PARTITIONS))
        assert _committed(broker, topic, "riskstream-test") == MESSAGES

        bootstrap, old_pid = broker.bootstrap, broker.pid
        broker.restart()
        print(f"restarted in {broker.start_seconds:.1f}s {broker.timings}")
        assert broker.bootstrap == bootstrap, "a restart keeps the port"
        assert broker.pid != old_pid and not broker.formatted_now
        # Topic, messages and the group's committed offsets survived the restart.
        assert _partition_count(broker, topic) == PARTITIONS
        assert _committed(broker, topic, "riskstream-test") == MESSAGES
        again = _consume(broker, topic, "riskstream-after-restart", MESSAGES)
        assert sorted(int(m.value() or b"-1") for m in again) == list(range(MESSAGES))
        _produce(broker, topic, 10, start=MESSAGES)
        assert len(_consume(broker, topic, "riskstream-test", 10)) == 10

        # A crash (SIGKILL, no clean shutdown) loses nothing that was acknowledged either.
        broker.restart(crash=True)
        print(f"restarted after a crash in {broker.start_seconds:.1f}s")
        assert broker.bootstrap == bootstrap
        assert _committed(broker, topic, "riskstream-test") == MESSAGES + 10
        after_crash = _consume(broker, topic, "riskstream-after-crash", MESSAGES + 10)
        assert len(after_crash) == MESSAGES + 10
    finally:
        pid, port = broker.pid, broker.port
        broker.stop()
    assert pid is not None and port is not None
    assert not broker.is_running()
    assert _pid_gone(pid), f"Kafka pid {pid} still exists after stop()"
    assert not _listening(port)
    assert not (tmp_path / "kafka" / "pid").exists()


@pytest.mark.kafka
def test_command_line_start_status_topic_stop(tmp_path: Path) -> None:
    data = tmp_path / "cli"
    tool = [sys.executable, str(ROOT / "tools" / "kafka.py")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*tool, *args, "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    started = run("start")
    try:
        if started.returncode != 0:
            pytest.fail(f"tools/kafka.py start failed:\n{started.stderr}", pytrace=False)
        bootstrap = started.stdout.strip()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", bootstrap), started.stdout
        pid = int((data / "pid").read_text())
        status = run("status")
        assert status.returncode == 0 and bootstrap in status.stdout
        # Starting again is a no-op that prints the same address.
        second = run("start")
        assert second.returncode == 0 and second.stdout.strip() == bootstrap
        assert "already running" in second.stderr
        topic = run("topic", "cli-topic", "--partitions", "3")
        assert topic.returncode == 0, topic.stderr
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert run("status").returncode == 1
    deadline = time.monotonic() + 10  # the detached JVM is reaped by init, not by us
    while not _pid_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pid_gone(pid)
    assert not _listening(int(bootstrap.rsplit(":", 1)[1]))


def test_broker_or_fail_fails_in_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: KafkaBroker) -> KafkaBroker:
        raise BrokerError("no java here", "  | a log line")

    monkeypatch.setattr(KafkaBroker, "start", broken)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no java here"):
        broker_or_fail(tmp_path)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no java here"):
        broker_or_fail(tmp_path)


@pytest.mark.kafka
def test_bad_config_fails_with_one_line_and_the_log_tail(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "bad", config={"node.id": "not-a-number"})
    with pytest.raises(BrokerError) as info:
        broker.start()
    assert "\n" not in str(info.value)
    assert "not-a-number" in info.value.detail
    assert not broker.is_running()


@pytest.mark.kafka
def test_broker_that_dies_while_starting_fails_with_its_log_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(KafkaBroker, "_format", lambda self, libs: None)  # unformatted storage
    broker = KafkaBroker(tmp_path / "unformatted")
    started = time.monotonic()
    with pytest.raises(BrokerError, match="exited with code") as info:
        broker.start()
    assert time.monotonic() - started < 30, "a dead broker is noticed at once, not at the timeout"
    assert "\n" not in str(info.value)
    assert "meta.properties" in info.value.detail
    assert not broker.is_running()
    assert not (tmp_path / "unformatted" / "pid").exists()
