"""Metric queries over HTTP equal a brute-force computation over the events written."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.api._live import T0, Live, card_stats


def _check(answer: dict[str, object], truth: dict[str, object]) -> None:
    assert answer["count"] == truth["count"]
    for stat in ("sum", "avg", "min", "max"):
        if truth[stat] is None:
            assert answer[stat] is None
        else:
            assert answer[stat] == pytest.approx(truth[stat], rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("card", ["c0", "c3", "c7", "c_burst"])
def test_whole_hours_equal_brute_force(client: httpx.Client, live: Live, card: str) -> None:
    frm, to = T0, T0 + 3 * 3_600_000
    answer = client.get(f"/v1/metrics/card/{card}", params={"from": frm, "to": to}).json()
    assert answer["metric"] == "card" and answer["key"] == card
    assert answer["exact"] is True
    _check(answer, card_stats(live.events, card, frm, to))


@pytest.mark.parametrize("offsets", [(12_345, 4_000_321), (3_000_500, 6_100_999), (0, 61_000)])
def test_unaligned_range_matches_effective_range(
    client: httpx.Client, live: Live, offsets: tuple[int, int]
) -> None:
    frm, to = T0 + offsets[0], T0 + offsets[1]
    answer = client.get("/v1/metrics/card/c5", params={"from": frm, "to": to}).json()
    eff = answer["effective"]
    assert eff["from"] <= frm and eff["to"] >= to
    _check(answer, card_stats(live.events, "c5", eff["from"], eff["to"]))


def test_iso_times_are_accepted(client: httpx.Client, live: Live) -> None:
    answer = client.get(
        "/v1/metrics/card/c1", params={"from": "2026-01-05T00:00:00Z", "to": "2026-01-05T03:00:00Z"}
    ).json()
    assert answer["requested"]["from"] == T0
    _check(answer, card_stats(live.events, "c1", T0, T0 + 3 * 3_600_000))


def test_count_only_metric(client: httpx.Client, live: Live) -> None:
    answer = client.get(
        "/v1/metrics/merchant/m2", params={"from": T0, "to": T0 + 3 * 3_600_000}
    ).json()
    assert answer["count"] == sum(1 for e in live.events if e["merchant_id"] == "m2")


def test_errors_are_one_line(client: httpx.Client) -> None:
    r = client.get("/v1/metrics/nope/c1", params={"from": T0, "to": T0 + 1000})
    assert r.status_code == 404 and "unknown metric 'nope'" in r.json()["error"]
    r = client.get("/v1/metrics/card/c1", params={"from": "yesterday", "to": T0})
    assert r.status_code == 400 and "bad time" in r.json()["error"]
    r = client.get("/v1/metrics/card/c1", params={"from": T0 + 1000, "to": T0})
    assert r.status_code == 400 and "empty range" in r.json()["error"]
    r = client.get("/v1/metrics/card/c1", params={"from": T0})
    assert r.status_code == 422 and "to" in r.json()["error"]


def test_series_per_minute_equals_brute_force(client: httpx.Client, live: Live) -> None:
    frm, to = T0 + 30 * 60_000, T0 + 90 * 60_000
    out = client.get(
        "/v1/metrics/card/c2/series", params={"from": frm, "to": to, "step": "1m"}
    ).json()
    assert out["step_ms"] == 60_000 and out["tier"] == "minute"
    assert len(out["buckets"]) == 60
    for b in out["buckets"]:
        truth = card_stats(live.events, "c2", b["start"], b["start"] + 60_000)
        assert b["count"] == truth["count"], b
        assert b["sum"] == pytest.approx(truth["sum"])


def test_series_default_step_and_hours(client: httpx.Client, live: Live) -> None:
    out = client.get(
        "/v1/metrics/card/c4/series", params={"from": T0, "to": T0 + 3 * 3_600_000}
    ).json()
    assert len(out["buckets"]) <= 200
    assert (
        sum(b["count"] for b in out["buckets"])
        == card_stats(live.events, "c4", T0, T0 + 3 * 3_600_000)["count"]
    )
    hours = client.get(
        "/v1/metrics/card/c4/series", params={"from": T0, "to": T0 + 3 * 3_600_000, "step": "1h"}
    ).json()
    assert hours["tier"] == "hour" and [b["count"] for b in hours["buckets"]] == [
        card_stats(live.events, "c4", T0 + h * 3_600_000, T0 + (h + 1) * 3_600_000)["count"]
        for h in range(3)
    ]


def test_series_errors(client: httpx.Client) -> None:
    r = client.get(
        "/v1/metrics/card/c4/series", params={"from": T0, "to": T0 + 10**9, "step": "1s"}
    )
    assert r.status_code == 400 and "at most" in r.json()["error"]
    r = client.get(
        "/v1/metrics/card/c4/series", params={"from": T0, "to": T0 + 1000, "step": "fortnight"}
    )
    assert r.status_code == 400 and r.json()["error"].startswith("step")
