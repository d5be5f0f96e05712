"""`riskstream demo --serve` runs a live engine: a rule proposed and approved through the API goes
live by hot reload in the demo's own copy of the spec, and the next matching event raises a case.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

AUTHOR, REVIEWER = "analyst-key-0001", "analyst-key-0002"
REPO = Path(__file__).resolve().parents[3]
NEW_WHEN = "amount == 7777.77 or (card.count(1m) >= 10 and card.avg(1m) < 5)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("demo --serve did not come up: " + log.read_text()[-3000:])


def _cases(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_demo_serve_takes_an_approved_rule_live(tmp_path: Path) -> None:
    example = (REPO / "examples" / "card-velocity.yaml").read_bytes()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    root = tmp_path / "demo"
    log = tmp_path / "demo.log"
    env = {**os.environ, "RISKSTREAM_API_KEYS": f"{AUTHOR}=read+analyst,{REVIEWER}=read+analyst"}
    cmd = [sys.executable, "-m", "riskstream.cli", "demo", "--events", "3000", "--serve"]
    cmd += ["--port", str(port), "--data-dir", str(root)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_up(url, proc, log)
        proposed = httpx.post(
            f"{url}/v1/rules/proposals",
            json={"name": "card_testing", "when": NEW_WHEN},
            headers={"Authorization": f"Bearer {AUTHOR}"},
            timeout=30,
        )
        assert proposed.status_code == 201, proposed.text
        version = proposed.json()["version"]
        own = httpx.post(
            f"{url}/v1/rules/card_testing/versions/{version}/approve",
            headers={"Authorization": f"Bearer {AUTHOR}"},
            timeout=30,
        )
        assert own.status_code == 403, own.text  # four eyes
        approved = httpx.post(
            f"{url}/v1/rules/card_testing/versions/{version}/approve",
            headers={"Authorization": f"Bearer {REVIEWER}"},
            timeout=30,
        )
        assert approved.status_code == 200 and approved.json()["live"] is True, approved.text
        # The demo's copy of the spec changed; the repository's example did not.
        assert NEW_WHEN in (root / "spec" / "card-velocity.yaml").read_text()
        assert (REPO / "examples" / "card-velocity.yaml").read_bytes() == example
        now = int(time.time() * 1000)
        event = {
            "event_id": "probe-1",
            "event_time": now - 60_000,
            "card_id": "card-probe",
            "person_id": "p-probe",
            "merchant_id": "m-probe",
            "shop_id": "shop-probe",
            "amount": 7777.77,
            "currency": "EUR",
            "card_country": "DE",
            "ip_country": "DE",
            "product_title": "socks",
            "status": "succeeded",
        }
        with (root / "inbox.jsonl").open("ab") as f:
            f.write(orjson.dumps(event) + b"\n")
        cases_file = root / "card-velocity" / "cases.jsonl"
        deadline = time.monotonic() + 60
        hits: list[dict[str, object]] = []
        while time.monotonic() < deadline and not hits:
            hits = [c for c in _cases(cases_file) if c["event_id"] == "probe-1"]
            time.sleep(0.2)
        assert [c["rule"] for c in hits] == ["card_testing"], log.read_text()[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
