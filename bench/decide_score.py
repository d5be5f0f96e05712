"""Micro-bench: scoring one event in process against a warm pipeline (the ``/v1/decide`` engine step).

Loads ``--events`` synthetic events into a :class:`Pipeline`, then scores ``--samples`` single
events three ways and prints p50/p99/mean in microseconds:

* ``python``: the single-event scorer with its plain-Python rule backend (the decide default);
* ``polars``: the same scorer forced onto the Polars rule backend;
* ``evaluate``: ``Pipeline.evaluate`` on a one-line batch (the in-process API);
* ``rules``: only the rules' Python backend, every rule on one scored event's row.

Small by default; run by hand: ``.venv/bin/python bench/decide_score.py [--events N --samples M]``.
Compare two versions by running both in the same session (the machine's load moves figures).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from riskstream.core.events import RawBatch
from riskstream.engine.pipeline import Pipeline
from riskstream.engine.single import scorer_for
from riskstream.spec.load import parse_spec

SPEC = """\
name: decide-bench
event:
  time: event_time
  id: event_id
  max_lateness: 10m
  fields: {amount: float, card_id: str, shop: str, merchant_id: str, qty: int, vip: bool}
tiers: [second, minute, hour, day]
metrics:
  card: {dimension: [card_id], value: amount, stats: [count, sum, avg, min, max, stddev]}
  merchant_cards: {dimension: [merchant_id], value: card_id, stats: [distinct]}
  shop: {dimension: [shop], where: "amount > 10 and not vip"}
lists:
  blocked: {values: [s1, s3]}
rules:
  big: {when: amount > 900, action: block, score: 90}
  busy: {when: card.count(1m) >= 3, action: review, score: 60}
  spend: {when: "card.sum(1h) > 4000 and card.avg(10m) > 400", action: tag, score: 20}
  spread: {when: "card.max(5m) - card.min(5m) > 500 or card.stddev(2m) > 200", action: review}
  fan: {when: merchant_cards.distinct(10m) >= 3, action: review}
  shop: {when: "shop.count(5m) >= 40 and shop not in blocked", action: tag}
  mix: {when: "coalesce(qty, 0) * 2 > 7 and (is_null(vip) or len(card_id) > 4)", action: tag}
"""
T0 = 1_767_571_200_000


def event(rng: random.Random, i: int, t: int, cards: int) -> dict[str, Any]:
    """One synthetic card event at time ``t``."""
    return {
        "event_id": f"e{i}",
        "event_time": t,
        "amount": round(rng.expovariate(1 / 80), 2),
        "card_id": f"card{rng.randrange(cards)}",
        "shop": f"s{rng.randrange(50)}",
        "merchant_id": f"m{rng.randrange(200)}",
        "qty": rng.randrange(6),
        "vip": rng.random() < 0.1,
    }


def timed(fn: Callable[[bytes], object], lines: list[bytes]) -> list[float]:
    """Seconds per call of ``fn`` on each line."""
    out = []
    for line in lines:
        t0 = time.perf_counter()
        fn(line)
        out.append(time.perf_counter() - t0)
    return out


def summary(name: str, times: list[float]) -> str:
    """``name: p50 p99 mean`` in microseconds."""
    us = sorted(t * 1e6 for t in times)
    p99 = us[min(len(us) - 1, int(0.99 * len(us)))]
    return f"{name:9s} p50 {us[len(us) // 2]:8.1f} us  p99 {p99:8.1f} us  mean {statistics.fmean(us):8.1f} us"


def main() -> None:
    """Load the pipeline, score single events, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20_000, help="events loaded before scoring")
    ap.add_argument("--cards", type=int, default=2_000, help="distinct cards")
    ap.add_argument("--samples", type=int, default=2_000, help="single events scored per way")
    args = ap.parse_args()
    rng = random.Random(7)
    p = Pipeline(parse_spec(SPEC), clock=lambda: T0 + 10**12)
    t = T0
    batch = 5_000
    for start in range(0, args.events, batch):
        lines = []
        for i in range(start, min(args.events, start + batch)):
            t += rng.randrange(0, 60)
            lines.append(orjson.dumps(event(rng, i, t, args.cards)))
        p.process(RawBatch(lines=lines, positions=[f"b@{start + j}" for j in range(len(lines))]))
    probes = [orjson.dumps(event(rng, 10**7 + i, t, args.cards)) for i in range(args.samples)]
    scorer = scorer_for(p)
    assert scorer.plan().py_rules is not None, "the bench spec should be covered by Python"

    def one(line: bytes) -> object:
        return scorer.score([line], ["bench"], unique_keys=True)

    def evaluate(line: bytes) -> object:
        return p.evaluate(RawBatch(lines=[line], positions=["bench"]))

    results = {}
    for name, python, fn in (
        ("python", True, one),
        ("polars", False, one),
        ("evaluate", True, evaluate),
    ):
        scorer.python = python
        fn(probes[0])  # warm caches
        results[name] = timed(fn, probes)
    scorer.python = True
    plan_rules = scorer.plan().py_rules
    assert plan_rules is not None
    envs = []
    for line in probes:
        got = scorer.score([line], ["bench"], unique_keys=True)[0]
        envs.append({**got.row, **got.features})  # type: ignore[union-attr]
    rule_times = []
    for env in envs:
        t0 = time.perf_counter()
        for rule in plan_rules:
            rule(env)
        rule_times.append(time.perf_counter() - t0)
    results["rules"] = rule_times
    print(f"events loaded {args.events}, samples {args.samples}")
    for name, times in results.items():
        print(summary(name, times))


if __name__ == "__main__":
    main()
