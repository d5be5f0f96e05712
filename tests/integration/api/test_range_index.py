"""Range queries of a running engine answered from its in-memory index, over real HTTP.

A live engine follows its events file; the API answers ``/v1/metrics/...`` from the
index. Answers equal brute force over the events and ``query_range`` on the real store
plus the engine's pending buckets, before and after more events are appended (the index
follows the engine batch by batch).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import orjson
import pytest

from riskstream.query.index import RangeIndex
from riskstream.query.range import Pending, query_range
from riskstream.store.duckdb import Store
from tests.integration.api._live import ADMIN, T0, Live, card_stats, start_live


def _index(live: Live) -> RangeIndex:
    index = live.runner.pipeline.listener
    assert isinstance(index, RangeIndex)
    return index


def _store_answer(live: Live, key: str, frm: int, to: int) -> dict[str, object]:
    """``query_range`` on the store plus pending buckets, with the engine held still."""
    with live.runner.lock:
        live.runner.writer.wait(reraise=False)
        parts, sketches, dists = live.runner.pipeline.pending.frames()
        pending = Pending(parts, sketches, dists, dict(live.runner.pipeline.pending.rolled))
        store = Store(live.data_dir)
        return query_range(live.runner.spec, store, "card", key, frm, to, pending=pending)


def _check(client: httpx.Client, live: Live, rng: random.Random, hi: int) -> None:
    for _ in range(40):
        key = rng.choice(["c0", "c3", "c7", "c11", "c_burst", "nobody"])
        frm = T0 - 3_600_000 + rng.randrange(hi - T0 + 3_600_000)
        to = frm + 1 + rng.randrange(hi + 60_000 - frm)
        got = client.get(f"/v1/metrics/card/{key}", params={"from": frm, "to": to}).json()
        eff = got["effective"]
        truth = card_stats(live.events, key, eff["from"], eff["to"])
        assert got["count"] == truth["count"]
        for stat in ("sum", "avg", "min", "max"):
            if truth[stat] is None:
                assert got[stat] is None
            else:
                assert got[stat] == pytest.approx(truth[stat], rel=1e-9, abs=1e-9)
        want = _store_answer(live, key, frm, to)
        assert _same(got, want)


def _same(got: dict[str, object], want: dict[str, object]) -> bool:
    """Equal answers, floats to rounding (the merge order differs)."""
    assert got.keys() == want.keys()
    for name, value in want.items():
        if isinstance(value, float):
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
        elif name != "stats":
            assert got[name] == value, name
    return True


def test_index_answers_as_store_and_brute_force_while_events_arrive(
    tmp_path: Path, http_server: str
) -> None:
    live = start_live(tmp_path / "live", n=1200, seed=11, server=http_server)
    try:
        rng = random.Random(5)
        with httpx.Client(base_url=live.url, headers=live.headers(ADMIN), timeout=30) as client:
            last = max(int(e["event_time"]) for e in live.events)
            _check(client, live, rng, last)
            assert _index(live).loaded
            # More events, some late: the engine applies them and the index follows.
            more = []
            for i in range(300):
                t = last + 1000 * (i + 1) - (rng.randrange(600_000) if i % 10 == 0 else 0)
                more.append(
                    {
                        "event_id": f"more{i}",
                        "event_time": t,
                        "amount": round(rng.uniform(1, 1000), 2),
                        "card_id": f"c{rng.randrange(12)}",
                        "card_number": "4000000000000000",
                        "status": "succeeded",
                        "merchant_id": "m1",
                    }
                )
            with (live.root / "events.jsonl").open("ab") as f:
                f.write(b"".join(orjson.dumps(e) + b"\n" for e in more))
            live.events.extend(more)
            deadline = time.monotonic() + 60
            while live.runner.stats.events < len(live.events) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert live.runner.stats.events == len(live.events)
            _check(client, live, rng, last + 300_000)
            assert _index(live).loaded and _index(live).runs("card") >= 1
    finally:
        live.stop()
