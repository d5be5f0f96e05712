"""Batched decide scoring gives exactly the answers of scoring each event alone."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from riskstream.api.batching import DecideWorker, Item, Planner, Quarantine, Scored, score
from riskstream.runners.embedded_live import EmbeddedLive
from tests.unit.api._engine import T0, runner_with_state


def _item(event: dict[str, Any], ingest: bool = False) -> Item:
    return Item(event=event, line=orjson.dumps(event), ingest=ingest)


def _random_events(rng: random.Random, n: int, last: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        e: dict[str, Any] = {
            "event_id": f"p{i}",
            "event_time": last + rng.randint(-5_000, 5_000),
            "amount": round(rng.uniform(1, 1000), 2),
            "card_id": f"c{rng.randrange(8)}",
            "shop": f"s{rng.randrange(4)}",
            "card_number": "4000000000009999",
        }
        roll = rng.random()
        if roll < 0.05:
            e["event_time"] = last - 2 * 3_600_000  # too late (max_lateness 1h)
        elif roll < 0.10:
            e["amount"] = "lots"  # wrong type
        elif roll < 0.15:
            e["event_time"] = "2026-01-05T00:05:00Z"  # ISO time: scored alone
        elif roll < 0.20:
            e["card_id"] = rng.randrange(8)  # an integer key
        elif roll < 0.23:
            e["card_id"] = 1.5  # a float key: scored alone
        elif roll < 0.26:
            del e["event_time"]
        elif roll < 0.29:
            e["event_time"] = last + 2 * 3_600_000  # far ahead: may not share a batch with others
        out.append(e)
    return out


def _outcome(result: Scored | Quarantine) -> Any:
    if isinstance(result, Quarantine):
        return ("quarantine", result.code)
    return result.body


@pytest.mark.parametrize("seed", range(6))
def test_batches_score_like_single_events(tmp_path: Path, seed: int) -> None:
    runner, evs = runner_with_state(tmp_path)
    rng = random.Random(seed)
    items = [_item(e) for e in _random_events(rng, 80, evs[-1]["event_time"])]
    alone = [_outcome(score(EmbeddedLive(runner), "event_id", [it])[0]) for it in items]
    groups = Planner(EmbeddedLive(runner)).plan(items)
    assert sum(len(g) for g in groups) == len(items)
    assert len(groups) < len(items)  # some batching happened
    together: dict[int, Any] = {}
    for group in groups:
        for it, result in zip(group, score(EmbeddedLive(runner), "event_id", group), strict=True):
            together[id(it)] = _outcome(result)
    assert [together[id(it)] for it in items] == alone
    assert any(isinstance(a, dict) and a["rules_fired"] for a in alone)
    assert any(isinstance(a, tuple) for a in alone)


def test_planner_separates_keys_times_and_ingest(tmp_path: Path) -> None:
    runner, evs = runner_with_state(tmp_path, n=100)
    last = evs[-1]["event_time"]
    a = _item({"event_time": last, "card_id": "c1", "shop": "s1"})
    b = _item({"event_time": last, "card_id": "c1", "shop": "s2"})  # same card as a
    c = _item({"event_time": last, "card_id": "c2", "shop": "s2"})  # same shop as b
    d = _item({"event_time": last, "card_id": "c3", "shop": "s3"})
    e = _item(
        {"event_time": last + 2 * 3_600_000, "card_id": "c4", "shop": "s4"}
    )  # beyond max_lateness
    f = _item({"event_time": last, "card_id": "c5", "shop": "s5"}, ingest=True)
    g = _item({"event_time": last, "card_id": "c1", "shop": "s1"})
    groups = Planner(EmbeddedLive(runner)).plan([a, b, c, d, e, f, g])
    assert groups == [[a, c, d], [b], [e], [f], [g]]


def test_worker_scores_and_ingests(tmp_path: Path) -> None:
    runner, evs = runner_with_state(tmp_path, n=100)
    worker = DecideWorker(EmbeddedLive(runner), "event_id")
    try:
        probe = {
            "event_id": "w1",
            "event_time": evs[-1]["event_time"],
            "amount": 950.0,
            "card_id": "c9",
            "shop": "s9",
        }
        futures = [
            worker.submit(_item(dict(probe, event_id=f"w{i}", card_id=f"k{i}"))) for i in range(20)
        ]
        results = [f.result(10) for f in futures]
        assert all(r.body["action"] == "block" and not r.cases for r in results)
        before = runner.stats.events
        ingested = worker.submit(_item(probe, ingest=True)).result(10)
        assert ingested.body["ingested"] is True and [c.rule for c in ingested.cases] == ["big"]
        assert runner.stats.events == before + 1
        with pytest.raises(Quarantine) as bad:
            worker.submit(_item({"event_id": "x", "event_time": T0, "amount": "no"})).result(10)
        assert bad.value.code == "wrong_type"
    finally:
        worker.stop()
