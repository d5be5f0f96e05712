"""The Python peer: Quix Streams computing the shared windowed aggregations from Kafka.

Runs in its own virtualenv (``bench/.quix-venv``, made by ``bench/run.py`` from
``bench/quix-requirements.txt``): quixstreams 3.28 pins ``confluent-kafka<2.13`` while
riskstream pins 2.16, so the two cannot share one environment.

    python bench/quix_app.py BOOTSTRAP TOPIC EVENTS STATE_DIR [IDLE_TIMEOUT_S]

Card and merchant ``count`` and ``sum(amount)`` per 1-minute and 1-hour tumbling windows
(event time from ``event_time``, grace = 7 days like riskstream's ``max_lateness``), keyed with
``group_by`` (Quix repartitions through an internal topic), RocksDB state, commits every second
(riskstream checkpoints every second), a fresh consumer group reading from the earliest offset.

The app stops by itself once each of the four windowed aggregations has seen ``EVENTS``
updates (``.current()`` emits one per message), or after ``IDLE_TIMEOUT_S`` (default 60) without
a new message. It prints one JSON line:

* ``seconds``: from the first message to the last window update (processing only);
* ``wall``: from process start to the end of ``app.run`` (start-up, group join, topic creation);
* ``updates``: window updates per aggregation;
* ``counted``: per aggregation, the sum over all (key, window) of the window's latest count —
  equal to ``EVENTS`` when Quix processed the whole topic exactly once;
* ``sum_amount``: per aggregation, the sum of the windows' latest ``sum(amount)``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

T0 = time.perf_counter()

from quixstreams import Application  # noqa: E402
from quixstreams.dataframe.windows import Count, Sum  # noqa: E402

LATENESS_MS = 7 * 86_400_000


def main() -> int:
    bootstrap, topic_name, events, state_dir = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        sys.argv[4],
    )
    idle = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
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
    names = ("card_1m", "card_1h", "merchant_1m", "merchant_1h")
    done = dict.fromkeys(names, 0)
    # Latest (count, sum) per (key, window start): a window's count only grows, so the last
    # update holds its total.
    latest: dict[str, dict[tuple[Any, int], tuple[int, float]]] = {n: {} for n in names}
    clock = {"first": 0.0, "last": 0.0}

    def first(value: Any) -> None:
        if not clock["first"]:
            clock["first"] = time.perf_counter()

    sdf = sdf.update(first)

    def counter(name: str) -> Any:
        table = latest[name]

        def seen(value: Any, key: Any, timestamp: int, headers: Any) -> None:
            done[name] += 1
            table[(key, value["start"])] = (value["count"], value["sum"])
            clock["last"] = time.perf_counter()
            if done[name] >= events and all(n >= events for n in done.values()):
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
            win.update(counter(f"{dim}_{label}"), metadata=True)
    # collect=False: do not keep every output in a list (that would slow Quix down and cost
    # memory); the timeout is a safety net that ends the run when the topic stalls.
    app.run(timeout=idle, collect=False)
    wall = time.perf_counter() - T0
    print(
        json.dumps(
            {
                "events": events,
                "seconds": clock["last"] - clock["first"],
                "wall": wall,
                "updates": done,
                "counted": {n: sum(c for c, _ in t.values()) for n, t in latest.items()},
                "windows": {n: len(t) for n, t in latest.items()},
                "sum_amount": {
                    n: round(sum(s for _, s in t.values()), 2) for n, t in latest.items()
                },
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
