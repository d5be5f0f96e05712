"""Bad input never crashes and never disappears; one run per data dir; store errors stop cleanly."""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from riskstream.query.range import query_range
from riskstream.spec.load import load_spec
from riskstream.store.duckdb import Store
from tests.conftest import run_cli
from tests.independent_events import T0, event_ms, write_events

SPEC = """
name: quarantine
event:
  time: ts
  id: event_id
  max_lateness: 1h
  max_bytes: 2000
  fields: {ts: any, event_id: str, card: str, merchant: str, amount: float, status: str, title: str}
metrics:
  merchant: {dimension: [merchant], value: amount, stats: [count, sum, min, max]}
"""

MALFORMED = {
    "not_json": lambda i: b'{"event_id": "bad%d", "ts": 1767600000000, "amount": ' % i,
    "not_object": lambda i: b'["bad", %d]' % i,
    "missing_time": lambda i: b'{"event_id": "bad%d", "merchant": "m1", "amount": 3.5}' % i,
    "bad_time": lambda i: b'{"event_id": "bad%d", "ts": "the day after tomorrow", "amount": 1}' % i,
    "wrong_type": lambda i: (
        b'{"event_id": "bad%d", "ts": %d, "merchant": "m1", "amount": "12 EUR"}' % (i, T0)
    ),
    "oversized": lambda i: b'{"event_id": "bad%d", "ts": %d, "title": "%s"}' % (i, T0, b"x" * 3000),
    "too_late": lambda i: (
        b'{"event_id": "bad%d", "ts": %d, "merchant": "m1", "amount": 1}' % (i, T0 - 3 * 86_400_000)
    ),
}


@pytest.fixture(scope="module")
def quarantined(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("quarantine")
    events = write_events(tmp / "clean.jsonl", 30_000, seed=3, hours=2.0)
    lines = (tmp / "clean.jsonl").read_bytes().splitlines()
    kinds = list(MALFORMED)
    bad: dict[bytes, str] = {}
    good: list[dict[str, Any]] = []
    for i in range(len(lines)):
        if (
            i % 10 == 9 and i > 100
        ):  # every tenth line; the first ones set the watermark for "too late"
            kind = kinds[(i // 10) % len(kinds)]
            lines[i] = MALFORMED[kind](i)
            bad[lines[i]] = kind
        else:
            good.append(events[i])
    (tmp / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp / "spec.yaml").write_text(SPEC)
    run_cli(
        "run",
        "-c",
        str(tmp / "spec.yaml"),
        "--source",
        f"file:{tmp / 'events.jsonl'}",
        "--data-dir",
        str(tmp / "data"),
        "--until-end",
        "--summary-json",
        str(tmp / "summary.json"),
        "-q",
    )
    return {"tmp": tmp, "bad": bad, "good": good}


def test_quarantine_holds_exactly_the_malformed_lines(quarantined: dict[str, Any]) -> None:
    rows = [
        json.loads(x)
        for x in (quarantined["tmp"] / "data" / "quarantine.jsonl").read_text().splitlines()
    ]
    got = {r["raw"].encode(): r["reason"] for r in rows}
    assert len(rows) == len(got) == len(quarantined["bad"])
    assert got == quarantined["bad"]
    assert all(r["position"].startswith("events.jsonl@") and r["detail"] for r in rows)


def test_summary_counts_by_reason(quarantined: dict[str, Any]) -> None:
    summary = json.loads((quarantined["tmp"] / "summary.json").read_text())
    want: dict[str, int] = {}
    for kind in quarantined["bad"].values():
        want[kind] = want.get(kind, 0) + 1
    assert summary["quarantined_by_reason"] == want
    assert summary["events"] == len(quarantined["good"])


def test_aggregates_of_good_events_are_exact(quarantined: dict[str, Any]) -> None:
    tmp, good = quarantined["tmp"], quarantined["good"]
    spec = load_spec(tmp / "spec.yaml")
    store = Store(tmp / "data", read_only=True)
    lo = min(event_ms(e) for e in good)
    hi = max(event_ms(e) for e in good) + 1
    for m in [f"m{i}" for i in range(0, 41, 5)]:
        got = query_range(spec, store, "merchant", m, lo - 3_600_000, hi + 60_000)
        vals = [float(e["amount"]) for e in good if e["merchant"] == m]
        assert got["count"] == len(vals)
        assert math.isclose(got["sum"], math.fsum(vals), rel_tol=1e-9)
        assert got["min"] == min(vals) and got["max"] == max(vals)


def _slow_run(spec: Path, data: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "riskstream.cli",
            "run",
            "-c",
            str(spec),
            "--source",
            "generator:?events=3000000&seed=1",
            "--data-dir",
            str(data),
            "--until-end",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_checkpoint(data: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        if (data / "riskstream.duckdb").exists() and (data / "run.lock").exists():
            try:
                if Store(data, read_only=True).positions("generator:?events=3000000&seed=1"):
                    return
            except Exception:  # the running engine may hold the file for a moment
                pass
        time.sleep(0.2)
    raise AssertionError("no checkpoint")


def test_second_run_is_refused_and_query_works_while_running(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: busy\nmetrics:\n  card: {dimension: [card_id], value: amount, stats: [count, sum]}\n"
    )
    proc = _slow_run(spec, tmp_path / "data")
    try:
        _wait_for_checkpoint(tmp_path / "data", proc)
        second = run_cli(
            "run",
            "-c",
            str(spec),
            "--source",
            "generator:?events=10&seed=1",
            "--data-dir",
            str(tmp_path / "data"),
            "--until-end",
            check=False,
        )
        assert second.returncode == 2
        assert second.stderr.strip().count("\n") == 0
        assert "in use by another riskstream run" in second.stderr
        for _ in range(3):
            q = run_cli(
                "query",
                "-c",
                str(spec),
                "card",
                "card_0000001",
                "--from",
                "2026-01-05T00:00:00Z",
                "--to",
                "2026-01-06T00:00:00Z",
                "--data-dir",
                str(tmp_path / "data"),
            )
            assert json.loads(q.stdout)["metric"] == "card"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0  # SIGTERM: finish the batch, checkpoint, exit cleanly


def test_store_error_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    events = write_events(tmp_path / "events.jsonl", 40_000, seed=8, hours=1.0, cards=20_000)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: full\nevent: {time: ts, id: event_id}\ncheckpoint: {every: 50ms}\nbatch_size: 2000\n"
        "metrics:\n  card: {dimension: [card], value: amount, stats: [count, sum, min, max]}\n"
    )

    def small_disk() -> None:  # a "disk" that fills after ~0.8 MB per file
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (800_000, 800_000))

    cmd = [
        sys.executable,
        "-m",
        "riskstream.cli",
        "run",
        "-c",
        str(spec),
        "--source",
        f"file:{tmp_path / 'events.jsonl'}",
        "--data-dir",
        str(tmp_path / "data"),
        "--until-end",
        "-q",
    ]
    full = subprocess.run(
        cmd, capture_output=True, text=True, preexec_fn=small_disk, timeout=300, env={**os.environ}
    )
    assert full.returncode == 2, full.stderr
    assert full.stderr.startswith("riskstream: ") and full.stderr.strip().count("\n") == 0, (
        full.stderr
    )
    # The last checkpoint is intact: a run with room to write finishes the job exactly.
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
    store = Store(tmp_path / "data", read_only=True)
    total = store.select("SELECT sum(count) FROM buckets WHERE metric = 'card' AND tier = 'week'")[
        0
    ][0]
    assert total == len(events)
