"""Issue 12.4: a bounded Kafka run ends only when every partition is consumed to its end offset.

The topic has 4 partitions keyed by card. ``riskstream run --until-end`` is SIGKILLed mid-topic
and restarted at once with the same data dir and group: the killed member still holds its
partitions in the group until its session times out, and the restarted run must wait for
them instead of finishing early. Its aggregates and case set must equal an uninterrupted run
(and brute force). One broker for the module (the session broker).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from riskstream.query.range import query_range
from riskstream.spec.load import load_spec
from riskstream.store.duckdb import Store
from tests.conftest import run_cli
from tests.integration.kafka.helpers import (
    HOUR,
    PARTITIONS,
    base_time,
    brute,
    cases_in_file,
    committed,
    create_topics,
    end_offsets,
    expected_cases,
    make_events,
    produce,
    same_stats,
    start_engine,
    write_spec,
)
from tests.kafka_broker import KafkaBroker, unique_topic

pytestmark = pytest.mark.kafka

N_EVENTS = 120_000
#: Longer than the topic's hour: partitions read one after the other lose nothing as too late.
LATENESS = "3h"


@pytest.fixture(scope="module")
def topic_data(
    kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The events in a 4-partition topic keyed by card, and an uninterrupted bounded run."""
    tmp = tmp_path_factory.mktemp("kafka-bounded")
    bootstrap = kafka_broker.bootstrap
    topic = unique_topic("bounded")
    create_topics(bootstrap, (topic, PARTITIONS))
    t0 = base_time()
    events = make_events(N_EVENTS, seed=12, t0=t0)
    produce(bootstrap, topic, events)
    spec = write_spec(
        tmp / "whole.yaml",
        brokers=bootstrap,
        topic=topic,
        group=unique_topic("whole"),
        cases_file=tmp / "whole-cases.jsonl",
        lateness=LATENESS,
    )
    run_cli("run", "-c", str(spec), "--data-dir", str(tmp / "whole"), "--until-end", "-q")
    return {"tmp": tmp, "bootstrap": bootstrap, "topic": topic, "events": events, "t0": t0}


def _summary(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


WAITING = "waiting for partitions "
HOLDER = """
import sys
from confluent_kafka import Consumer
c = Consumer({
    "bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "enable.auto.commit": False,
    "partition.assignment.strategy": "cooperative-sticky", "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000, "auto.offset.reset": "earliest", "log_level": 0,
})
def assigned(consumer, parts):
    print("assigned", len(parts), flush=True)
c.subscribe([sys.argv[3]], on_assign=assigned)
while True:
    c.consume(500, 0.2)  # hold the partitions, never commit
"""


def _start_holder(bootstrap: str, group: str, topic: str) -> subprocess.Popen[str]:
    """Another member of the group: holds partitions, never commits, until it is killed."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, bootstrap, group, topic],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _waiting_for(log: Path) -> list[str]:
    """The partitions named by the last "waiting for partitions" line of the log."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if WAITING in ln]
    if not lines:
        return []
    named = lines[-1].split(WAITING, 1)[1].split(":", 1)[0]
    return [p.strip() for p in named.split(",")]


def _own_partitions_done(
    bootstrap: str,
    group: str,
    topic: str,
    log: Path,
    proc: subprocess.Popen[bytes],
    timeout: float,
) -> list[str]:
    """Until the run has committed every partition it holds to its end and says it waits for
    the others; returns those (held by the other member)."""
    ends = end_offsets(bootstrap, topic)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, (
            f"the restarted run ended (rc {proc.returncode}) without waiting for the "
            f"partitions held elsewhere: {log.read_text()[-2000:]}"
        )
        held = _waiting_for(log)
        done = committed(bootstrap, group, topic)
        mine = [p for p in range(PARTITIONS) if f"{topic}/{p}" not in held]
        # Until the killed member's session expires the run may hold nothing yet: wait for that too.
        if held and mine and all(done[p] >= ends[p] for p in mine):
            return held
        time.sleep(0.3)
    raise AssertionError(f"no wait for the other member's partitions: {log.read_text()[-2000:]}")


def test_restart_after_sigkill_waits_for_partitions_held_elsewhere(
    topic_data: dict[str, Any],
) -> None:
    """Killed mid-topic, restarted with the same dir and group, while another member holds
    half the partitions and then dies too: the restarted run waits for them, then counts
    them, and its answers equal an uninterrupted run's."""
    tmp, bootstrap, topic = topic_data["tmp"], topic_data["bootstrap"], topic_data["topic"]
    events = topic_data["events"]
    group = unique_topic("killed")
    spec = write_spec(
        tmp / "killed.yaml",
        brokers=bootstrap,
        topic=topic,
        group=group,
        cases_file=tmp / "killed-cases.jsonl",
        lateness=LATENESS,
    )
    data = tmp / "killed"
    holder = _start_holder(bootstrap, group, topic)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == f"assigned {PARTITIONS}"
        proc = start_engine(spec, data, "--until-end")
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            done = sum(committed(bootstrap, group, topic).values())
            if done > 0:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed ({proc.returncode})"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 0 < done < N_EVENTS, f"not killed mid-topic: {done} of {N_EVENTS} committed"

        # Restart at once (the killed member holds its partitions until its session expires).
        log = tmp / "restart.log"
        summary_path = tmp / "killed-summary.json"
        restarted = start_engine(
            spec, data, "--until-end", "--summary-json", str(summary_path), log=log, quiet=False
        )
        held = _own_partitions_done(bootstrap, group, topic, log, restarted, timeout=180)
        time.sleep(2.0)  # today's main ended here, its own partitions done, the rest unread
        assert restarted.poll() is None, log.read_text()[-2000:]
        assert held and len(held) < PARTITIONS, held
    finally:
        holder.send_signal(signal.SIGKILL)  # it dies holding its partitions
        holder.wait()
    assert restarted.wait(240) == 0, log.read_text()[-3000:]
    summary = _summary(summary_path)
    assert summary["events"] > 0, summary
    assert set(summary["lag"]) == {f"{topic}/{p}" for p in range(PARTITIONS)}, summary["lag"]
    assert all(v == 0 for v in summary["lag"].values()), summary["lag"]

    # Everything counted exactly once: the same answers as the uninterrupted run and brute force.
    store = Store(data, read_only=True)
    whole = Store(tmp / "whole", read_only=True)
    hour = "SELECT sum(count) FROM buckets WHERE metric = 'card' AND tier = 'hour'"
    assert int(store.select(hour)[0][0]) == N_EVENTS, summary
    assert int(whole.select(hour)[0][0]) == N_EVENTS
    full = load_spec(spec)
    t0 = topic_data["t0"]
    cards = sorted({str(e["card"]) for e in events})
    for card in cards[:: max(1, len(cards) // 40)]:
        a = query_range(full, store, "card", card, t0 - 10_000, t0 + HOUR + 10_000)
        b = query_range(full, whole, "card", card, t0 - 10_000, t0 + HOUR + 10_000)
        want = brute(events, card, a["effective"]["from"], a["effective"]["to"])
        assert same_stats(a, want), (card, a, want)
        assert same_stats(b, want), (card, b, want)
    killed_cases = [(c["rule"], c["event_id"]) for c in cases_in_file(tmp / "killed-cases.jsonl")]
    whole_cases = [(c["rule"], c["event_id"]) for c in cases_in_file(tmp / "whole-cases.jsonl")]
    assert len(killed_cases) == len(set(killed_cases))
    assert set(killed_cases) == set(whole_cases) == expected_cases(events)
