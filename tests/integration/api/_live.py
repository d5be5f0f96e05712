"""A live riskstream over a generated file: runner thread + real HTTP server, and brute force.

The spec has one filtered metric (``card``: succeeded payments per card), a count-only
metric, and three rules; the events file holds valid events (with a guaranteed velocity
burst) plus malformed lines. ``expected_*`` helpers compute the truth directly from the
events, never through the engine.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from riskstream.api.auth import KeyRing
from riskstream.api.server import ServerHandle, start_background
from riskstream.runners.embedded import EmbeddedRunner
from riskstream.runners.embedded_live import EmbeddedLive
from riskstream.runners.session import sink_factory
from riskstream.sources.file import FileSource
from riskstream.spec.load import load_spec
from riskstream.store.duckdb import Store

T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z, a Monday
WINDOW_MS = 60_000
KEYS = {
    "reader-key-0001": "read",
    "decider-key-0002": "decide",
    "analyst-key-0003": "read+analyst",
    "admin-key-0004": "read+decide+analyst+sensitive",
}
READER, DECIDER, ANALYST, ADMIN = KEYS
BAD_LINES = [
    b"{not json",
    b"[1, 2]",
    b'{"event_id": "q1", "event_time": 1767571200000, "amount": "abc"}',
]

SPEC = """\
name: apitest
source: {{kind: file, path: events.jsonl}}
event:
  time: event_time
  id: event_id
  fields: {{amount: float, card_id: str, card_number: str, status: str, merchant_id: str}}
  sensitive: [card_number]
metrics:
  card:
    dimension: [card_id]
    value: amount
    where: status == 'succeeded'
    stats: [count, sum, avg, min, max]
  merchant:
    dimension: [merchant_id]
rules:
  big_amount:
    when: amount > 950
    action: block
    score: 90
    description: a single very large payment
  card_velocity:
    when: card.count(1m) >= 4
    action: review
    score: 60
  negative:
    when: amount < 0
    action: tag
    score: 5
sinks:
  - {{kind: file, path: {cases}}}
checkpoint: {{every: 200ms, events: 1000}}
batch_size: 300
"""


def make_events(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` background events over ~2 hours plus a burst of 6 payments of card ``c_burst``."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    t = T0 + 1234
    for i in range(n):
        t += rng.randint(200, 5000)
        card = f"c{rng.randrange(12)}"
        events.append(
            {
                "event_id": f"e{i:05d}",
                "event_time": t,
                "amount": round(rng.uniform(1, 1000), 2),
                "card_id": card,
                "card_number": f"4000{rng.randrange(10**12):012d}",
                "status": "succeeded" if rng.random() < 0.9 else "declined",
                "merchant_id": f"m{rng.randrange(5)}",
            }
        )
        if i == n // 2:
            for j in range(6):
                t += 1500
                events.append(
                    {
                        "event_id": f"burst{j}",
                        "event_time": t,
                        "amount": 20.0 + j,
                        "card_id": "c_burst",
                        "card_number": "4111111111111111",
                        "status": "succeeded",
                        "merchant_id": "m0",
                    }
                )
    return events


def second(t: int) -> int:
    """Start of the second holding ``t``."""
    return t // 1000 * 1000


def count_1m(events: list[dict[str, Any]], upto: int, probe: dict[str, Any] | None = None) -> int:
    """``card.count(1m)`` for ``events[upto]`` (or ``probe`` after all of ``events``) by brute force."""
    e = probe if probe is not None else events[upto]
    seen = events if probe is not None else events[: upto + 1]
    b = second(e["event_time"])
    n = sum(
        1
        for x in seen
        if x["card_id"] == e["card_id"]
        and x["status"] == "succeeded"
        and b - WINDOW_MS < second(x["event_time"]) <= b
    )
    if probe is not None and probe.get("status") == "succeeded":
        n += 1
    return n


def fired(events: list[dict[str, Any]], i: int, probe: dict[str, Any] | None = None) -> set[str]:
    """Rules that fire for ``events[i]`` (or ``probe``), by brute force."""
    e = probe if probe is not None else events[i]
    rules = set()
    if e["amount"] > 950:
        rules.add("big_amount")
    if count_1m(events, i, probe) >= 4:
        rules.add("card_velocity")
    if e["amount"] < 0:
        rules.add("negative")
    return rules


def expected_cases(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(event_id, rule) for every case the run must raise."""
    return [(e["event_id"], r) for i, e in enumerate(events) for r in sorted(fired(events, i))]


def card_stats(events: list[dict[str, Any]], card: str, frm: int, to: int) -> dict[str, Any]:
    """Every stat of metric ``card`` for ``card`` over ``[frm, to)`` by brute force."""
    xs = [
        e["amount"]
        for e in events
        if e["card_id"] == card and e["status"] == "succeeded" and frm <= e["event_time"] < to
    ]
    return {
        "count": len(xs),
        "sum": sum(xs),
        "avg": sum(xs) / len(xs) if xs else None,
        "min": min(xs) if xs else None,
        "max": max(xs) if xs else None,
    }


@dataclass
class Live:
    """The running system and what was fed to it."""

    root: Path
    data_dir: Path
    events: list[dict[str, Any]]
    runner: EmbeddedRunner
    server: ServerHandle
    thread: threading.Thread
    cases: list[tuple[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.server.url

    def headers(self, key: str = ADMIN) -> dict[str, str]:
        """Authorization header for ``key``."""
        return {"Authorization": f"Bearer {key}"}

    def stop(self) -> None:
        """Stop the runner and the server."""
        self.runner.request_stop()
        self.thread.join(30)
        self.server.stop()


def start_live(
    root: Path, n: int = 1500, *, seed: int = 7, spec_text: str = SPEC, server: str | None = None
) -> Live:
    """Write the spec and events, run the engine in a thread, serve the API; wait until caught up.

    ``spec_text`` (a ``str.format`` template with ``{cases}``) defaults to :data:`SPEC`;
    ``server`` is the ASGI server (uvicorn or granian; default: the API's default).
    """
    root.mkdir(parents=True, exist_ok=True)
    data_dir = root / "data"
    events = make_events(n, seed)
    lines = [orjson.dumps(e) for e in events]
    lines[10:10] = BAD_LINES
    (root / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    spec_path = root / "spec.yaml"
    spec_path.write_text(spec_text.format(cases=root / "cases.jsonl"))
    spec = load_spec(spec_path)
    source = FileSource(root / "events.jsonl", until_end=False)  # follows the file: stays running
    runner = EmbeddedRunner(
        spec, source, data_dir, sink_factory(spec, data_dir), spec_path=spec_path
    )
    keys = KeyRing.parse(",".join(f"{k}={v}" for k, v in KEYS.items()))
    server = start_background(
        spec, data_dir, EmbeddedLive(runner), port=0, log=lambda m: None, keys=keys, server=server
    )
    thread = threading.Thread(target=runner.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    live = Live(root, data_dir, events, runner, server, thread, expected_cases(events))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        caught_up = runner.stats.events >= len(events) and thread.is_alive()
        if caught_up and stored_cases(live) >= len(live.cases):
            return live
        if not thread.is_alive():
            break
        time.sleep(0.1)
    live.stop()
    raise AssertionError(f"engine did not catch up: {runner.stats.summary()}")


def stored_cases(live: Live) -> int:
    """Cases in the store, read through a new Store (under the runner's lock, as the API does)."""
    with live.runner.lock:
        return int(Store(live.data_dir).select("SELECT count(*) FROM cases")[0][0])


def case_counts(live: Live) -> Counter[str]:
    """Expected cases per rule."""
    return Counter(rule for _, rule in live.cases)
