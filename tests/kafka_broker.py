"""pytest helpers for the real single-node Kafka broker of ``tools/kafka.py``.

Use from a conftest (or a test module)::

    from tests.kafka_broker import kafka_broker, kafka_topic  # noqa: F401  (fixtures)

    @pytest.mark.kafka
    def test_reads_payments(kafka_broker: KafkaBroker, kafka_topic: str) -> None:
        producer = Producer(kafka_broker.client_config())
        ...

``kafka_broker`` is one broker for the whole session (started on first use, stopped at the
end). A test that restarts or stops a broker starts its own with :func:`broker_or_fail`.

When the broker cannot start, the test fails if ``$CI`` is set (a missing broker must never
turn into a green run), and is skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # tools/ is a plain directory next to tests/
    sys.path.insert(0, str(_ROOT))

from tools.kafka import BrokerError, KafkaBroker  # noqa: E402

__all__ = [
    "BrokerError",
    "KafkaBroker",
    "broker_or_fail",
    "in_ci",
    "kafka_broker",
    "kafka_topic",
    "unavailable",
    "unique_topic",
]


def in_ci() -> bool:
    """True when ``$CI`` is set (and not ``0``/``false``)."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def unavailable(reason: str) -> NoReturn:
    """Fail the test under CI, skip it otherwise."""
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def broker_or_fail(data_dir: Path | str, port: int | None = None, **options: Any) -> KafkaBroker:
    """Start a :class:`KafkaBroker` in ``data_dir`` and return it, running.

    ``options`` go to :class:`KafkaBroker` (``partitions``, ``config``, ``heap`` …). The
    caller stops it (``broker.stop()``, or use it as a context manager).
    """
    broker = KafkaBroker(data_dir, port, **options)
    try:
        broker.start()
    except (BrokerError, OSError) as exc:
        detail = exc.report() if isinstance(exc, BrokerError) else f"kafka: {exc}"
        unavailable(f"the Kafka broker could not start: {detail}")
    return broker


def unique_topic(prefix: str = "test") -> str:
    """A fresh, valid topic name (the session broker is shared by all tests)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", prefix).strip("-")[:120] or "test"
    return f"{clean}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One real broker for the test session (``bootstrap`` is ``127.0.0.1:<port>``)."""
    broker = broker_or_fail(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_topic(kafka_broker: KafkaBroker, request: pytest.FixtureRequest) -> str:
    """A new topic with 4 partitions on the session broker, named after the test."""
    name = unique_topic(request.node.name)
    kafka_broker.create_topic(name, partitions=4)
    return name
