"""POST /v1/decide returns what a brute-force evaluation says, and changes nothing unless told."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.integration.api._live import (
    ADMIN,
    DECIDER,
    T0,
    Live,
    card_stats,
    count_1m,
    fired,
    start_live,
)

ORDER = {"block": 3, "review": 2, "tag": 1, "allow": 0}
SCORES = {"big_amount": 90.0, "card_velocity": 60.0, "negative": 5.0}
ACTIONS = {"big_amount": "block", "card_velocity": "review", "negative": "tag"}


def _probe(
    live: Live, card: str, amount: float, at: int, status: str = "succeeded"
) -> dict[str, Any]:
    return {
        "event_id": f"probe-{card}-{at}",
        "event_time": at,
        "amount": amount,
        "card_id": card,
        "card_number": "4000123412341234",
        "status": status,
        "merchant_id": "m1",
    }


def _expect(out: dict[str, Any], live: Live, probe: dict[str, Any]) -> None:
    rules = fired(live.events, -1, probe)
    assert {r["rule"] for r in out["rules_fired"]} == rules
    assert out["features"] == {"card.count(1m)": count_1m(live.events, -1, probe)}
    want_action = max((ACTIONS[r] for r in rules), key=ORDER.__getitem__, default="allow")
    assert out["action"] == want_action
    assert out["score"] == max((SCORES[r] for r in rules), default=0.0)
    assert out["event_id"] == probe["event_id"]
    assert out["ingested"] is False


def _burst_end(live: Live) -> int:
    return max(e["event_time"] for e in live.events if e["card_id"] == "c_burst")


@pytest.mark.parametrize(
    ("card", "amount", "status", "where"),
    [
        ("c_burst", 30.0, "succeeded", "burst"),  # velocity fires
        ("c_burst", 999.0, "declined", "burst"),  # both fire; block wins
        ("c1", 10.0, "succeeded", "end"),  # nothing fires
        ("c2", 975.5, "succeeded", "end"),
        ("c9", 500.0, "declined", "end"),
    ],
)
def test_decide_matches_brute_force(
    client: httpx.Client, live: Live, card: str, amount: float, status: str, where: str
) -> None:
    at = _burst_end(live) + 2000 if where == "burst" else live.events[-1]["event_time"] + 500
    probe = _probe(live, card, amount, at, status)
    r = client.post("/v1/decide", json=probe)
    assert r.status_code == 200, r.text
    _expect(r.json(), live, probe)


def test_every_recent_event_replayed_decides_like_the_stream(
    client: httpx.Client, live: Live
) -> None:
    """Re-deciding an ingested event sees it twice (state + itself); brute force does the same."""
    for e in live.events[-40:]:
        probe = dict(e, event_id=f"again-{e['event_id']}")
        out = client.post("/v1/decide", json=probe).json()
        _expect(out, live, probe)


def test_decide_changes_nothing(client: httpx.Client, live: Live) -> None:
    before = live.runner.stats.events, live.runner.pipeline.next_seq
    frm, to = T0, T0 + 3 * 3_600_000
    metric_before = client.get("/v1/metrics/card/c_burst", params={"from": frm, "to": to}).json()[
        "count"
    ]
    for _ in range(5):
        client.post("/v1/decide", json=_probe(live, "c_burst", 1.0, _burst_end(live)))
    assert (live.runner.stats.events, live.runner.pipeline.next_seq) == before
    assert (
        client.get("/v1/metrics/card/c_burst", params={"from": frm, "to": to}).json()["count"]
        == metric_before
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{nope", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'{"event_id": "x", "amount": 3}', "missing_time"),
        (b'{"event_id": "x", "event_time": "soon"}', "bad_time"),
        (b'{"event_id": "x", "event_time": 1767571300000, "amount": "a lot"}', "wrong_type"),
        (b'{"event_id": "x", "event_time": 1000}', "too_late"),
    ],
)
def test_malformed_event_is_422_with_reason(client: httpx.Client, body: bytes, reason: str) -> None:
    r = client.post("/v1/decide", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["reason"] == reason and r.json()["error"]


def test_a_busy_engine_hands_decisions_to_the_worker(live: Live) -> None:
    """While the engine's lock is held no decision is answered (the API cannot score on its
    event loop, the worker waits for the lock); then every answer is still brute force's."""
    at = live.events[-1]["event_time"] + 500
    probes = [_probe(live, f"c{i}", 150.0 * i + 25.0, at) for i in range(7)]
    bodies = [orjson.dumps(p) for p in probes] + [b'{"event_id": "x", "event_time": 1000}']
    answers: dict[int, httpx.Response] = {}

    def send(i: int) -> None:
        answers[i] = httpx.post(
            live.url + "/v1/decide",
            content=bodies[i],
            headers={**live.headers(DECIDER), "Content-Type": "application/json"},
            timeout=30,
        )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    with live.runner.lock:
        for t in threads:
            t.start()
        time.sleep(1.0)
        assert answers == {}
    for t in threads:
        t.join(30)
    for i, probe in enumerate(probes):
        assert answers[i].status_code == 200, answers[i].text
        _expect(answers[i].json(), live, probe)
    assert answers[len(probes)].status_code == 422
    assert answers[len(probes)].json()["reason"] == "too_late"


