"""API keys, scopes and masking over a real server."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.api._live import ADMIN, ANALYST, DECIDER, READER, T0, Live

READ_PATHS = [
    "/v1/cases",
    "/v1/rules",
    "/v1/pipeline",
    "/metrics",
    "/openapi.json",
    f"/v1/metrics/card/c1?from={T0}&to={T0 + 1000}",
]


@pytest.mark.parametrize("path", READ_PATHS)
def test_no_key_is_401(live: Live, path: str) -> None:
    r = httpx.get(live.url + path)
    assert r.status_code == 401
    assert r.json() == {"error": "missing API key"}
    assert r.headers["www-authenticate"] == "Bearer"


def test_unknown_key_is_401(live: Live) -> None:
    r = httpx.get(live.url + "/v1/cases", headers={"Authorization": "Bearer reader-key-0002"})
    assert r.status_code == 401 and r.json() == {"error": "unknown API key"}
    r = httpx.get(live.url + "/v1/cases", headers={"Authorization": "Basic cmVhZGVyOng="})
    assert r.status_code == 401


def test_both_headers_work(live: Live) -> None:
    assert httpx.get(live.url + "/v1/rules", headers={"X-API-Key": READER}).status_code == 200
    assert (
        httpx.get(live.url + "/v1/rules", headers={"Authorization": f"Bearer {READER}"}).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("key", "method", "path", "scope"),
    [
        (READER, "POST", "/v1/decide", "decide"),
        (DECIDER, "GET", "/v1/cases", "read"),
        (DECIDER, "GET", "/metrics", "read"),
        (READER, "POST", "/v1/cases/x/decision", "analyst"),
    ],
)
def test_wrong_scope_is_403(live: Live, key: str, method: str, path: str, scope: str) -> None:
    r = httpx.request(
        method,
        live.url + path,
        headers={"X-API-Key": key},
        json={"decision": "note", "analyst": "a"},
    )
    assert r.status_code == 403
    assert r.json() == {"error": f"this API key lacks the {scope!r} scope"}


def test_public_endpoints(live: Live) -> None:
    assert httpx.get(live.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(live.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["runner"] == "running"
    ui = httpx.get(live.url + "/")
    assert ui.status_code == 200 and "<title>" in ui.text
    assert "default-src 'self'" in ui.headers["content-security-policy"]
    assert httpx.get(live.url + "/static/app.js").status_code == 200


def _velocity_case(live: Live, key: str) -> dict[str, object]:
    page = httpx.get(
        live.url + "/v1/cases",
        params={"rule": "card_velocity", "limit": 1},
        headers={"X-API-Key": key},
    )
    return dict(page.json()["items"][0])


def test_sensitive_fields_are_masked_without_scope(live: Live) -> None:
    for key in (READER, ANALYST):
        case = _velocity_case(live, key)
        event = case["event"]
        assert isinstance(event, dict)
        source = next(e for e in live.events if e["event_id"] == case["event_id"])
        real = source["card_number"]
        assert event["card_number"] == "*" * 12 + real[-4:]
        assert event["card_id"] == source["card_id"]  # not sensitive: as is
        detail = httpx.get(
            f"{live.url}/v1/cases/{case['case_id']}", headers={"X-API-Key": key}
        ).json()
        assert detail["event"]["card_number"] == "*" * 12 + real[-4:]
    unmasked = _velocity_case(live, ADMIN)["event"]
    assert isinstance(unmasked, dict) and not str(unmasked["card_number"]).startswith("*")
