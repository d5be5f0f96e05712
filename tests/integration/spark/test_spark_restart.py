"""The Spark driver SIGKILLed twice mid-topic and restarted with the same checkpoint dir.

After the third run ends: aggregates (stitched queries) and the case set equal brute force
(so they equal an uninterrupted run's), no case id twice in the outbox, and every case on the
Kafka cases topic exactly once.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.integration.spark import helpers
from tests.kafka_broker import KafkaBroker, unique_topic
from tests.postgres_cluster import PostgresCluster, unique_schema

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N_EVENTS = 2400


def _fence(dsn: str, schema: str) -> int:
    try:
        with psycopg.connect(dsn, connect_timeout=3) as con:
            row = con.execute(
                f"SELECT max(pos) FROM {schema}.positions WHERE source LIKE 'spark:%%' AND part = 'batch'"  # type: ignore[arg-type]
            ).fetchone()
    except psycopg.Error:
        return -1
    return -1 if row is None or row[0] is None else int(row[0])


def _start(spec: Path, bootstrap: str, topic: str, data: Path) -> subprocess.Popen[bytes]:
    log = (data.parent / f"driver-{time.monotonic_ns()}.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "riskstream.cli",
            "run",
            "-c",
            str(spec),
            "--engine",
            "spark",
            "--master",
            "local[2]",
            "--source",
            f"kafka://{bootstrap}/{topic}",
            "--data-dir",
            str(data),
            "--checkpoint-dir",
            str(data / "checkpoint"),
            "--until-end",
            "-q",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # SIGKILL the whole group: the driver and its JVM
    )


def _kill_after(proc: subprocess.Popen[bytes], dsn: str, schema: str, fence: int) -> None:
    deadline = time.monotonic() + 900
    while _fence(dsn, schema) < fence:
        assert proc.poll() is None, "the driver ended before it was killed"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _topic_cases(bootstrap: str, topic: str) -> list[str]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "check-cases",
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    meta = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    ids: list[str] = []
    done: set[int] = set()
    while len(done) < len(meta.partitions):
        m = c.poll(5)
        if m is None:
            continue
        if m.error():
            done.add(m.partition())
            continue
        ids.append(json.loads(m.value())["case_id"])
    c.close()
    return ids


@pytest.mark.timeout(1500)  # three driver starts; ~10 min with a load average of 18 on 2 cores
def test_driver_killed_twice_resumes_exactly_once(
    kafka_broker: KafkaBroker, pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    name = unique_topic("spark-kill")
    cases_topic = unique_topic("spark-kill-cases")
    kafka_broker.create_topic(name, partitions=4)
    kafka_broker.create_topic(cases_topic, partitions=2)
    helpers.produce_random(kafka_broker.bootstrap, name, helpers.events(N_EVENTS, seed=23))
    order = helpers.ingestion_order(kafka_broker.bootstrap, name)
    schema = unique_schema("sparkkill")
    spec = helpers.write_spec(
        tmp_path / "spec.yaml",
        tmp_path / "cases.jsonl",
        store=f"store: {{kind: postgres, schema: {schema}}}\nbatch_size: 400\n",
        kafka_sink=f"{{kind: kafka, brokers: {kafka_broker.bootstrap}, topic: {cases_topic}}}",
    )
    data = tmp_path / "data"
    os.environ["RISKSTREAM_PG_DSN"] = pg_cluster.dsn
    try:
        _kill_after(_start(spec, kafka_broker.bootstrap, name, data), pg_cluster.dsn, schema, 0)
        _kill_after(_start(spec, kafka_broker.bootstrap, name, data), pg_cluster.dsn, schema, 2)
        last = _start(spec, kafka_broker.bootstrap, name, data)
        assert last.wait(900) == 0, sorted(tmp_path.glob("driver-*.log"))
    finally:
        os.environ.pop("RISKSTREAM_PG_DSN", None)
    assert _fence(pg_cluster.dsn, schema) >= 4  # several batches: the kills were mid-topic

    expected = helpers.brute_cases(order)
    with psycopg.connect(pg_cluster.dsn) as con:
        rows = con.execute(f"SELECT case_id, body FROM {schema}.cases").fetchall()  # type: ignore[arg-type]
    outbox = [r[0] for r in rows]
    assert len(outbox) == len(set(outbox)), "a case id twice in the outbox"
    got: dict[str, dict[str, Any]] = {}
    for _cid, body in rows:
        c = json.loads(body)
        got.setdefault(c["event_id"], {})[c["rule"]] = c["features"]
    assert {e: set(r) for e, r in got.items()} == {e: set(r) for e, r in expected.items()}

    delivered = _topic_cases(kafka_broker.bootstrap, cases_topic)
    assert sorted(delivered) == sorted(outbox), "each case exactly once on the cases topic"

    from riskstream.query.range import query_range
    from riskstream.spec.load import load_spec
    from riskstream.store.factory import open_store

    loaded = load_spec(spec)
    store = open_store(loaded, data, pg_cluster.dsn, read_only=True)
    t0 = min(m.event["event_time"] for m in order) // 1000 * 1000
    t1 = max(m.event["event_time"] for m in order) // 1000 * 1000 + 1000
    for metric, field in (("card", "card_id"), ("merchant", "merchant_id")):
        counts: dict[str, int] = {}
        for m in order:
            counts[m.event[field]] = counts.get(m.event[field], 0) + 1
        for key in sorted(counts, key=lambda k: (-counts[k], k))[:5]:
            answer = query_range(loaded, store, metric, key, t0, t1)
            truth = helpers.brute_range(order, metric, key, t0, t1)
            assert answer["stats"]["count"] == truth["count"], (metric, key)
            assert math.isclose(answer["stats"]["sum"], truth["sum"], rel_tol=1e-9)
    store.close()
