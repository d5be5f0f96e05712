"""Issue 12.7 and 12.11 over real ``riskstream`` processes, a real webhook receiver and HTTP.

* 7: credentials in a webhook URL (``user:pass@``, query tokens) appear neither in
  ``/metrics`` nor in the logs, the delivery/dead-letter logs or the store;
* 11: ``serve`` / ``run --serve``: one SIGTERM (or Ctrl-C) drains, checkpoints and exits 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from riskstream.store.duckdb import Store
from tests.independent_events import write_events

USER, PASSWORD, TOKEN = "alice", "pw-Zq81xK2", "tok-7HfQ2mW9"
N_EVENTS = 4000

SPEC = """
name: serve
event: {{time: ts, id: event_id, max_lateness: 1h}}
metrics:
  card: {{dimension: [card], value: amount, stats: [count, sum]}}
rules:
  big: {{when: amount > 60, action: review, score: 50}}
sinks:
  - {{kind: file, path: {cases}}}
{webhook}
checkpoint: {{every: 200ms}}
"""


class _Hook(BaseHTTPRequestHandler):
    """Accepts cases; refuses every 7th with 400 (dead letter) and every 5th first try with 503."""

    seen: ClassVar[dict[str, int]] = {}
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        key = self.headers["Idempotency-Key"]
        with self.lock:
            n = self.seen[key] = self.seen.get(key, 0) + 1
            code = 400 if len(self.seen) % 7 == 0 and n == 1 else 200
            if code == 200 and len(self.seen) % 5 == 0 and n == 1:
                code = 503
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"refused" if code == 400 else b"")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[int]:
    """A real HTTP server receiving the webhook; yields its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setup(tmp: Path, webhook: str = "") -> Path:
    write_events(tmp / "events.jsonl", N_EVENTS, seed=9, hours=1.0, cards=100)
    spec = tmp / "spec.yaml"
    spec.write_text(SPEC.format(cases=tmp / "cases.jsonl", webhook=webhook))
    return spec


def _start(
    tmp: Path, spec: Path, *args: str, server: str | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp / "engine.log"
    cmd = [sys.executable, "-m", "riskstream.cli", *args, "-c", str(spec)]
    cmd += ["--data-dir", str(tmp / "data"), "--source", f"file:{tmp / 'events.jsonl'}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKSTREAM_API_KEYS")}
    if server is not None:
        env["RISKSTREAM_HTTP_SERVER"] = server
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=err, env=env)
    return proc, log


def _until_caught_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the API answers and the engine has counted every event."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            text = httpx.get(url + "/metrics", timeout=5).text
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        for line in text.splitlines():
            if line.startswith("riskstream_events_total ") and float(line.split()[1]) >= N_EVENTS:
                return
        time.sleep(0.2)
    raise AssertionError(f"not caught up: {log.read_text()[-3000:]}")


def _stored_events(data: Path) -> int:
    rows = Store(data, read_only=True).select(
        "SELECT sum(count) FROM buckets WHERE metric = 'card' AND tier = 'hour'"
    )
    return int(rows[0][0] or 0)


# -- 11: one signal ends serve / run --serve --------------------------------------------------


@pytest.mark.parametrize(
    ("command", "sig"),
    [
        (("serve",), signal.SIGTERM),
        (("serve",), signal.SIGINT),
        (("run", "--serve"), signal.SIGTERM),
        (("run", "--serve", "--until-end"), signal.SIGTERM),
    ],
)
@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_one_signal_drains_checkpoints_and_exits_0(
    tmp_path: Path, command: tuple[str, ...], sig: signal.Signals, server: str
) -> None:
    spec = _setup(tmp_path)
    port = _free_port()
    proc, log = _start(tmp_path, spec, *command, "--port", str(port), server=server)
    try:
        _until_caught_up(f"http://127.0.0.1:{port}", proc, log)
        if "--until-end" in command:  # the source ended: the API keeps serving until a signal
            time.sleep(1.0)
            assert proc.poll() is None, log.read_text()[-2000:]
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        proc.send_signal(sig)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, (rc, log.read_text()[-3000:])
    assert "Traceback" not in log.read_text()
    assert f"API and web UI on http://127.0.0.1:{port}/ ({server})" in log.read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert _stored_events(tmp_path / "data") == N_EVENTS  # drained and checkpointed


# -- 7: no credentials from a webhook URL anywhere ----------------------------------------------


def test_webhook_credentials_are_never_shown(tmp_path: Path, hook: int) -> None:
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:{hook}/cases?token={TOKEN}&tenant=t1"
    redacted = f"webhook:http://***@127.0.0.1:{hook}/cases?token=***&tenant=***"
    webhook = f'  - {{kind: webhook, url: "{url}", timeout: 2, max_attempts: 3}}'
    spec = _setup(tmp_path, webhook)
    port = _free_port()
    proc, log = _start(tmp_path, spec, "run", "--serve", "--until-end", "--port", str(port))
    try:
        _until_caught_up(f"http://127.0.0.1:{port}", proc, log)
        deadline = time.monotonic() + 60
        metrics = ""
        while time.monotonic() < deadline:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            if f'riskstream_sink_in_flight{{sink="{redacted}"}} 0.0' in metrics:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f'sink="{redacted}"' in metrics, metrics
    assert "dead_lettered" in metrics
    secrets = (PASSWORD, TOKEN, f"{USER}:")
    data = tmp_path / "data"
    dead = data / "webhook-dead-letter.jsonl"
    assert dead.exists() and dead.stat().st_size > 0  # refusals were logged ...
    assert (data / "webhook-deliveries.jsonl").stat().st_size > 0
    places = {"/metrics": metrics, "engine log": log.read_text()}
    for path in data.rglob("*"):  # ... and the store, the delivery logs: nothing shows them
        if path.is_file():
            places[str(path)] = path.read_bytes().decode("latin-1")
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} appears in {where}"
    marks = Store(data, read_only=True).sink_marks()
    assert redacted in marks and marks[redacted] > 0, marks
