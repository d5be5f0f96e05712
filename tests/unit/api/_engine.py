"""A runner that is not running: its pipeline processed a few batches, nothing checkpointed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from riskstream.api.auth import KeyRing
from riskstream.api.context import ApiContext
from riskstream.api.server import serve_context
from riskstream.core.events import RawBatch
from riskstream.runners.embedded import EmbeddedRunner
from riskstream.runners.embedded_live import EmbeddedLive
from riskstream.spec.load import parse_spec
from riskstream.store.duckdb import Store

T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z

SPEC = """\
name: unit
event:
  time: event_time
  id: event_id
  max_lateness: 1h
  fields: {amount: float, card_id: str, shop: str, card_number: str}
  sensitive: [card_number]
metrics:
  card: {dimension: [card_id], value: amount, stats: [count, sum, max]}
  shop: {dimension: [shop]}
rules:
  big: {when: amount > 900, action: block, score: 90}
  busy_card: {when: card.count(1m) >= 3, action: review, score: 60}
  busy_shop: {when: shop.count(5m) >= 6, action: tag, score: 10}
"""


class _NoSource:
    name = "none"

    def seek(self, positions: Any) -> None:
        """Nothing to seek."""

    def read_batch(self, max_events: int, timeout_s: float) -> None:
        """Always at the end."""
        return None

    def close(self) -> None:
        """Nothing to close."""


def events(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """``n`` events, one every 0.8 s, few cards and shops (so features are non-trivial)."""
    rng = random.Random(seed)
    return [
        {
            "event_id": f"e{i}",
            "event_time": T0 + i * 800,
            "amount": round(rng.uniform(1, 1000), 2),
            "card_id": f"c{rng.randrange(6)}",
            "shop": f"s{rng.randrange(3)}",
            "card_number": "4000000000001234",
        }
        for i in range(n)
    ]


def runner_with_state(tmp: Path, n: int = 400) -> tuple[EmbeddedRunner, list[dict[str, Any]]]:
    """A runner whose pipeline processed ``n`` events in batches of 100 (all still pending)."""
    spec = parse_spec(SPEC)
    runner = EmbeddedRunner(spec, _NoSource(), tmp / "data", lambda marks: [])
    evs = events(n)
    for i in range(0, n, 100):
        chunk = evs[i : i + 100]
        outcome = runner.pipeline.process(
            RawBatch(
                lines=[orjson.dumps(e) for e in chunk],
                positions=[f"f@{i + j}" for j in range(len(chunk))],
            )
        )
        runner.stats.events += outcome.events
        for c in outcome.cases:
            runner.stats.cases_by_rule[c.rule] += 1
    runner.positions = {}
    runner.running = True  # what recovery sets: the API then treats the runner as running
    return runner, evs


def context(tmp: Path, runner: EmbeddedRunner, keys: str = "") -> ApiContext:
    """An API context over the runner and a fresh store."""
    return ApiContext(
        spec=runner.spec,
        data_dir=tmp / "data",
        store=Store(tmp / "data"),
        engine=EmbeddedLive(runner),
        keys=KeyRing.parse(keys),
    )


@contextmanager
def served(ctx: ApiContext) -> Iterator[httpx.Client]:
    """A real server on a free loopback port over ``ctx``, and a client for it."""
    handle = serve_context(ctx, port=0, log=lambda m: None)
    try:
        with httpx.Client(base_url=handle.url, timeout=30) as client:
            yield client
    finally:
        handle.stop()
