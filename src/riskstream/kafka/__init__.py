"""Kafka client plumbing shared by the Kafka source and the Kafka sink: client configuration
from the spec, librdkafka logging and errors, partition names, the dead-letter producer."""
