"""Exactly-once under SIGKILL: the engine is killed at random moments and restarted until done.

The final aggregates, cases and quarantine must equal both brute force and an
uninterrupted run, with no case id (and no quarantined line) twice.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import random
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
from tests.independent_events import event_ms, write_events

SPEC = """
name: crash
event:
  time: ts
  id: event_id
  fields: {{ts: any, event_id: str, card: str, merchant: str, amount: float, status: str, title: str}}
checkpoint: {{every: 150ms, events: 20000}}
batch_size: 5000
metrics:
  card:
    dimension: [card]
    value: amount
    where: status == 'ok'
    stats: [count, sum, min, max]
  merchant:
    dimension: [merchant]
    value: amount
    stats: [count, sum, min, max]
rules:
  burst:
    when: card.count(60s) >= 4
    action: review
  big_spender:
    when: card.sum(5m) > 400
    action: block
    once_per: {{key: card, within: 10m}}
sinks:
  - {{kind: file, path: {cases}}}
"""

BAD_LINES = [
    b"this is not json",
    b"[1,2]",
    b'{"event_id":"q","amount":1}',
    b'{"ts":"noon","event_id":"q"}',
    b'{"ts":1767600000000,"amount":"x"}',
]


def _prepare(tmp: Path, n: int) -> tuple[Path, list[dict[str, Any]], list[bytes]]:
    events = write_events(tmp / "good.jsonl", n, seed=99, hours=3.0, cards=2000)
    lines = (tmp / "good.jsonl").read_bytes().splitlines()
    bad: list[bytes] = []
    out: list[bytes] = []
    for i, line in enumerate(lines):
        out.append(line)
        if i % 997 == 0:
            b = BAD_LINES[(i // 997) % len(BAD_LINES)] + f" #{i}".encode()
            out.append(b)
            bad.append(b)
    (tmp / "events.jsonl").write_bytes(b"\n".join(out) + b"\n")
    return tmp / "events.jsonl", events, bad


def _spec(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(SPEC.format(cases=tmp / f"{name}-cases.jsonl"))
    return path


def _run_with_kills(spec: Path, events: Path, data: Path, kills: int, rnd: random.Random) -> int:
    """Run to the end, SIGKILLing the engine ``kills`` times at random moments; returns kills done."""
    done = 0
    cmd = [
        sys.executable,
        "-m",
        "riskstream.cli",
        "run",
        "-c",
        str(spec),
        "--source",
        f"file:{events}",
        "--data-dir",
        str(data),
        "--until-end",
        "-q",
    ]
    while True:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ}
        )
        if done < kills:
            time.sleep(rnd.uniform(1.2, 3.0))  # imports take ~1 s; then somewhere mid-run
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                done += 1
                continue
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
        return done


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("crash")
    path, events, bad = _prepare(tmp, 150_000)
    rnd = random.Random(int(os.environ.get("CRASH_SEED", "5")))
    kills = _run_with_kills(_spec(tmp, "killed"), path, tmp / "killed", kills=7, rnd=rnd)
    run_cli(
        "run",
        "-c",
        str(_spec(tmp, "calm")),
        "--source",
        f"file:{path}",
        "--data-dir",
        str(tmp / "calm"),
        "--until-end",
        "-q",
    )
    return {"tmp": tmp, "events": events, "bad": bad, "kills": kills}


def test_engine_was_really_killed_many_times(crashed: dict[str, Any]) -> None:
    assert crashed["kills"] >= 6


def test_cases_equal_uninterrupted_run_without_duplicates(crashed: dict[str, Any]) -> None:
    tmp = crashed["tmp"]
    killed = [json.loads(x) for x in (tmp / "killed-cases.jsonl").read_text().splitlines()]
    calm = [json.loads(x) for x in (tmp / "calm-cases.jsonl").read_text().splitlines()]
    ids = [c["case_id"] for c in killed]
    assert len(ids) == len(set(ids))
    assert {(c["rule"], c["event_id"]) for c in killed} == {
        (c["rule"], c["event_id"]) for c in calm
    }
    burst = {c["event_id"] for c in killed if c["rule"] == "burst"}
    want = set()
    seen: dict[str, list[int]] = {}  # per card, the seconds of its ok events so far, sorted
    for e in crashed["events"]:
        sec = event_ms(e) // 1000 * 1000
        secs = seen.setdefault(str(e["card"]), [])
        if e["status"] == "ok":
            bisect.insort(secs, sec)
        # ok events of the card so far with sec - 60 s < s <= sec
        if bisect.bisect_right(secs, sec) - bisect.bisect_right(secs, sec - 60_000) >= 4:
            want.add(str(e["event_id"]))
    assert burst == want


def test_quarantine_holds_each_bad_line_once(crashed: dict[str, Any]) -> None:
    for name in ("killed", "calm"):
        rows = [
            json.loads(x)
            for x in (crashed["tmp"] / name / "quarantine.jsonl").read_text().splitlines()
        ]
        assert sorted(r["raw"] for r in rows) == sorted(b.decode() for b in crashed["bad"])


def test_60_random_queries_equal_brute_force(crashed: dict[str, Any]) -> None:
    tmp, events = crashed["tmp"], crashed["events"]
    spec = load_spec(_spec(tmp, "killed"))
    stores = {name: Store(tmp / name, read_only=True) for name in ("killed", "calm")}
    times = [event_ms(e) for e in events]
    lo, hi = min(times), max(times) + 1
    rnd = random.Random(11)
    cards = [str(e["card"]) for e in events[:: len(events) // 40]]
    for i in range(60):
        metric = "card" if i % 2 else "merchant"
        key = rnd.choice(cards) if metric == "card" else f"m{rnd.randint(0, 40)}"
        length = int(10 ** rnd.uniform(3, math.log10(hi - lo)))
        frm = rnd.randint(lo, max(lo, hi - length)) // 1000 * 1000
        to = frm + max(1000, length // 1000 * 1000)
        answers = [query_range(spec, s, metric, key, frm, to) for s in stores.values()]
        eff = answers[0]["effective"]
        field = "card" if metric == "card" else "merchant"
        vals = [
            float(e["amount"])
            for e in events
            if e[field] == key
            and eff["from"] <= event_ms(e) < eff["to"]
            and (metric != "card" or e["status"] == "ok")
        ]
        for got in answers:
            assert got["count"] == len(vals)
            assert math.isclose(got["sum"], math.fsum(vals), rel_tol=1e-9, abs_tol=1e-6)
            assert got.get("min") == (min(vals) if vals else None) and got.get("max") == (
                max(vals) if vals else None
            )
