"""The Spark runner on a real standalone cluster (a master and two workers from pyspark's jars):
the same checks as local mode, proof that the features are computed by executors of two
workers, not only in the driver's JVM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.spark import helpers
from tests.integration.spark.standalone import StandaloneCluster
from tests.kafka_broker import KafkaBroker, unique_topic
from tests.postgres_cluster import PostgresCluster, unique_schema

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Any, StandaloneCluster]]:
    """The cluster and the module's one Spark session on it."""
    cluster = StandaloneCluster(tmp_path_factory.mktemp("spark-standalone"), workers=2, cores=1)
    try:
        cluster.start()
        from riskstream.runners.spark.session import build_session

        session = build_session(
            cluster.url,
            conf={
                "spark.executor.memory": "512m",
                "spark.cores.max": "2",
                "spark.sql.shuffle.partitions": "2",
            },
        )
    except Exception as exc:
        cluster.stop()
        pytest.fail(f"the standalone cluster could not start: {exc}", pytrace=False)
    yield session, cluster
    session.stop()
    cluster.stop()


@pytest.mark.timeout(900)  # ~9 min with a load average of 17 on 2 cores
def test_standalone_cluster_cases_equal_brute_force(
    cluster_session: tuple[Any, StandaloneCluster],
    kafka_broker: KafkaBroker,
    pg_cluster: PostgresCluster,
    tmp_path: Path,
) -> None:
    from riskstream.runners.session import sink_factory
    from riskstream.runners.spark.job import KafkaInput, SparkRunner
    from riskstream.spec.load import load_spec

    session, cluster = cluster_session
    name = unique_topic("spark-standalone")
    kafka_broker.create_topic(name, partitions=4)
    helpers.produce_random(kafka_broker.bootstrap, name, helpers.events(1500, seed=31))
    order = helpers.ingestion_order(kafka_broker.bootstrap, name)
    cases = tmp_path / "cases.jsonl"
    spec_path = helpers.write_spec(
        tmp_path / "spec.yaml",
        cases,
        store=f"store: {{kind: postgres, schema: {unique_schema('sa')}}}\n",
    )
    spec = load_spec(spec_path)
    runner = SparkRunner(
        spec,
        KafkaInput(kafka_broker.bootstrap, [name], {}),
        tmp_path / "data",
        tmp_path / "data" / "checkpoint",
        sink_factory(spec, tmp_path / "data"),
        until_end=True,
        session=session,
        max_events=600,
        store_dsn=pg_cluster.dsn,
    )
    assert runner.run().events == 1500
    got: dict[str, dict[str, Any]] = {}
    lines = [json.loads(x) for x in cases.read_text().splitlines() if x.strip()]
    assert len({c["case_id"] for c in lines}) == len(lines)
    for c in lines:
        got.setdefault(c["event_id"], {})[c["rule"]] = c["features"]
    expected = helpers.brute_cases(order)
    assert {e: set(r) for e, r in got.items()} == {e: set(r) for e, r in expected.items()}
    for eid, rules in expected.items():
        for rule, feats in rules.items():
            for fname, value in feats.items():
                assert got[eid][rule][fname] == value, (eid, rule, fname)
    # The executors ran on both workers (each worker's work dir has an app with stderr).
    used = [w for w in cluster.work.glob("worker*") if any(w.glob("app-*/*/stderr"))]
    assert len(used) == 2
