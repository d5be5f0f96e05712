"""Fixtures of the Spark runner tests: the session Kafka broker and PostgreSQL cluster, and one
Spark session per test module (a Spark session costs 10-20 s of start-up on two cores)."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.kafka_broker import kafka_broker, kafka_topic  # noqa: F401


@pytest.fixture(scope="module")
def spark_local() -> Iterator[Any]:
    """A ``local[2]`` Spark session with the Kafka connector; the test fails if it cannot start."""
    try:
        from riskstream.runners.spark.session import build_session

        session = build_session("local[2]")
    except Exception as exc:  # the runner cannot work here: a failure, never a skip
        pytest.fail(f"the Spark session could not start: {exc}", pytrace=False)
    yield session
    session.stop()
