"""WebhookSink against an in-process httpx transport: headers, retries, dead letters, the mark."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from riskstream.errors import SinkError
from riskstream.sinks.webhook import (
    WebhookSink,
    _Progress,
    backoff_delay,
    parse_retry_after,
    signature,
    verdict_for,
)

from ._cases import make_cases

URL = "http://cases.test/api"
Handler = Callable[[httpx.Request], httpx.Response]


def make_sink(tmp_path: Path, handler: Handler, **kwargs: Any) -> WebhookSink:
    """A sink with fast backoff whose requests go to ``handler``."""
    secret = kwargs.pop("secret", b"s3cret")
    options: dict[str, Any] = {
        "dead_letter_path": tmp_path / "dead.jsonl",
        "delivery_log_path": tmp_path / "log.jsonl",
        "backoff_base_s": 0.001,
        "backoff_cap_s": 0.01,
        "transport": httpx.MockTransport(handler),
    }
    options.update(kwargs)
    return WebhookSink(URL, secret, **options)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a JSON-lines file."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_posts_body_with_idempotency_key_and_signature(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    sink = make_sink(tmp_path, handler)
    cases = make_cases(range(1, 4))
    sink.deliver(cases)
    assert sink.flush(5) is True
    sink.close()
    assert sink.delivered_seq() == 3
    assert sink.stats().delivered == 3 and sink.stats().in_flight == 0
    by_key = {r.headers["Idempotency-Key"]: r for r in seen}
    for case in cases:
        request = by_key[case.case_id]
        assert request.method == "POST" and request.content == case.body()
        assert request.headers["Content-Type"] == "application/json"
        expected = "sha256=" + hmac.new(b"s3cret", case.body(), "sha256").hexdigest()
        assert hmac.compare_digest(request.headers["X-Riskstream-Signature"], expected)
    assert not (tmp_path / "dead.jsonl").exists()


def test_no_signature_header_without_a_secret(tmp_path: Path) -> None:
    headers: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers)
        return httpx.Response(204)

    sink = make_sink(tmp_path, handler, secret=None)
    sink.deliver(make_cases([1]))
    sink.close()
    assert "X-Riskstream-Signature" not in headers[0]


def test_4xx_is_dead_lettered_and_counted_as_done(tmp_path: Path) -> None:
    poison = make_cases([2])[0].case_id

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Idempotency-Key"] == poison:
            return httpx.Response(422, text="amount missing")
        return httpx.Response(200)

    sink = make_sink(tmp_path, handler)
    sink.deliver(make_cases(range(1, 4)))
    assert sink.flush(5)
    sink.close()
    assert sink.delivered_seq() == 3
    stats = sink.stats()
    assert (stats.delivered, stats.dead_lettered, stats.retried) == (2, 1, 0)
    (dead,) = read_jsonl(tmp_path / "dead.jsonl")
    assert dead["status"] == 422 and dead["response"] == "amount missing"
    assert dead["case"]["case_id"] == poison and dead["seq"] == 2 and dead["time"].endswith("Z")


def test_429_and_5xx_are_retried_until_delivered(tmp_path: Path) -> None:
    calls: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["Idempotency-Key"]
        calls[key] = calls.get(key, 0) + 1
        if calls[key] == 1:
            return httpx.Response(429, headers={"Retry-After": "0"})
        if calls[key] == 2:
            return httpx.Response(502)
        return httpx.Response(200)

    sink = make_sink(tmp_path, handler)
    sink.deliver(make_cases(range(1, 3)))
    assert sink.flush(5)
    sink.close()
    assert sink.stats().retried == 4 and sink.stats().delivered == 2
    log = read_jsonl(tmp_path / "log.jsonl")
    assert sorted((r["seq"], r["attempt"], r["status"], r["outcome"]) for r in log) == [
        (1, 1, 429, "retry"),
        (1, 2, 502, "retry"),
        (1, 3, 200, "delivered"),
        (2, 1, 429, "retry"),
        (2, 2, 502, "retry"),
        (2, 3, 200, "delivered"),
    ]
    assert all(r["latency_ms"] >= 0 and r["error"] is None for r in log)


def test_connection_errors_are_retried_and_max_attempts_dead_letters(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sink = make_sink(tmp_path, handler, max_attempts=3)
    sink.deliver(make_cases([5]))
    assert sink.flush(5)
    sink.close()
    (dead,) = read_jsonl(tmp_path / "dead.jsonl")
    assert dead["attempts"] == 3 and dead["status"] is None
    assert dead["error"].startswith("ConnectError")
    assert [r["outcome"] for r in read_jsonl(tmp_path / "log.jsonl")] == [
        "retry",
        "retry",
        "dead_letter",
    ]


def test_close_gives_up_on_a_dead_server_without_moving_the_mark(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    sink = make_sink(tmp_path, handler, close_timeout_s=0.2, resume_seq=10)
    sink.deliver(make_cases([11, 12]))
    assert sink.flush(0.1) is False
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 3
    assert sink.delivered_seq() == 10
    with pytest.raises(SinkError, match="closed"):
        sink.deliver(make_cases([13]))


def test_resume_seq_skips_cases_handed_over_again(tmp_path: Path) -> None:
    sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(orjson.loads(request.content)["event_time"] - 1_700_000_000_000)
        return httpx.Response(200)

    sink = make_sink(tmp_path, handler, resume_seq=5)
    assert sink.delivered_seq() == 5
    sink.deliver(make_cases(range(3, 9)))
    sink.deliver(make_cases(range(7, 10)))
    sink.close()
    assert sorted(sent) == [6, 7, 8, 9]
    assert sink.delivered_seq() == 9


def test_mark_is_the_end_of_the_finished_prefix() -> None:
    progress = _Progress(0)
    for seq in (1, 2, 4, 9):
        assert progress.submit(seq)
    assert not progress.submit(4)
    progress.finish(4, "delivered")
    progress.finish(9, "dead_letter")
    assert progress.mark == 0 and progress.stats().in_flight == 4
    progress.finish(1, "delivered")
    assert progress.mark == 1
    assert progress.wait_idle(0.01) is False
    progress.finish(2, "delivered")
    assert progress.mark == 9 and progress.wait_idle(0) is True
    assert progress.stats().delivered == 3 and progress.stats().dead_lettered == 1


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (301, "dead_letter"),
        (400, "dead_letter"),
        (404, "dead_letter"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_verdicts(status: int, verdict: str) -> None:
    assert verdict_for(status) == verdict


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    assert backoff_delay(1, base_s=0.2, cap_s=30, rand=lambda: 1.0) == pytest.approx(0.2)
    assert backoff_delay(4, base_s=0.2, cap_s=30, rand=lambda: 1.0) == pytest.approx(1.6)
    assert backoff_delay(500, base_s=0.2, cap_s=30, rand=lambda: 1.0) == 30
    assert backoff_delay(3, base_s=0.2, cap_s=30, rand=lambda: 0.0) == 0
    assert backoff_delay(1, base_s=0.2, cap_s=30, retry_after_s=7, rand=lambda: 0.5) == 7
    assert backoff_delay(1, base_s=0.2, cap_s=30, retry_after_s=1e9, rand=lambda: 0.5) == 300


def test_parse_retry_after() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now) == 30
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now) == 0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None


def test_signature_matches_hmac_sha256() -> None:
    assert signature(b"k", b"{}") == "sha256=" + hmac.new(b"k", b"{}", "sha256").hexdigest()


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("ftp://x/y", {}, "http:// or https://"),
        ("not a url", {}, "http:// or https://"),
        (URL, {"concurrency": 0}, "concurrency must be positive"),
        (URL, {"timeout_s": 0}, "timeout must be positive"),
        (URL, {"max_attempts": 0}, "max_attempts"),
    ],
)
def test_bad_settings_are_sink_errors(
    tmp_path: Path, url: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(SinkError, match=message):
        WebhookSink(url, dead_letter_path=tmp_path / "d.jsonl", **kwargs)


def test_workers_are_stopped_by_close(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, lambda request: httpx.Response(200), concurrency=3)
    names = {t.name for t in threading.enumerate() if t.name.startswith("riskstream-webhook")}
    assert len(names) >= 3
    sink.close()
    assert not any(t.is_alive() for t in sink._workers)
