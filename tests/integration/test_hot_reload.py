"""Editing the spec of a running engine switches rules at a batch boundary; a broken edit is refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

SPEC = """
name: reload
event: {{time: ts, id: event_id, fields: {{ts: int, event_id: str, amount: float, shop: str}}}}
metrics:
  shop: {{dimension: [shop], value: amount, stats: [count, sum]}}
lists:
  bad_shops: {{values: [{shops}]}}
rules:
  big: {{when: "{when}", action: review}}
sinks:
  - {{kind: file, path: {cases}}}
"""


def write_spec(path: Path, when: str, cases: Path, shops: str = "s9") -> None:
    path.write_text(SPEC.format(when=when, cases=cases, shops=shops))


def append(events: Path, phase: str, amounts: list[float]) -> None:
    with events.open("a") as f:
        for i, a in enumerate(amounts):
            f.write(
                json.dumps(
                    {
                        "event_id": f"{phase}{i}",
                        "ts": 1767600000000 + i,
                        "amount": a,
                        "shop": f"s{i % 10}",
                    }
                )
                + "\n"
            )


def wait_for_cases(path: Path, n: int, timeout: float = 30) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            rows = [json.loads(x) for x in path.read_text().splitlines()]
            if len(rows) >= n:
                time.sleep(0.5)  # nothing more should come
                return [json.loads(x) for x in path.read_text().splitlines()]
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} cases in {path}")


def test_edit_switches_rules_and_broken_edit_is_refused(tmp_path: Path) -> None:
    spec, cases, events = (
        tmp_path / "spec.yaml",
        tmp_path / "cases.jsonl",
        tmp_path / "events.jsonl",
    )
    write_spec(spec, "amount > 100", cases)
    amounts = [5.0, 50.0, 150.0, 500.0, 20.0, 101.0]
    append(events, "a", amounts)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "riskstream.cli",
            "run",
            "-c",
            str(spec),
            "--source",
            f"file:{events}",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        got = wait_for_cases(cases, 3)
        assert {c["event_id"] for c in got} == {"a2", "a3", "a5"}

        write_spec(spec, "amount > > 1", cases)  # broken: refused, old rule keeps running
        time.sleep(1.0)
        append(events, "b", amounts)
        got = wait_for_cases(cases, 6)
        assert {c["event_id"] for c in got if str(c["event_id"]).startswith("b")} == {
            "b2",
            "b3",
            "b5",
        }

        write_spec(spec, "amount > 10 and shop not in bad_shops", cases, shops="s1, s2")
        time.sleep(1.0)
        append(events, "c", amounts)
        got = wait_for_cases(cases, 9)
        assert {c["event_id"] for c in got if str(c["event_id"]).startswith("c")} == {
            "c3",
            "c4",
            "c5",
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "spec reload refused, keeping the running rules: rules.big.when: col 10" in err.replace(
        "\n", " "
    )
    assert "spec reloaded" in err


def test_a_reload_reading_new_stats_reloads_the_feature_state(tmp_path: Path) -> None:
    """The running rule reads only ``shop.count``: the feature tails keep counts alone. A
    reload to a rule on ``shop.sum(1h)`` reloads the tails from the store, so the first case
    after it sees every earlier event's amount (brute force), not only the new ones."""
    spec, cases, events = (
        tmp_path / "spec.yaml",
        tmp_path / "cases.jsonl",
        tmp_path / "events.jsonl",
    )
    write_spec(spec, "shop.count(1h) > 100 or amount > 1000", cases)
    amounts = [5.0, 50.0, 150.0, 500.0, 20.0, 101.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 2000.0]
    append(events, "a", amounts)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "riskstream.cli", "run", "-c", str(spec)),
            *("--source", f"file:{events}", "--data-dir", str(tmp_path / "data")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert [c["event_id"] for c in wait_for_cases(cases, 1)] == ["a12"]
        write_spec(spec, "shop.sum(1h) > 0 and amount > 1000", cases)
        time.sleep(1.0)
        append(events, "b", [1.0, 1.0, 3000.0])
        got = wait_for_cases(cases, 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # b2 is shop s2: a2 (150) and a12 (2000) before the reload, then b2 itself (3000)
    assert [c["event_id"] for c in got] == ["a12", "b2"]
    assert got[1]["features"] == {"shop.sum(1h)": 150.0 + 2000.0 + 3000.0}
    assert "reloaded pipeline state from the store for the reloaded spec" in err
