"""The real Kafka broker fixtures for the several-engines tests (PostgreSQL's are in tests/conftest.py)."""

from tests.kafka_broker import kafka_broker, kafka_topic  # noqa: F401