@pytest.mark.parametrize("query", ["ingest=false", "ingest=No", "ingest=0", "ingest=1&ingest=0"])
def test_ingest_false_spellings(client: httpx.Client, live: Live, query: str) -> None:
    """``ingest`` reads as FastAPI reads a bool (the last one counts); none of these ingest."""
    probe = _probe(live, "c3", 12.0, live.events[-1]["event_time"] + 500)
    r = client.post(f"/v1/decide?{query}", json=probe)
    assert r.status_code == 200, r.text
    assert r.json()["ingested"] is False


@pytest.mark.parametrize("query", ["ingest=maybe", "ingest=", "ingest=0&ingest=perhaps"])
def test_bad_ingest_is_422_after_the_key_check(live: Live, query: str) -> None:
    body = orjson.dumps(_probe(live, "c3", 12.0, live.events[-1]["event_time"] + 500))
    ctype = {"Content-Type": "application/json"}
    r = httpx.post(f"{live.url}/v1/decide?{query}", content=body, headers=ctype)
    assert (r.status_code, r.json()) == (401, {"error": "missing API key"})
    assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.post(
        f"{live.url}/v1/decide?{query}", content=body, headers={**ctype, **live.headers(DECIDER)}
    )
    assert r.status_code == 422
    assert r.json() == {
        "error": "query.ingest: Input should be a valid boolean, unable to interpret input"
    }


def test_decide_is_post_only_and_documented(client: httpx.Client) -> None:
    r = client.get("/v1/decide")
    assert (r.status_code, r.headers["allow"]) == (405, "POST")
    op = client.get("/openapi.json").json()["paths"]["/v1/decide"]["post"]
    assert [p["name"] for p in op["parameters"]] == ["ingest"]
    assert op["security"] == [{"bearer": []}, {"apiKey": []}]
    assert {"200", "401", "403", "413", "415", "422", "503"} <= set(op["responses"])


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[Live]:
    """A separate live system: ingesting changes engine state."""
    system = start_live(
        Path(tmp_path_factory.mktemp("api-ingest")), n=300, seed=11, server=http_server
    )
    yield system
    system.stop()


def test_ingest_raises_cases_and_counts_at_once(own: Live) -> None:
    at = own.events[-1]["event_time"] + 1000
    frm, to = T0, at + 1000
    with httpx.Client(base_url=own.url, timeout=30) as c:
        probe = _probe(own, "c_new", 990.0, at)
        r = c.post(
            "/v1/decide", params={"ingest": "true"}, json=probe, headers=own.headers(DECIDER)
        )
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["ingested"] is True and out["action"] == "block"
        assert [case["rule"] for case in out["cases"]] == ["big_amount"]
        assert out["cases"][0]["event"]["card_number"] == "************1234"  # no 'sensitive' scope
        # Counted immediately: from the engine's pending buckets or from the checkpoint.
        q = c.get(
            "/v1/metrics/card/c_new", params={"from": frm, "to": to}, headers=own.headers(ADMIN)
        ).json()
        assert q["count"] == 1 and q["sum"] == pytest.approx(990.0)
        assert own.runner.stats.events == len(own.events) + 1
        # A second event of the card sees the first in its features.
        second = _probe(own, "c_new", 5.0, at + 1000)
        out2 = c.post("/v1/decide", json=second, headers=own.headers(DECIDER)).json()
        assert out2["features"]["card.count(1m)"] == 2
        # The case reaches the store with the next checkpoint.
        deadline = time.monotonic() + 20
        found: list[Any] = []
        while time.monotonic() < deadline and not found:
            found = c.get(
                "/v1/cases", params={"rule": "big_amount"}, headers=own.headers(ADMIN)
            ).json()["items"]
            found = [x for x in found if x["event_id"] == probe["event_id"]]
            time.sleep(0.1)
        assert (
            found and found[0]["event"]["card_number"] == probe["card_number"]
        )  # admin sees it all
    assert (
        card_stats(own.events, "c_new", frm, to)["count"] == 0
    )  # the truth came only from the API
