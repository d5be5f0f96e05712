"""The real Kafka broker fixtures (tools/kafka.py) for the Kafka acceptance tests."""

from tests.kafka_broker import kafka_broker, kafka_topic  # noqa: F401
