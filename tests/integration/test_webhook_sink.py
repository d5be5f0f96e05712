"""WebhookSink against a real, unreliable HTTP server on 127.0.0.1 (stdlib, threads)."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from riskstream.sinks.webhook import WebhookSink
from tests.unit.sinks._cases import make_case

SECRET = b"integration-secret"
TIMEOUT_S = 0.3  # the sink's timeout; "slow" answers take longer than this


@dataclass
class Receiver:
    """Case-management stand-in: fails ~30% with 503, answers ~7% too late, refuses a poison case."""

    poison_event: str = "poison"
    slow_s: float = 0.6
    gate: threading.Event | None = None  # when set, every request waits for it (a stalled server)
    lock: threading.Lock = field(default_factory=threading.Lock)
    held: dict[str, bytes] = field(default_factory=dict)
    attempts: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    bad_requests: list[str] = field(default_factory=list)
    duplicates: int = 0
    arrived: int = 0

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, float, bytes]:
        """(status, delay, response body) for one request; records what was accepted."""
        key = headers.get("idempotency-key", "")
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        with self.lock:
            self.attempts[key] += 1
            attempt = self.attempts[key]
            if not hmac.compare_digest(headers.get("x-riskstream-signature", ""), expected):
                self.bad_requests.append(f"{key}: bad signature")
            if headers.get("content-type") != "application/json":
                self.bad_requests.append(f"{key}: content type {headers.get('content-type')}")
        if orjson.loads(body)["event"].get("kind") == self.poison_event:
            return self._count(400, 0.0, b'{"error": "unknown merchant"}')
        # Deterministic per (case, attempt): the same run fails the same way every time.
        roll = int(hashlib.sha256(f"{key}:{attempt}".encode()).hexdigest()[:8], 16) / 2**32
        if roll < 0.30:
            return self._count(503, 0.0, b"busy")
        with self.lock:
            self.duplicates += key in self.held
            self.held[key] = body  # processed, whether or not the answer arrives in time
        delay = self.slow_s if roll > 0.93 else 0.0
        return self._count(200, delay, b"{}")

    def _count(self, status: int, delay: float, body: bytes) -> tuple[int, float, bytes]:
        with self.lock:
            self.statuses[status] += 1
        return status, delay, body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real case-management API would
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def do_POST(self) -> None:
        receiver: Receiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with receiver.lock:
            receiver.arrived += 1
        if receiver.gate is not None:
            receiver.gate.wait(20)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, delay, answer = receiver.answer(headers, body)
        time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:
            pass  # the client timed out and hung up

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test asserts on counters instead."""


@pytest.fixture
def server() -> Iterator[tuple[str, Receiver]]:
    """A threaded HTTP server on a free port of 127.0.0.1, and its receiver."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    receiver = Receiver()
    httpd.receiver = receiver  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/cases", receiver
    finally:
        if receiver.gate is not None:
            receiver.gate.set()
        httpd.shutdown()
        httpd.server_close()


def read_jsonl(path: Path) -> list[dict[str, object]]:
    """All records of a JSON-lines file."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.timeout(60)
def test_every_case_arrives_once_despite_failures_and_timeouts(
    server: tuple[str, Receiver], tmp_path: Path
) -> None:
    url, receiver = server
    cases = [make_case(seq, kind="poison" if seq == 137 else "payment") for seq in range(1, 301)]
    poison = cases[136].case_id
    sink = WebhookSink(
        url,
        SECRET,
        timeout_s=TIMEOUT_S,
        concurrency=8,
        queue_size=50,
        backoff_base_s=0.02,
        backoff_cap_s=0.2,
        dead_letter_path=tmp_path / "dead.jsonl",
        delivery_log_path=tmp_path / "deliveries.jsonl",
    )
    started = time.monotonic()
    for i in range(0, len(cases), 40):
        sink.deliver(cases[i : i + 40])
    assert sink.flush(timeout_s=25), f"not finished: {sink.stats()}"
    elapsed = time.monotonic() - started
    sink.close()

    assert elapsed < 30
    assert sink.delivered_seq() == 300
    # The receiver, deduplicating by Idempotency-Key, holds every case but the refused one.
    assert set(receiver.held) == {c.case_id for c in cases} - {poison}
    assert all(receiver.held[c.case_id] == c.body() for c in cases if c.case_id != poison)
    assert receiver.bad_requests == []
    assert receiver.statuses[503] > 0 and receiver.duplicates > 0  # failures really happened

    (dead,) = read_jsonl(tmp_path / "dead.jsonl")
    assert dead["case_id"] == poison and dead["status"] == 400
    assert dead["case"] == orjson.loads(cases[136].body())
    assert dead["response"] == '{"error": "unknown merchant"}'

    log = read_jsonl(tmp_path / "deliveries.jsonl")
    assert any(int(str(r["attempt"])) > 1 for r in log)
    assert any(r["status"] == 503 and r["outcome"] == "retry" for r in log)
    assert any("Timeout" in str(r["error"]) for r in log)
    final = {str(r["case_id"]): r["outcome"] for r in log if r["outcome"] != "retry"}
    assert len(final) == 300 and final[poison] == "dead_letter"
    assert len(log) == sum(receiver.attempts.values())  # one log line per attempt

    stats = sink.stats()
    assert (stats.delivered, stats.dead_lettered, stats.in_flight) == (299, 1, 0)
    assert stats.retried == sum(1 for r in log if r["outcome"] == "retry")


@pytest.mark.timeout(60)
def test_deliver_blocks_when_the_queue_is_full(
    server: tuple[str, Receiver], tmp_path: Path
) -> None:
    url, receiver = server
    receiver.gate = threading.Event()  # the server stalls until released
    receiver.poison_event = "none"
    receiver.slow_s = 0.0
    queue_size, concurrency = 5, 2
    sink = WebhookSink(
        url,
        SECRET,
        timeout_s=30.0,
        concurrency=concurrency,
        queue_size=queue_size,
        backoff_base_s=0.02,
        backoff_cap_s=0.2,
        dead_letter_path=tmp_path / "dead.jsonl",
    )
    cases = [make_case(seq) for seq in range(1, 41)]
    done = threading.Event()

    def produce() -> None:
        sink.deliver(cases)
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    time.sleep(0.8)
    assert not done.is_set(), "deliver() returned although the server accepted nothing"
    assert receiver.arrived == concurrency  # one request per worker, all stalled
    assert sink._queue.qsize() == queue_size
    assert sink.stats().in_flight <= queue_size + concurrency + 1  # +1: the one being put

    receiver.gate.set()
    assert done.wait(20)
    assert sink.flush(20)
    sink.close()
    assert sink.delivered_seq() == 40
    assert set(receiver.held) == {c.case_id for c in cases}
