"""The app over a runner that is not running: pending engine data counts, store-only mode, server helpers."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from riskstream.api import ApiContext, KeyRing
from riskstream.api.server import (
    DEFAULT_HTTP_SERVER,
    http_server,
    is_loopback,
    serve_context,
    start_background,
)
from riskstream.api.timeseries import choose_tier
from riskstream.core.tiers import TIER_MS
from riskstream.errors import StoreError, UsageError
from riskstream.spec.load import parse_spec
from riskstream.store.duckdb import Store
from tests.unit.api._engine import SPEC, T0, context, runner_with_state, served


def test_metrics_count_pending_buckets(tmp_path: Path) -> None:
    runner, evs = runner_with_state(tmp_path)
    with served(context(tmp_path, runner)) as client:
        out = client.get("/v1/metrics/card/c1", params={"from": T0, "to": T0 + 3_600_000}).json()
        amounts = [e["amount"] for e in evs if e["card_id"] == "c1"]
        assert out["count"] == len(amounts) > 0  # nothing was checkpointed: all of it is pending
        assert out["sum"] == pytest.approx(sum(amounts)) and out["max"] == max(amounts)
        series = client.get(
            "/v1/metrics/card/c1/series", params={"from": T0, "to": T0 + 600_000, "step": "1m"}
        ).json()
        assert [b["count"] for b in series["buckets"]] == [
            sum(
                1
                for e in evs
                if e["card_id"] == "c1"
                and T0 + m * 60_000 <= e["event_time"] < T0 + (m + 1) * 60_000
            )
            for m in range(10)
        ]


def test_rule_hits_include_pending(tmp_path: Path) -> None:
    runner, _ = runner_with_state(tmp_path)
    with served(context(tmp_path, runner)) as client:
        hits = {r["name"]: r["hits"] for r in client.get("/v1/rules").json()["rules"]}
    assert hits == {
        name: runner.stats.cases_by_rule[name] for name in ("big", "busy_card", "busy_shop")
    }
    assert sum(hits.values()) > 0


def test_prometheus_lag_and_quarantine(tmp_path: Path) -> None:
    runner, _ = runner_with_state(tmp_path, n=100)
    runner.stats.lag = {"payments/0": 12, "payments/1": 0}
    runner.stats.quarantined = Counter({"too_late": 2})
    with served(context(tmp_path, runner, keys="k=read")) as client:
        assert client.get("/metrics").status_code == 401
        text = client.get("/metrics", headers={"X-API-Key": "k"}).text
    assert 'riskstream_source_lag{partition="payments/0"} 12.0' in text
    assert 'riskstream_source_lag{partition="payments/1"} 0.0' in text
    assert 'riskstream_quarantined_total{reason="too_late"} 2.0' in text
    assert "riskstream_events_total 100.0" in text


def test_starting_runner_is_not_ready(tmp_path: Path) -> None:
    runner, _ = runner_with_state(tmp_path, n=10)
    runner.running = False  # as before recovery
    with served(context(tmp_path, runner)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["runner"] == "starting"
        assert client.post("/v1/decide", json={"event_time": T0}).status_code == 503
        assert client.get("/v1/cases").status_code == 503


def test_store_only_mode(tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    with pytest.raises(StoreError, match="no store"):
        start_background(spec, tmp_path / "empty", None, port=0, log=lambda m: None)
    Store(tmp_path / "data")
    ctx = ApiContext(spec=spec, data_dir=tmp_path / "data", store=Store(tmp_path / "data"))
    with served(ctx) as client:
        assert client.get("/readyz").json() == {"status": "ready", "runner": "none", "detail": None}
        r = client.post("/v1/decide", json={"event_time": T0})
        assert r.status_code == 503 and "read-only" in r.json()["error"]
        assert client.get("/v1/cases").json()["total"] == 0
        assert (
            client.get("/v1/metrics/card/c1", params={"from": T0, "to": T0 + 1000}).json()["count"]
            == 0
        )
        assert client.get("/v1/nope").json() == {"error": "Not Found"}


def test_choose_tier_prefers_longest_retention_then_coarsest() -> None:
    spec = parse_spec(SPEC)
    avail = {"second": 100, "minute": 50, "hour": 0, "day": 0, "week": 0}
    assert choose_tier(spec, TIER_MS["minute"], avail) == "minute"
    assert choose_tier(spec, 2 * TIER_MS["hour"], avail) == "hour"
    assert choose_tier(spec, TIER_MS["week"], avail) == "week"
    assert choose_tier(spec, 30_000, avail) == "second"


def test_http_server_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKSTREAM_HTTP_SERVER", " Granian ")
    assert http_server() == "granian"
    assert http_server("uvicorn") == "uvicorn"  # an explicit choice wins over the environment
    monkeypatch.delenv("RISKSTREAM_HTTP_SERVER")
    assert http_server() == DEFAULT_HTTP_SERVER
    with pytest.raises(
        UsageError, match=r"^RISKSTREAM_HTTP_SERVER: 'hypercorn' is not uvicorn or granian$"
    ):
        http_server("hypercorn")


def test_open_api_only_on_loopback(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    spec = parse_spec(SPEC)
    ctx = ApiContext(spec=spec, data_dir=tmp_path, store=Store(tmp_path))
    with pytest.raises(UsageError, match="without API keys"):
        serve_context(ctx, host="0.0.0.0", port=0)


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_wait_returns_on_sigterm(tmp_path: Path, server: str) -> None:
    spec = parse_spec(SPEC)
    Store(tmp_path)
    logs: list[str] = []
    handle = start_background(
        spec, tmp_path, None, port=0, log=logs.append, keys=KeyRing.parse("k=read"), server=server
    )
    assert httpx.get(handle.url + "/healthz").status_code == 200
    assert logs == [f"API and web UI on {handle.url}/ ({server})"]
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    t0 = time.monotonic()
    handle.wait()
    assert time.monotonic() - t0 < 5
    assert signal.getsignal(signal.SIGTERM) == before
    with pytest.raises(httpx.TransportError):
        httpx.get(handle.url + "/healthz", timeout=1)


def test_open_api_refuses_foreign_host_names(tmp_path: Path) -> None:
    runner, _ = runner_with_state(tmp_path, n=50)
    with served(context(tmp_path, runner)) as client:  # no keys: open, loopback only
        assert client.get("/v1/rules").status_code == 200
        assert client.get("/v1/rules", headers={"Host": "localhost:8080"}).status_code == 200
        r = client.get("/v1/rules", headers={"Host": "attacker.example"})
        assert r.status_code == 403 and "Host" in r.json()["error"]


def test_decide_needs_a_json_content_type(tmp_path: Path) -> None:
    runner, evs = runner_with_state(tmp_path, n=50)
    body = orjson.dumps(dict(evs[-1], event_id="ct"))
    with served(context(tmp_path, runner)) as client:
        plain = client.post("/v1/decide", content=body, headers={"Content-Type": "text/plain"})
        assert plain.status_code == 415
        ok = client.post(
            "/v1/decide", content=body, headers={"Content-Type": "application/json; charset=utf-8"}
        )
        assert ok.status_code == 200 and ok.json()["event_id"] == "ct"
