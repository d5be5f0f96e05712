"""/metrics (Prometheus), /v1/rules, /v1/rules/validate and /v1/pipeline over a real server."""

from __future__ import annotations

import time
from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.api._live import Live


def _samples(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_prometheus_series_have_the_right_counts(client: httpx.Client, live: Live) -> None:
    m = _samples(client)
    assert m[("riskstream_events_total", ())] == len(live.events)
    assert m[("riskstream_runner_up", ())] == 1
    quarantined = {
        dict(k)["reason"]: v for (n, k), v in m.items() if n == "riskstream_quarantined_total"
    }
    assert quarantined == {"not_json": 1, "not_object": 1, "wrong_type": 1}
    cases = {
        tuple(sorted(dict(k).items())): v
        for (n, k), v in m.items()
        if n == "riskstream_cases_total"
    }
    want = Counter(rule for _, rule in live.cases)
    assert cases == {
        (("action", "block"), ("rule", "big_amount")): want["big_amount"],
        (("action", "review"), ("rule", "card_velocity")): want["card_velocity"],
    }
    assert m[("riskstream_batch_seconds_count", ())] >= 1
    assert m[("riskstream_checkpoint_seconds_count", ())] >= 1
    assert m[("riskstream_checkpoints_total", ())] >= 1
    assert m[("riskstream_watermark_ms", ())] == max(e["event_time"] for e in live.events)


def test_sink_delivery_states(client: httpx.Client, live: Live) -> None:
    deadline = time.monotonic() + 20
    while True:
        m = _samples(client)
        states = {
            dict(k)["state"]: v
            for (n, k), v in m.items()
            if n == "riskstream_sink_deliveries_total"
        }
        if states.get("delivered") == len(live.cases) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert states == {"delivered": len(live.cases), "retried": 0, "dead_lettered": 0}
    in_flight = [v for (n, _), v in m.items() if n == "riskstream_sink_in_flight"]
    assert in_flight == [0]


def test_decide_is_counted(client: httpx.Client, live: Live) -> None:
    before = _samples(client).get(("riskstream_decide_seconds_count", ()), 0)
    event = dict(live.events[-1], event_id="metrics-probe", amount=999.0)
    assert client.post("/v1/decide", json=event).json()["action"] == "block"
    after = _samples(client)
    assert after[("riskstream_decide_seconds_count", ())] == before + 1
    assert after[("riskstream_decide_total", (("action", "block"),))] >= 1


def test_rules_with_hit_counts(client: httpx.Client, live: Live) -> None:
    rules = {r["name"]: r for r in client.get("/v1/rules").json()["rules"]}
    want = Counter(rule for _, rule in live.cases)
    assert set(rules) == {"big_amount", "card_velocity", "negative"}
    for name, rule in rules.items():
        assert rule["hits"] == want[name]
        assert rule["hits_this_run"] == want[name]
    assert rules["big_amount"] | {"hits": 0, "hits_this_run": 0} == {
        "name": "big_amount",
        "when": "amount > 950",
        "action": "block",
        "score": 90.0,
        "enabled": True,
        "description": "a single very large payment",
        "hits": 0,
        "hits_this_run": 0,
    }


def test_validate_rule(client: httpx.Client) -> None:
    ok = client.post(
        "/v1/rules/validate", json={"when": "card.avg(5m) > 100 and amount > 10"}
    ).json()
    assert ok == {
        "valid": True,
        "error": None,
        "features": ["card.avg(5m)"],
        "fields": ["amount"],
        "lists": [],
    }
    bad = client.post("/v1/rules/validate", json={"when": "crd.count(1m) > 3"}).json()
    assert bad["valid"] is False and bad["error"].startswith("col 1: unknown metric 'crd'")
    syntax = client.post("/v1/rules/validate", json={"when": "amount >"}).json()
    assert syntax["valid"] is False and syntax["error"].startswith("col ")
    window = client.post("/v1/rules/validate", json={"when": "card.count(3000d) > 1"}).json()
    assert window["valid"] is False and "card.count(3000d)" in window["error"]


def test_pipeline_info(client: httpx.Client, live: Live) -> None:
    info = client.get("/v1/pipeline").json()
    assert info["name"] == "apitest"
    assert info["rules"] == ["big_amount", "card_velocity", "negative"]
    assert info["metrics"]["card"] == {
        "dimension": ["card_id"],
        "value": "amount",
        "stats": ["count", "sum", "avg", "min", "max"],
    }
    assert info["sensitive"] == ["card_number"] and info["runner"] == "running"
    assert info["time_field"] == "event_time"
    assert info["watermark"] == max(e["event_time"] for e in live.events)
