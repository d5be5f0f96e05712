"""The case queue over HTTP: totals, filters, paging, one case, decisions that persist."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from riskstream.store.duckdb import Store
from tests.integration.api._live import ANALYST, T0, Live


def _all(client: httpx.Client, **params: object) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    offset = 0
    while True:
        page = client.get("/v1/cases", params={**params, "limit": 500, "offset": offset}).json()
        items += page["items"]
        offset += 500
        if offset >= page["total"]:
            return items


def test_every_expected_case_is_listed(client: httpx.Client, live: Live) -> None:
    items = _all(client)
    assert sorted((str(c["event_id"]), str(c["rule"])) for c in items) == sorted(live.cases)
    assert client.get("/v1/cases", params={"limit": 1}).json()["total"] == len(live.cases)


@pytest.mark.parametrize(
    ("field", "value"), [("rule", "big_amount"), ("rule", "card_velocity"), ("action", "review")]
)
def test_filters(client: httpx.Client, live: Live, field: str, value: str) -> None:
    want = Counter(r for _, r in live.cases)
    expected = want[value] if field == "rule" else want["card_velocity"]
    page = client.get("/v1/cases", params={field: value, "limit": 5}).json()
    assert page["total"] == expected > 0
    assert all(c[field] == value for c in page["items"])


def test_no_case_for_a_rule_that_never_fires(client: httpx.Client) -> None:
    assert client.get("/v1/cases", params={"rule": "negative"}).json() == {
        "total": 0,
        "limit": 50,
        "offset": 0,
        "items": [],
    }


def test_time_filter_is_half_open_on_event_time(client: httpx.Client, live: Live) -> None:
    frm, to = T0 + 1_800_000, T0 + 3_600_000
    times = {e["event_id"]: e["event_time"] for e in live.events}
    expected = sum(1 for eid, _ in live.cases if frm <= times[eid] < to)
    page = client.get(
        "/v1/cases", params={"from": frm, "to": "2026-01-05T01:00:00Z", "limit": 500}
    ).json()
    assert page["total"] == expected
    assert all(frm <= c["event_time"] < to for c in page["items"])


def test_paging_is_newest_first_without_overlap(client: httpx.Client) -> None:
    pages = [
        client.get("/v1/cases", params={"limit": 7, "offset": 7 * i}).json()["items"]
        for i in range(4)
    ]
    flat = [c for p in pages for c in p]
    assert len(flat) == 28 and len({c["case_id"] for c in flat}) == 28
    keys = [(c["event_time"], c["seq"]) for c in flat]
    assert keys == sorted(keys, reverse=True)


def test_bad_paging_and_times_are_refused(client: httpx.Client) -> None:
    assert client.get("/v1/cases", params={"limit": 0}).status_code == 422
    assert client.get("/v1/cases", params={"limit": 501}).status_code == 422
    r = client.get("/v1/cases", params={"from": "last tuesday"})
    assert r.status_code == 400 and "bad from time" in r.json()["error"]


def test_one_case_has_event_features_rule(client: httpx.Client, live: Live) -> None:
    summary = client.get("/v1/cases", params={"rule": "card_velocity", "limit": 1}).json()["items"][
        0
    ]
    case = client.get(f"/v1/cases/{summary['case_id']}").json()
    event = next(e for e in live.events if e["event_id"] == case["event_id"])
    assert case["event"] == event  # the all-scopes key sees every field
    assert case["features"]["card.count(1m)"] >= 4
    assert case["rule_spec"]["when"] == "card.count(1m) >= 4"
    assert case["status"] == "open" and case["decisions"] == []
    assert client.get("/v1/cases/nope").status_code == 404


def test_decisions_persist_and_set_status(client: httpx.Client, live: Live) -> None:
    items = client.get(
        "/v1/cases", params={"rule": "big_amount", "status": "open", "limit": 2}
    ).json()["items"]
    fraud, benign = items[0]["case_id"], items[1]["case_id"]
    headers = live.headers(ANALYST)
    r = client.post(
        f"/v1/cases/{fraud}/decision",
        json={"decision": "note", "note": "calling the cardholder", "analyst": "ana"},
        headers=headers,
    )
    assert r.status_code == 200 and r.json()["status"] == "open"  # a note keeps the status
    r = client.post(
        f"/v1/cases/{fraud}/decision",
        json={"decision": "confirmed_fraud", "analyst": "ana"},
        headers=headers,
    )
    assert r.status_code == 200
    out = r.json()
    assert out["status"] == "confirmed_fraud"
    assert [d["decision"] for d in out["decisions"]] == ["note", "confirmed_fraud"]
    assert out["decisions"][0]["note"] == "calling the cardholder"
    client.post(
        f"/v1/cases/{benign}/decision",
        json={"decision": "false_positive", "analyst": "bo"},
        headers=headers,
    )
    # A new Store (a fresh DuckDB connection) sees both.
    with live.runner.lock:
        store = Store(live.data_dir)
        status = dict(
            store.select(
                "SELECT case_id, status FROM cases WHERE case_id IN (?, ?)", [fraud, benign]
            )
        )
        decisions = store.select(
            "SELECT decision, analyst FROM decisions WHERE case_id = ? ORDER BY at_ms", [fraud]
        )
    assert status == {fraud: "confirmed_fraud", benign: "false_positive"}
    assert [d for d, _ in decisions] == ["note", "confirmed_fraud"]
    page = client.get(
        "/v1/cases", params={"status": "confirmed_fraud", "rule": "big_amount"}
    ).json()
    assert fraud in {c["case_id"] for c in page["items"]}


@pytest.mark.parametrize(
    "body",
    [
        {"decision": "maybe", "analyst": "ana"},
        {"decision": "note", "analyst": ""},
        {"decision": "note", "analyst": "   "},
        {"decision": "note"},
        {"decision": "note", "analyst": "ana", "note": "x" * 5000},
    ],
)
def test_bad_decisions_are_refused(client: httpx.Client, body: dict[str, object]) -> None:
    case_id = client.get("/v1/cases", params={"limit": 1}).json()["items"][0]["case_id"]
    r = client.post(f"/v1/cases/{case_id}/decision", json=body)
    assert r.status_code == 422 and r.json()["error"]


def test_decision_on_unknown_case_is_404(client: httpx.Client) -> None:
    r = client.post("/v1/cases/nope/decision", json={"decision": "note", "analyst": "ana"})
    assert r.status_code == 404 and r.json() == {"error": "no case 'nope'"}
