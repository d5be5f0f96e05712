"""The engine's cases reach a flaky real HTTP server exactly as the case set, signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from tests.conftest import run_cli
from tests.independent_events import write_events

SECRET = b"s3cret-for-tests"


class _Flaky(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes, str]]] = []
    lock = threading.Lock()
    rnd = random.Random(4)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            roll = self.rnd.random()
        if roll < 0.3:
            self.send_response(503)
            self.end_headers()
            return
        if roll < 0.4:
            time.sleep(0.6)  # past the client's timeout; the client retries
        with self.lock:
            self.received.append(
                (self.headers["Idempotency-Key"], body, self.headers["X-Riskstream-Signature"])
            )
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_every_case_delivered_once_by_key_and_signed(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        write_events(tmp_path / "events.jsonl", 8_000, seed=21, hours=1.0, cards=150)
        spec = tmp_path / "spec.yaml"
        spec.write_text(
            f"""
name: hooks
event: {{time: ts, id: event_id}}
metrics:
  card: {{dimension: [card], value: amount, stats: [count, sum]}}
rules:
  burst: {{when: card.count(60s) >= 3 and amount > 100, action: review, score: 70}}
sinks:
  - {{kind: file, path: {tmp_path / "cases.jsonl"}}}
  - {{kind: webhook, url: "http://127.0.0.1:{server.server_port}/cases", secret_env: HOOK_SECRET, timeout: 0.3, concurrency: 4}}
"""
        )
        os.environ["HOOK_SECRET"] = SECRET.decode()
        run_cli(
            "run",
            "-c",
            str(spec),
            "--source",
            f"file:{tmp_path / 'events.jsonl'}",
            "--data-dir",
            str(tmp_path / "data"),
            "--until-end",
            "-q",
        )
    finally:
        server.shutdown()
    cases = {
        json.loads(x)["case_id"]: x.encode()
        for x in (tmp_path / "cases.jsonl").read_text().splitlines()
    }
    assert len(cases) > 50
    by_key: dict[str, bytes] = {}
    for key, body, sig in _Flaky.received:
        assert sig == "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        assert json.loads(body)["case_id"] == key
        by_key[key] = body
    assert set(by_key) == set(cases)
    assert all(json.loads(by_key[k]) == json.loads(cases[k]) for k in cases)
    log = [
        json.loads(x)
        for x in (tmp_path / "data" / "webhook-deliveries.jsonl").read_text().splitlines()
    ]
    assert any(r["attempt"] > 1 for r in log)
