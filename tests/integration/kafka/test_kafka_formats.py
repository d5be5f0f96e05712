"""Kafka source formats: Avro (schema file, schemaless records) and the dead-letter topic."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import pytest

from riskstream.store.duckdb import Store
from tests.conftest import run_cli
from tests.integration.kafka.helpers import (
    HOUR,
    PARTITIONS,
    base_time,
    create_topics,
    make_events,
    produce_raw,
    read_topic,
    write_spec,
)
from tests.kafka_broker import KafkaBroker, unique_topic

pytestmark = pytest.mark.kafka

SCHEMA = {
    "type": "record",
    "name": "Payment",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "card", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
GARBAGE = [b"", b"\x02", b"not avro at all \xff\xfe", b"\x00\x00\x00", b"\x08abcd"]


def _avro(record: dict[str, object], schema: object) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def test_avro_topic_with_dead_letter_topic(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    topic, dlq = unique_topic("avro"), unique_topic("avro-dlq")
    create_topics(bootstrap, (topic, PARTITIONS), (dlq, 1))
    schema_path = tmp_path / "payment.avsc"
    schema_path.write_text(json.dumps(SCHEMA))
    parsed = fastavro.parse_schema(SCHEMA)
    t0 = base_time()
    events = make_events(3_000, seed=3, t0=t0, cards=50, prefix="a")
    rnd = random.Random(1)
    messages: list[tuple[bytes, bytes, int]] = []
    for e in events:
        t = (
            e["ts"]
            if isinstance(e["ts"], int)
            else int(datetime.fromisoformat(str(e["ts"]).replace("Z", "+00:00")).timestamp() * 1000)
        )
        e["ts"] = t
        record = {
            **e,
            "ts": datetime.fromtimestamp(t / 1000, UTC),
            "note": "x" if rnd.random() < 0.5 else None,
        }
        messages.append((str(e["card"]).encode(), _avro(record, parsed), t))
    for i, junk in enumerate(GARBAGE):
        messages.insert(500 * (i + 1), (b"junk", junk, t0 + 1_000 * i))
    produce_raw(bootstrap, topic, messages)

    spec = write_spec(
        tmp_path / "avro.yaml",
        brokers=bootstrap,
        topic=topic,
        group=unique_topic("avro"),
        cases_file=tmp_path / "cases.jsonl",
        options={"dead_letter_topic": dlq},
        source_format=f"  format: avro\n  avro_schema: {schema_path}",
    )
    run_cli(
        "run",
        "-c",
        str(spec),
        "--data-dir",
        str(tmp_path / "data"),
        "--until-end",
        "-q",
        "--summary-json",
        str(tmp_path / "summary.json"),
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["events"] == len(events)
    assert summary["quarantined"] == len(GARBAGE)

    store = Store(tmp_path / "data", read_only=True)
    rows = store.select(
        "SELECT key, sum(count), sum(sum) FROM buckets WHERE metric = 'card' AND tier = 'hour' AND start >= ? AND start < ? GROUP BY key",
        [t0 - HOUR, t0 + 2 * HOUR],
    )
    got = {str(k): (int(c), round(float(s), 6)) for k, c, s in rows}
    want: dict[str, tuple[int, float]] = {}
    for e in events:
        c, s = want.get(str(e["card"]), (0, 0.0))
        want[str(e["card"])] = (c + 1, s + float(e["amount"]))
    assert got == {k: (c, round(s, 6)) for k, (c, s) in want.items()}

    quarantined = [
        json.loads(line)
        for line in (tmp_path / "data" / "quarantine.jsonl").read_text().splitlines()
    ]
    dead = read_topic(bootstrap, dlq)
    assert len(dead) == len(GARBAGE)
    assert sorted(k.decode() for k, _, _ in dead) == sorted(q["position"] for q in quarantined)
    for key, value, _ in dead:
        record = json.loads(value)
        assert record["position"] == key.decode()
        assert record["reason"] and record["detail"]
