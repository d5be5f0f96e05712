"""End to end through the command line on 30,000 events written by an independent program.

Checks the acceptance criteria of the embedded pipeline (120 random range queries
equal brute force) and of rules (the case set equals a brute-force evaluation).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from riskstream.cli import main
from tests.conftest import run_cli
from tests.independent_events import RISKY, event_ms, write_events

SPEC = """
name: e2e
event:
  time: ts
  id: event_id
  fields: {{ts: any, event_id: str, card: str, merchant: str, amount: float, status: str, title: str}}
metrics:
  card:
    dimension: [card]
    value: amount
    where: status == 'ok'
    stats: [count, sum, avg, min, max]
  merchant:
    dimension: [merchant]
    value: amount
    stats: [count, sum, min, max, var]
lists:
  risky: {{file: risky.txt}}
rules:
  burst:
    when: card.count(60s) >= 4
    action: review
    score: 60
  big_spender:
    when: card.sum(5m) > 400
    action: block
    score: 90
  risky_title:
    when: contains_any(title, risky)
    action: review
sinks:
  - {{kind: file, path: {cases}}}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("e2e")
    events = write_events(tmp / "events.jsonl", 30_000, seed=2026)
    (tmp / "risky.txt").write_text("\n".join(RISKY) + "\n")
    spec = tmp / "spec.yaml"
    spec.write_text(SPEC.format(cases=tmp / "cases.jsonl"))
    run_cli("validate", "-c", str(spec))
    proc = run_cli(
        "run",
        "-c",
        str(spec),
        "--source",
        f"file:{tmp / 'events.jsonl'}",
        "--data-dir",
        str(tmp / "data"),
        "--until-end",
        "--summary-json",
        str(tmp / "summary.json"),
    )
    assert "events" in proc.stderr  # the summary table
    return {"tmp": tmp, "events": events, "spec": spec}


def brute_stats(
    events: list[dict[str, Any]], metric: str, key: str, frm: int, to: int
) -> dict[str, Any]:
    field = "card" if metric == "card" else "merchant"
    vals = [
        float(e["amount"])
        for e in events
        if e[field] == key and frm <= event_ms(e) < to and (metric != "card" or e["status"] == "ok")
    ]
    return {
        "count": len(vals),
        "sum": math.fsum(vals),
        "min": min(vals) if vals else None,
        "max": max(vals) if vals else None,
    }


def query(
    spec: Path,
    data: Path,
    metric: str,
    key: str,
    frm: int,
    to: int,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, Any]:
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "query",
                "-c",
                str(spec),
                metric,
                key,
                "--from",
                str(frm),
                "--to",
                str(to),
                "--data-dir",
                str(data),
            ]
        )
    assert exc.value.code == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_summary_counts_every_event(world: dict[str, Any]) -> None:
    summary = json.loads((world["tmp"] / "summary.json").read_text())
    assert summary["events"] == 30_000 and summary["quarantined"] == 0


def test_120_random_range_queries_equal_brute_force(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    events = world["events"]
    times = [event_ms(e) for e in events]
    lo, hi = min(times), max(times) + 1
    rnd = random.Random(7)
    cards = sorted(
        {e["card"] for e in events}, key=lambda c: -sum(1 for e in events if e["card"] == c)
    )[:30]
    mismatches, exact_seen = [], 0
    for i in range(120):
        metric = "card" if i % 3 else "merchant"
        key = rnd.choice(cards) if metric == "card" else f"m{rnd.randint(0, 40)}"
        length = int(10 ** rnd.uniform(3, math.log10(hi - lo)))  # one second .. the whole stream
        frm = rnd.randint(lo - 1000, max(lo, hi - length))
        to = frm + length
        if i % 2:  # second-aligned ranges: exact wherever seconds are still retained
            frm, to = frm // 1000 * 1000, max(to // 1000 * 1000, frm // 1000 * 1000 + 1000)
        got = query(world["spec"], world["tmp"] / "data", metric, key, frm, to, capsys)
        eff = got["effective"]
        assert eff["from"] <= frm and eff["to"] >= to
        exact_seen += got["exact"]
        want = brute_stats(events, metric, key, eff["from"], eff["to"])
        ok = got["count"] == want["count"] and math.isclose(
            got["sum"], want["sum"], rel_tol=1e-9, abs_tol=1e-6
        )
        ok = ok and got.get("min") == want["min"] and got.get("max") == want["max"]
        if not ok:
            mismatches.append((metric, key, frm, to, got, want))
    assert mismatches == []
    assert exact_seen >= 10  # recent second-aligned ranges are answered exactly


def test_query_command_in_a_subprocess(world: dict[str, Any]) -> None:
    ev = world["events"][-1]
    t = event_ms(ev)
    proc = run_cli(
        "query",
        "-c",
        str(world["spec"]),
        "merchant",
        str(ev["merchant"]),
        "--from",
        str(t - 60_000),
        "--to",
        "2026-01-06T00:00:00Z",
        "--data-dir",
        str(world["tmp"] / "data"),
    )
    got = json.loads(proc.stdout)
    want = brute_stats(
        world["events"],
        "merchant",
        str(ev["merchant"]),
        got["effective"]["from"],
        got["effective"]["to"],
    )
    assert got["count"] == want["count"] and got["resolution"] == "second"


def brute_cases(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Evaluate the spec's rules per event by the feature definition, in file order."""
    out: set[tuple[str, str]] = set()
    history: dict[str, list[tuple[int, float]]] = {}
    words = [w.lower() for w in RISKY]
    for e in events:
        sec = event_ms(e) // 1000 * 1000
        if e["status"] == "ok":
            history.setdefault(str(e["card"]), []).append(
                (event_ms(e) // 1000 * 1000, float(e["amount"]))
            )
        seen = history.get(str(e["card"]), [])
        count_60 = sum(1 for s, _ in seen if sec - 60_000 < s <= sec)
        sum_5m = math.fsum(v for s, v in seen if sec - 300_000 < s <= sec)
        if count_60 >= 4:
            out.add(("burst", str(e["event_id"])))
        if sum_5m > 400:
            out.add(("big_spender", str(e["event_id"])))
        text = (
            " "
            + "".join(ch if ch.isalnum() or ch == "_" else " " for ch in str(e["title"]).lower())
            + " "
        )
        text = " ".join(text.split())
        if any(f" {w} " in f" {text} " for w in words):
            out.add(("risky_title", str(e["event_id"])))
    return out


def test_case_set_equals_brute_force(world: dict[str, Any]) -> None:
    lines = (world["tmp"] / "cases.jsonl").read_text().splitlines()
    cases = [json.loads(line) for line in lines]
    ids = [c["case_id"] for c in cases]
    assert len(ids) == len(set(ids))
    got = {(c["rule"], c["event_id"]) for c in cases}
    want = brute_cases(world["events"])
    assert {r for r, _ in want} == {"burst", "big_spender", "risky_title"}
    assert got == want
    sample = next(c for c in cases if c["rule"] == "burst")
    assert sample["features"]["card.count(1m)"] >= 4 and sample["action"] == "review"


Check = Callable[..., Any]
