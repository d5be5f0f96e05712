"""Issue 12 over a real server: hostile events on /v1/decide, hostile rules on /v1/rules/validate."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from tests.integration.api._live import T0

FAR = 253402300799000  # 9999-12-31T23:59:59Z


def _post_raw(client: httpx.Client, body: bytes, *, ingest: bool = False) -> httpx.Response:
    return client.post(
        "/v1/decide",
        params={"ingest": "true"} if ingest else None,
        content=body,
        headers={"Content-Type": "application/json"},
    )


def _event(**more: object) -> dict[str, object]:
    return {"event_id": "h1", "event_time": T0 + 1000, "card_id": "c_h", "amount": 5.0, **more}


@pytest.mark.parametrize("when", [FAR, "9999-12-31T23:59:59Z", 1e15])
@pytest.mark.parametrize("ingest", [False, True])
def test_decide_refuses_far_future_events(client: httpx.Client, when: object, ingest: bool) -> None:
    r = _post_raw(client, orjson.dumps(_event(event_time=when)), ingest=ingest)
    assert r.status_code == 422 and r.json()["reason"] == "too_early"
    # The engine is not blinded: an ordinary event is still scored.
    ok = _post_raw(client, orjson.dumps(_event()))
    assert ok.status_code == 200


@pytest.mark.parametrize("levels", [70, 300, 1_100])
def test_decide_refuses_deep_events_with_422_not_500(client: httpx.Client, levels: int) -> None:
    body = orjson.dumps(_event())[:-1] + b',"x":' + b"[" * levels + b"]" * levels + b"}"
    r = _post_raw(client, body, ingest=True)
    assert r.status_code == 422 and r.json()["reason"] == "too_deep"


@pytest.mark.parametrize(
    "body",
    [
        b'{"event_id":"d","event_time":%d,"card_id":"c","amount":5,"amount":950}' % (T0 + 5),
        b'{"event_id":"d","event_time":%d,"note":1,"x":{"k":1,"k":2}}' % (T0 + 5),
    ],
)
def test_decide_refuses_repeated_keys(client: httpx.Client, body: bytes) -> None:
    r = _post_raw(client, body, ingest=True)
    assert r.status_code == 422 and r.json()["reason"] == "duplicate_key"


@pytest.mark.parametrize(
    ("when", "expect"),
    [
        ("-" * 10_000, "longer than 2000 characters"),
        ("-" * 1_999 + "1 > 0", "longer than 2000 characters"),
        ("(" * 900 + "1" + ")" * 900 + " > 0", "nested more than"),
        ("amount > " + "9" * 5000, "longer than 2000 characters"),
        ("amount > " + "9" * 100, "number longer than"),
        (" + ".join(["amount"] * 60) + " > 5", "nested more than 40 levels"),
    ],
)
def test_validate_refuses_hostile_rules_in_one_cheap_line(
    client: httpx.Client, when: str, expect: str
) -> None:
    t0 = time.perf_counter()
    out = client.post("/v1/rules/validate", json={"when": when}).json()
    elapsed = time.perf_counter() - t0
    assert out["valid"] is False and expect in out["error"]
    assert "\n" not in out["error"] and len(out["error"]) < 200
    assert "recursion" not in out["error"] and "4300" not in out["error"]
    assert elapsed < 1.0
