"""The Python peer: Quix Streams computing the shared windowed aggregations from Kafka.

Runs in its own virtualenv (``bench/.quix-venv``, made by ``bench/run.py`` from
``bench/quix-requirements.txt``): quixstreams 3.28 pins ``confluent-kafka<2.13`` while
riskstream pins 2.16, so the two cannot share one environment.

    python bench/quix_app.py BOOTSTRAP TOPIC EVENTS STATE_DIR

Card and merchant ``count`` and ``sum(amount)`` per 1-minute and 1-hour tumbling windows
(event time from ``event_time``, grace = 7 days like riskstream's ``max_lateness``), keyed with ``group_by`` (Quix repartitions through an
internal topic), RocksDB state, commits every second (riskstream checkpoints every second).
Prints one JSON line: events, seconds from the first message to the last window update.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Sum

LATENESS_MS = 7 * 86_400_000


def main() -> int:
    bootstrap, topic_name, events, state_dir = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        sys.argv[4],
    )
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"quix-bench-{time.time_ns()}",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        commit_interval=1.0,
        processing_guarantee="at-least-once",
        loglevel="WARNING",
    )

    def event_time(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
        return int(value["event_time"])

    topic = app.topic(topic_name, value_deserializer="json", timestamp_extractor=event_time)
    sdf = app.dataframe(topic)
    done = {"card_1m": 0, "card_1h": 0, "merchant_1m": 0, "merchant_1h": 0}
    clock = {"first": 0.0, "last": 0.0}

    def first(value: Any) -> None:
        if not clock["first"]:
            clock["first"] = time.perf_counter()

    sdf = sdf.update(first)

    def counter(name: str) -> Any:
        def seen(value: Any) -> None:
            done[name] += 1
            clock["last"] = time.perf_counter()
            if all(n >= events for n in done.values()):
                app.stop()

        return seen

    for dim in ("card", "merchant"):
        keyed = sdf.group_by(f"{dim}_id", name=f"by-{dim}")
        for label, width in (("1m", 60_000), ("1h", 3_600_000)):
            # Grace = riskstream's max_lateness (7d): late events count, as in riskstream.
            win = (
                keyed.tumbling_window(width, grace_ms=LATENESS_MS)
                .agg(count=Count(), sum=Sum("amount"))
                .current()
            )
            win.update(counter(f"{dim}_{label}"))
    app.run(timeout=60.0)  # a safety net: ends 60 s after the last message if a count falls short
    print(
        json.dumps(
            {
                "events": events,
                "seconds": clock["last"] - clock["first"],
                "updates": done,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
