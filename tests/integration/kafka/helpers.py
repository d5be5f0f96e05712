"""Test helpers for the Kafka acceptance tests, independent of riskstream's own code.

Events are made with plain ``random`` and ``json``; expected aggregates and cases are
computed here by brute force. Topics are written and read back with confluent_kafka.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HOUR = 3_600_000
WINDOW_MS = 300_000  # the rule's card.count(5m)
MIN_AMOUNT = 150.0
PARTITIONS = 4

SPEC = """
name: kpay
source:
  kind: kafka
  brokers: {brokers}
  topics: [{topic}]
  group: {group}
  options:
    kafka.session.timeout.ms: "6000"
    kafka.heartbeat.interval.ms: "1000"
{extra_options}
event:
  time: ts
  id: event_id
  max_lateness: {lateness}
  fields: {{ts: any, event_id: str, card: str, amount: float}}
checkpoint: {{every: 200ms, events: 20000}}
batch_size: 5000
metrics:
  card:
    dimension: [card]
    value: amount
    stats: [count, sum, min, max]
rules:
  burst:
    when: card.count(5m) >= 3 and amount >= 150
    action: review
    score: 70
{extra_rules}
sinks:
{sinks}
"""


def write_spec(
    path: Path,
    *,
    brokers: str,
    topic: str,
    group: str,
    cases_file: Path | None = None,
    cases_topic: str | None = None,
    every_event_rule: bool = False,
    options: dict[str, str] | None = None,
    source_format: str | None = None,
    lateness: str = "10m",
) -> Path:
    """A pipeline spec with the card metric, the burst rule, a file and/or Kafka case sink."""
    sinks = []
    if cases_file is not None:
        sinks.append(f"  - {{kind: file, path: {cases_file}}}")
    if cases_topic is not None:
        sinks.append(f"  - {{kind: kafka, brokers: {brokers}, topic: {cases_topic}}}")
    extra_options = "".join(f'    {k}: "{v}"\n' for k, v in (options or {}).items()).rstrip("\n")
    extra_rules = ""
    if every_event_rule:
        extra_rules = "  every:\n    when: amount >= 0\n    action: tag\n    score: 1"
    text = SPEC.format(
        brokers=brokers,
        topic=topic,
        group=group,
        sinks="\n".join(sinks) or "  []",
        extra_options=extra_options,
        extra_rules=extra_rules,
        lateness=lateness,
    )
    if source_format:
        text = text.replace("  group:", f"{source_format}\n  group:", 1)
    path.write_text(text)
    return path


# ---- events ---------------------------------------------------------------------------------


def base_time() -> int:
    """A whole hour three hours ago: Kafka accepts the timestamps and retention keeps them."""
    return (int(time.time() * 1000) // HOUR - 3) * HOUR


def make_events(
    n: int, seed: int, t0: int, span_ms: int = HOUR, cards: int = 4000, prefix: str = "e"
) -> list[dict[str, Any]]:
    """``n`` payment events over ``span_ms`` with a few seconds of disorder; some hot cards."""
    rnd = random.Random(seed)
    events = []
    for i in range(n):
        t = t0 + span_ms * i // n + rnd.randint(-3_000, 3_000)
        card = (
            f"hot-{rnd.randint(0, 49)}"
            if rnd.random() < 0.2
            else f"card-{rnd.randint(0, cards - 1)}"
        )
        ts: int | str = t
        if rnd.random() < 0.3:
            ts = (
                datetime.fromtimestamp(t / 1000, UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
        events.append(
            {
                "event_id": f"{prefix}{i:07d}",
                "ts": ts,
                "card": card,
                "amount": round(rnd.lognormvariate(3, 1.2), 2),
            }
        )
    return events


def event_ms(e: dict[str, Any]) -> int:
    t = e["ts"]
    if isinstance(t, int):
        return t
    return int(datetime.fromisoformat(str(t).replace("Z", "+00:00")).timestamp() * 1000)


def create_topics(bootstrap: str, *topics: tuple[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    for future in admin.create_topics([NewTopic(t, p, 1) for t, p in topics]).values():
        future.result(30)


def produce(
    bootstrap: str, topic: str, events: Iterable[dict[str, Any]], rate: float | None = None
) -> int:
    """Events keyed by card (one card stays in one partition), timestamped with their event time."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "enable.idempotence": True,
            "log_level": 0,
        }
    )
    errors: list[KafkaError] = []

    def done(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            errors.append(err)

    n = 0
    started = time.monotonic()
    for e in events:
        value = json.dumps(e).encode()
        while True:
            try:
                producer.produce(
                    topic,
                    key=str(e["card"]).encode(),
                    value=value,
                    timestamp=event_ms(e),
                    on_delivery=done,
                )
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if rate is not None and n % 500 == 0:
            producer.poll(0)
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    assert producer.flush(60) == 0
    assert not errors, errors[:3]
    return n


def produce_raw(bootstrap: str, topic: str, values: list[tuple[bytes, bytes, int]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for key, value, ts in values:
        producer.produce(topic, key=key, value=value, timestamp=ts)
    assert producer.flush(30) == 0


def read_topic(
    bootstrap: str, topic: str, timeout: float = 60
) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    """Every message of ``topic`` (key, value, headers), read to the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-reader",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = sorted(meta.topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in parts
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        got: list[tuple[bytes, bytes, dict[str, bytes]]] = []
        pos = dict.fromkeys(parts, 0)
        deadline = time.monotonic() + timeout
        while any(pos[p] < ends[p] for p in parts):
            assert time.monotonic() < deadline, f"reading {topic}: {pos} of {ends}"
            for m in consumer.consume(1000, 0.5):
                if m.error() is None:
                    got.append((m.key() or b"", m.value() or b"", dict(m.headers() or [])))
                    pos[m.partition()] = m.offset() + 1
    finally:
        consumer.close()
    return got


def committed(
    bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS
) -> dict[int, int]:
    """The group's committed offsets (without joining the group)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        for attempt in range(20):
            try:
                got = consumer.committed(
                    [TopicPartition(topic, p) for p in range(partitions)], timeout=10
                )
                break
            except KafkaException:  # NOT_COORDINATOR while a fresh broker loads its offsets
                if attempt == 19:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in got}


def end_offsets(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-ends", "log_level": 0})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


def wait_committed(
    bootstrap: str, group: str, topic: str, total: int, timeout: float, proc: Any = None
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = sum(committed(bootstrap, group, topic).values())
        if done >= total:
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"engine exited {proc.returncode} at {done} of {total}:\n{read_err(proc)}"
            )
        assert time.monotonic() < deadline, f"group {group} committed {done} of {total}"
        time.sleep(0.3)


def wait_assigned(
    bootstrap: str, group: str, members: int, partitions: int, timeout: float = 60
) -> None:
    """Until the group is stable with ``members`` members holding ``partitions`` partitions."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    while True:
        desc = admin.describe_consumer_groups([group])[group].result(10)
        held = sum(len(m.assignment.topic_partitions) for m in desc.members)
        if (
            len(desc.members) == members
            and held == partitions
            and str(desc.state).endswith("STABLE")
        ):
            return
        assert time.monotonic() < deadline, (
            f"group {group}: {len(desc.members)} members, {held} partitions, {desc.state}"
        )
        time.sleep(0.3)


# ---- the engine in a subprocess ---------------------------------------------------------------


def start_engine(
    spec: Path, data_dir: Path, *args: str, log: Path | None = None, quiet: bool = True
) -> subprocess.Popen[bytes]:
    """``riskstream run`` in a subprocess, its stderr appended to ``log`` (default: next to
    ``data_dir``); ``quiet=False`` keeps its log lines (not a terminal: no progress)."""
    cmd = [sys.executable, "-m", "riskstream.cli", "run", "-c", str(spec)]
    cmd += ["--data-dir", str(data_dir), *(["-q"] if quiet else []), *args]
    err = (log or data_dir.with_suffix(".log")).open("ab")
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )


def read_err(proc: subprocess.Popen[bytes]) -> str:
    stream = proc.stderr
    return "" if stream is None else stream.read().decode(errors="replace")


def stop_engine(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """SIGTERM (clean shutdown: finish the batch, checkpoint, commit, leave the group)."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


# ---- brute force --------------------------------------------------------------------------------


def expected_cases(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(rule, event_id) of the burst rule, evaluated per card in production order."""
    seen: dict[str, list[int]] = defaultdict(list)
    out = set()
    for e in events:
        sec = event_ms(e) // 1000 * 1000
        card = str(e["card"])
        seen[card].append(sec)
        recent = sum(1 for s in seen[card][-400:] if sec - WINDOW_MS < s <= sec)
        if recent >= 3 and float(e["amount"]) >= MIN_AMOUNT:
            out.add(("burst", str(e["event_id"])))
    return out


_INDEX: dict[int, tuple[list[dict[str, Any]], dict[str, list[tuple[int, float]]]]] = {}


def brute(events: list[dict[str, Any]], card: str, frm: int, to: int) -> dict[str, Any]:
    """count, sum, min, max of the card's amounts with event time in [frm, to)."""
    cached = _INDEX.get(id(events))
    if cached is None or cached[0] is not events:
        index: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for e in events:
            index[str(e["card"])].append((event_ms(e), float(e["amount"])))
        cached = _INDEX[id(events)] = (events, index)
    vals = [a for t, a in cached[1].get(card, []) if frm <= t < to]
    return {
        "count": len(vals),
        "sum": math.fsum(vals),
        "min": min(vals) if vals else None,
        "max": max(vals) if vals else None,
    }


def same_stats(got: dict[str, Any], want: dict[str, Any]) -> bool:
    if got["count"] != want["count"]:
        return False
    if not math.isclose(got["sum"] or 0.0, want["sum"], rel_tol=1e-9, abs_tol=1e-6):
        return False
    return bool(got.get("min") == want["min"] and got.get("max") == want["max"])


def cases_in_file(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]
