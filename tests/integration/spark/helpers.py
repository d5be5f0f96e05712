"""Independent checks for the Spark runner tests: the topic, its ingestion order, brute force.

Nothing here uses the engine: the ingestion order is computed from the messages read back
from Kafka (a merge of the partitions by message timestamp, as ``docs/spark.md`` defines it),
and every feature and range query is a plain Python scan over the events.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

SPEC = """\
name: spark-check
event:
  time: event_time
  id: event_id
  max_lateness: 7d
  fields: {{event_id: str, event_time: int, card_id: str, merchant_id: str, amount: float, status: str}}
tiers: [second, minute, hour, day, week]
metrics:
  card: {{dimension: [card_id], value: amount, stats: [count, sum, avg, min, max]}}
  card_ok: {{dimension: [card_id], value: amount, where: "status == 'succeeded'", stats: [count, sum]}}
  card_merchants: {{dimension: [card_id], value: merchant_id, stats: [distinct]}}
  merchant: {{dimension: [merchant_id], value: amount, stats: [count, sum, max]}}
  merchant_cards: {{dimension: [merchant_id], value: card_id, stats: [distinct]}}
rules:
  card_repeat: {{when: "card.count(1m) >= 2 and card_ok.sum(5m) >= 0", action: review, score: 40}}
  card_hops: {{when: "card_merchants.distinct(10m) >= 2", action: tag, score: 10}}
  merchant_busy: {{when: "merchant.count(1m) >= {busy} and merchant.max(5m) > 200", action: review, score: 30}}
  merchant_many_cards: {{when: "merchant_cards.distinct(5m) >= {cards}", action: review, score: 50}}
{store}sinks:
  - {{kind: file, path: {cases}}}
{extra_sinks}"""

#: (rule, metric, stat, window ms, threshold) of the spec above, for the brute force.
WINDOWS = {"1m": 60_000, "5m": 300_000, "10m": 600_000}


def write_spec(
    path: Path,
    cases: Path,
    *,
    store: str = "",
    busy: int = 8,
    cards: int = 8,
    kafka_sink: str | None = None,
) -> Path:
    """The test spec (``store`` holds top-level lines such as ``store: {...}``, or is empty)."""
    extra = f"  - {kafka_sink}\n" if kafka_sink else ""
    path.write_text(
        SPEC.format(cases=cases, store=store, busy=busy, cards=cards, extra_sinks=extra)
    )
    return path


def events(n: int, seed: int = 11, rate: float = 25.0) -> list[bytes]:
    """``n`` synthetic events as JSON lines (the product's generator, spread in event time)."""
    from riskstream.synthetic.generator import write_jsonl

    out = Path(f"/tmp/riskstream-spark-events-{n}-{seed}-{rate}.jsonl")
    if not out.exists():
        write_jsonl(out, n, seed, rate_per_s=rate)
    return [line for line in out.read_bytes().splitlines() if line.strip()]


def produce_random(bootstrap: str, topic: str, lines: list[bytes], seed: int = 5) -> None:
    """Every line to a random partition of the 4 (keyed at random, not by card)."""
    rnd = random.Random(seed)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    # One millisecond apart in produce order: no two messages share a timestamp, so the merge
    # by timestamp has one answer, whatever the fetch timing of either engine.
    base = int(time.time() * 1000) - len(lines)
    for i, line in enumerate(lines):
        p.produce(
            topic,
            key=str(rnd.random()).encode(),
            value=line,
            partition=rnd.randrange(4),
            timestamp=base + i,
        )
        p.poll(0)
    assert p.flush(30) == 0


@dataclass
class Msg:
    """One message read back: its partition name, offset, timestamp and event."""

    part: str
    offset: int
    ts: int
    event: dict[str, Any]


def ingestion_order(bootstrap: str, topic: str, partitions: int = 4) -> list[Msg]:
    """The topic's events in the embedded engine's merge order: by (running max of the message
    timestamp within the partition, partition name, offset)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "check",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    msgs: list[Msg] = []
    done: set[int] = set()
    while len(done) < partitions:
        m = c.poll(5)
        if m is None:
            continue
        if m.error():
            done.add(m.partition())
            continue
        msgs.append(
            Msg(f"{topic}/{m.partition()}", m.offset(), m.timestamp()[1], json.loads(m.value()))
        )
    c.close()
    msgs.sort(key=lambda m: (m.part, m.offset))
    keyed: list[tuple[int, str, int, Msg]] = []
    top: dict[str, int] = {}
    for m in msgs:
        top[m.part] = max(top.get(m.part, m.ts), m.ts)
        keyed.append((top[m.part], m.part, m.offset, m))
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]


def _sec(t: int) -> int:
    return t // 1000 * 1000


def brute_cases(order: list[Msg], busy: int = 8, cards: int = 8) -> dict[str, dict[str, Any]]:
    """event id -> {rule: features} of the rules that fire, by plain scans in ingestion order."""
    by_card: dict[str, list[dict[str, Any]]] = {}
    by_merchant: dict[str, list[dict[str, Any]]] = {}
    out: dict[str, dict[str, Any]] = {}
    for m in order:
        e = m.event
        by_card.setdefault(e["card_id"], []).append(e)
        by_merchant.setdefault(e["merchant_id"], []).append(e)
        b = _sec(e["event_time"])

        def seen(rows: list[dict[str, Any]], w: int, b: int = b) -> list[dict[str, Any]]:
            return [r for r in rows if b - w < _sec(r["event_time"]) <= b]

        card1 = seen(by_card[e["card_id"]], WINDOWS["1m"])
        ok5 = [r for r in seen(by_card[e["card_id"]], WINDOWS["5m"]) if r["status"] == "succeeded"]
        hops = {r["merchant_id"] for r in seen(by_card[e["card_id"]], WINDOWS["10m"])}
        merch1 = seen(by_merchant[e["merchant_id"]], WINDOWS["1m"])
        merch5 = seen(by_merchant[e["merchant_id"]], WINDOWS["5m"])
        mcards = {r["card_id"] for r in merch5}
        fired: dict[str, Any] = {}
        if len(card1) >= 2 and sum(r["amount"] for r in ok5) >= 0:
            fired["card_repeat"] = {"card.count(1m)": len(card1)}
        if len(hops) >= 2:
            fired["card_hops"] = {"card_merchants.distinct(10m)": len(hops)}
        if len(merch1) >= busy and max(r["amount"] for r in merch5) > 200:
            fired["merchant_busy"] = {"merchant.count(1m)": len(merch1)}
        if len(mcards) >= cards:
            fired["merchant_many_cards"] = {"merchant_cards.distinct(5m)": len(mcards)}
        if fired:
            out[e["event_id"]] = fired
    return out


def brute_range(order: list[Msg], metric: str, key: str, frm: int, to: int) -> dict[str, Any]:
    """The stats of one metric for one key over events with ``frm <= t < to``."""
    field, value = {
        "card": ("card_id", "amount"),
        "merchant": ("merchant_id", "amount"),
        "merchant_cards": ("merchant_id", "card_id"),
    }[metric]
    rows = [m.event for m in order if m.event[field] == key and frm <= m.event["event_time"] < to]
    if metric == "merchant_cards":
        return {"count": len(rows), "distinct": len({r[value] for r in rows})}
    vals = [r[value] for r in rows]
    out: dict[str, Any] = {"count": len(vals), "sum": sum(vals)}
    if vals:
        out["max"] = max(vals)
    return out
