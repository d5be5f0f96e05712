"""Kafka plumbing shared by source and sinks: client configuration, error reporting, the dead-letter producer.

Client settings come from the spec, never from code changes:

* ``brokers`` (``bootstrap.servers``) and, for a source, ``group``;
* any librdkafka setting as ``kafka.<name>: value`` in ``source.options`` (or in a kafka
  sink's ``config:`` map), e.g. ``kafka.security.protocol: SASL_SSL``;
* a secret from the environment as ``kafka.<name>_env: VARIABLE``, e.g.
  ``kafka.sasl.password_env: KAFKA_PASSWORD`` (the spec never holds the secret).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from riskstream.errors import RiskstreamError

log = logging.getLogger("riskstream.kafka")

#: librdkafka error codes (negative: client-side) used by the source and the sinks.
PARTITION_EOF = -191
UNKNOWN_TOPIC_OR_PART = 3
UNKNOWN_TOPIC = -188

_REPORT_EVERY_S = 30.0


def client_config(
    brokers: str | None,
    options: Mapping[str, Any],
    *,
    prefix: str = "kafka.",
    where: str = "source",
    error: type[RiskstreamError],
) -> dict[str, Any]:
    """``bootstrap.servers`` plus the ``kafka.*`` pass-through settings (``*_env`` from the environment).

    Problems raise ``error`` (the caller's type: ``SourceError`` for a source, ``SinkError``
    for a sink) naming ``where``.
    """
    if not brokers:
        raise error(f"{where}: 'brokers' is needed for Kafka (host:port[,host:port])")
    conf: dict[str, Any] = {"bootstrap.servers": brokers}
    for key, value in options.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name.endswith("_env"):
            var = str(value)
            env = os.environ.get(var)
            if env is None:
                raise error(f"{where}: environment variable {var} ({key}) is not set")
            conf[name[: -len("_env")]] = env
        else:
            conf[name] = value
    return conf


def quiet_client(conf: dict[str, Any], role: str) -> dict[str, Any]:
    """Route librdkafka's own log lines and errors through Python logging, rate-limited."""
    reporter = ErrorReporter(role)
    conf.setdefault("logger", _RdLogger(role))
    conf.setdefault("log_level", 3)
    conf.setdefault("error_cb", reporter)
    conf.setdefault("client.id", f"riskstream-{role}")
    return conf


class ErrorReporter:
    """librdkafka ``error_cb``: connection trouble is logged, at most once per 30 s per code."""

    def __init__(self, role: str) -> None:
        self.role = role
        self._last: dict[int, float] = {}
        self.fatal: Any = None

    def __call__(self, err: Any) -> None:
        code = int(err.code())
        if err.fatal():
            self.fatal = err
        now = time.monotonic()
        if now - self._last.get(code, -_REPORT_EVERY_S) >= _REPORT_EVERY_S:
            self._last[code] = now
            log.warning("kafka %s: %s (retrying)", self.role, err.str())


class _RdLogger:
    """A ``logging.Logger``-like sink for librdkafka lines (``logger`` config)."""

    def __init__(self, role: str) -> None:
        self.role = role
        self._last = 0.0

    def log(self, level: int, fmt: str, *args: Any) -> None:
        # librdkafka repeats "Connect to ... failed" every few hundred ms while a broker is down.
        now = time.monotonic()
        if level >= logging.ERROR and now - self._last < _REPORT_EVERY_S:
            return
        self._last = now
        log.log(level, "kafka %s: " + fmt, self.role, *args)


def part_name(topic: str, partition: int) -> str:
    """``payments/3``: the partition name used for positions, lag and quarantine."""
    return f"{topic}/{partition}"


def split_part(name: str) -> tuple[str, int]:
    """``payments/3`` -> ``("payments", 3)`` (topics may not hold ``/``)."""
    topic, _, partition = name.rpartition("/")
    return topic, int(partition)


class DeadLetterProducer:
    """Quarantined events to a dead-letter topic: key = position, value = the quarantine record.

    At-least-once: after a crash the replayed batch quarantines the same events again, so
    a consumer of the topic dedupes by key (the position names one event exactly).
    """

    def __init__(self, conf: dict[str, Any], topic: str) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self._failed = 0
        pconf = quiet_client(dict(conf), "dead-letter")
        pconf.setdefault("enable.idempotence", True)
        pconf.setdefault("acks", "all")
        pconf.setdefault("linger.ms", 50)
        self._producer = Producer(pconf)

    def send(self, records: Iterable[Any]) -> None:
        """Queue records (objects with ``position`` and ``record()``); never blocks for long."""
        for q in records:
            value = orjson.dumps(q.record())
            while True:
                try:
                    self._producer.produce(
                        self.topic, key=q.position.encode(), value=value, on_delivery=self._done
                    )
                    break
                except BufferError:  # local queue full: wait for deliveries (backpressure)
                    self._producer.poll(0.1)
        self._producer.poll(0)

    def _done(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failed += 1
            log.error("dead-letter topic %s: %s", self.topic, err.str())

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout_s``)."""
        left = self._producer.flush(timeout_s)
        if left:
            log.warning(
                "dead-letter topic %s: %d records undelivered at shutdown (still in quarantine.jsonl)",
                self.topic,
                left,
            )
