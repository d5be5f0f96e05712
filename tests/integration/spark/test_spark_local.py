"""The Spark runner on ``local[2]``: a 4-partition topic keyed at random, card and merchant
features (numeric and distinct), the PostgreSQL store.

Every case equals a brute-force evaluation in ingestion order, the case set equals the embedded
engine's on the same topic, and stitched range queries over the store equal brute-force sums.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.spark import helpers
from tests.kafka_broker import KafkaBroker, unique_topic
from tests.postgres_cluster import PostgresCluster, unique_schema

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N_EVENTS = 2500


@pytest.fixture(scope="module")
def topic(kafka_broker: KafkaBroker) -> tuple[str, list[helpers.Msg]]:
    """The shared topic and its events in ingestion order."""
    name = unique_topic("spark-local")
    kafka_broker.create_topic(name, partitions=4)
    helpers.produce_random(kafka_broker.bootstrap, name, helpers.events(N_EVENTS))
    return name, helpers.ingestion_order(kafka_broker.bootstrap, name)


def _cases(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _run_spark(
    spark: Any, spec_path: Path, bootstrap: str, topic: str, data: Path, dsn: str
) -> dict[str, Any]:
    from riskstream.runners.session import sink_factory
    from riskstream.runners.spark.job import KafkaInput, SparkRunner
    from riskstream.spec.load import load_spec

    spec = load_spec(spec_path)
    runner = SparkRunner(
        spec,
        KafkaInput(bootstrap, [topic], {}),
        data,
        data / "checkpoint",
        sink_factory(spec, data),
        until_end=True,
        spec_path=spec_path,
        session=spark,
        max_events=1000,
        store_dsn=dsn,
        log=print,  # per-batch phases, shown by pytest on failure (or with -s)
    )
    return runner.run().summary() | {"spark": runner.metrics_summary()}


@pytest.mark.timeout(900)  # ~4 min with a load average of 15 on 2 cores
def test_local_cases_equal_brute_force_and_embedded_and_queries_stitch(
    spark_local: Any,
    kafka_broker: KafkaBroker,
    pg_cluster: PostgresCluster,
    topic: tuple[str, list[helpers.Msg]],
    tmp_path: Path,
) -> None:
    name, order = topic
    schema = unique_schema("spark")
    spark_cases = tmp_path / "spark-cases.jsonl"
    spec = helpers.write_spec(
        tmp_path / "spark.yaml",
        spark_cases,
        store=f"store: {{kind: postgres, schema: {schema}}}\n",
    )
    summary = _run_spark(
        spark_local, spec, kafka_broker.bootstrap, name, tmp_path / "spark", pg_cluster.dsn
    )
    assert summary["events"] == N_EVENTS
    assert summary["spark"]["batches"] >= 3  # several micro-batches, not one

    got = _cases(spark_cases)
    ids = [c["case_id"] for c in got]
    assert len(ids) == len(set(ids)), "a case was delivered twice"
    expected = helpers.brute_cases(order)
    by_event: dict[str, dict[str, Any]] = {}
    for c in got:
        by_event.setdefault(c["event_id"], {})[c["rule"]] = c["features"]
    assert set(by_event) == set(expected)
    for eid, rules in expected.items():
        assert set(by_event[eid]) == set(rules), eid
        for rule, feats in rules.items():
            for fname, value in feats.items():
                assert by_event[eid][rule][fname] == value, (eid, rule, fname)
    assert {c["rule"] for c in got} == {
        "card_repeat",
        "card_hops",
        "merchant_busy",
        "merchant_many_cards",
    }

    # The embedded engine on the same topic (its own DuckDB store) raises the same cases.
    emb_cases = tmp_path / "embedded-cases.jsonl"
    emb_spec = helpers.write_spec(tmp_path / "embedded.yaml", emb_cases)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "riskstream.cli",
            "run",
            "-c",
            str(emb_spec),
            "--source",
            f"kafka://{kafka_broker.bootstrap}/{name}",
            "--data-dir",
            str(tmp_path / "embedded"),
            "--until-end",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    emb = _cases(emb_cases)
    assert {c["case_id"] for c in emb} == set(ids)
    assert {c["case_id"]: c["features"] for c in emb} == {c["case_id"]: c["features"] for c in got}

    # Stitched range queries over the PostgreSQL store equal brute-force sums.
    from riskstream.query.range import query_range
    from riskstream.spec.load import load_spec
    from riskstream.store.factory import open_store

    loaded = load_spec(spec)
    store = open_store(loaded, tmp_path / "spark", pg_cluster.dsn, read_only=True)
    # Whole seconds (the finest tier): the answer is exact there, and stitched from several tiers.
    t0 = min(m.event["event_time"] for m in order) // 1000 * 1000
    t1 = max(m.event["event_time"] for m in order) // 1000 * 1000 + 1000
    ranges = [(t0, t1), (t0 + 2000, t0 + 61_000), (t0 // 60_000 * 60_000, t1 + 3_600_000)]
    checked = 0
    for metric, field in (
        ("card", "card_id"),
        ("merchant", "merchant_id"),
        ("merchant_cards", "merchant_id"),
    ):
        counts: dict[str, int] = {}
        for m in order:
            counts[m.event[field]] = counts.get(m.event[field], 0) + 1
        keys = sorted(counts, key=lambda k: (-counts[k], k))[:4]
        for key in keys:
            for frm, to in ranges:
                answer = query_range(loaded, store, metric, key, frm, to)
                truth = helpers.brute_range(order, metric, key, frm, to)
                assert answer["exact"], answer
                assert answer["stats"]["count"] == truth["count"], (metric, key, frm, to)
                if "sum" in truth:
                    assert math.isclose(
                        answer["stats"]["sum"], truth["sum"], rel_tol=1e-9, abs_tol=1e-9
                    )
                if "max" in truth:
                    assert answer["stats"]["max"] == truth["max"]
                if "distinct" in truth:
                    assert answer["stats"]["distinct"] == truth["distinct"]
                checked += 1
    store.close()
    assert checked == 36
