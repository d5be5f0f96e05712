"""Cases go out ahead of the bucket write: SIGKILL exactly between the two commits.

``runners/outbox.py`` commits a batch's cases (and the throttles and rule hits they set)
and hands them to the sinks before the checkpoint that writes the batch's buckets and
positions. Here the engine is SIGKILLed right there, several times: after an outbox
commit that delivered cases, at the start of the next bucket write. Each restart replays
from the older positions and must raise nothing twice and lose nothing: the case file
equals an uninterrupted run's (same cases, same features, no id twice), the stored rule
hits count each case once, and the aggregates equal brute force.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from riskstream.query.range import query_range
from riskstream.spec.load import load_spec
from riskstream.store.factory import open_store
from tests.conftest import run_cli
from tests.independent_events import event_ms, write_events

SPEC = """
name: outbox
event:
  time: ts
  id: event_id
  fields: {{ts: any, event_id: str, card: str, merchant: str, amount: float, status: str, title: str}}
checkpoint: {{every: 50ms, events: 3000}}
batch_size: 1000
metrics:
  card:
    dimension: [card]
    value: amount
    where: status == 'ok'
    stats: [count, sum, min, max]
rules:
  burst:
    when: card.count(60s) >= 3
    action: review
  big_spender:
    when: card.sum(5m) > 300
    action: block
    once_per: {{key: card, within: 10m}}
sinks:
  - {{kind: file, path: {cases}}}
"""

# Runs the command line with one change: SIGKILL at the start of the N-th bucket write that
# follows an outbox commit of cases (the window where cases are out, their state is not);
# KILL_AT_WRITE=0 never kills. Each start says how many orphans recovery adopted.
DRIVER = """
import os, signal, sys
import riskstream.runners.embedded as embedded
from riskstream.runners.embedded import EmbeddedRunner
from riskstream.cli import main

adopt = embedded.adopt_orphans

def telling_adopt(store, pipeline, meta):
    orphans = adopt(store, pipeline, meta)
    sys.stderr.write(f"adopted {len(orphans)} orphans\\n")
    return orphans

embedded.adopt_orphans = telling_adopt

at = int(os.environ["KILL_AT_WRITE"])
seen = {"writes": 0, "commits": 0}
write = EmbeddedRunner._write

def killing_write(self, store, cp, *args, **kwargs):
    commits = self.outbox.commits
    if commits > seen["commits"] and cp.positions:
        seen["writes"] += 1
        if at and seen["writes"] >= at:
            sys.stderr.write(f"killed after {commits} outbox commits\\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    seen["commits"] = commits
    return write(self, store, cp, *args, **kwargs)

EmbeddedRunner._write = killing_write
sys.argv = ["riskstream", *sys.argv[1:]]
sys.exit(main())
"""


def _spec(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(SPEC.format(cases=tmp / f"{name}-cases.jsonl"))
    return path


def _cases(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("outbox")
    events = write_events(tmp / "events.jsonl", 40_000, seed=17, hours=2.0, cards=400)
    args = ["run", "-c", str(_spec(tmp, "killed")), "--source", f"file:{tmp / 'events.jsonl'}"]
    args += ["--data-dir", str(tmp / "killed"), "--until-end", "-q"]
    (tmp / "driver.py").write_text(DRIVER)
    kills, adopted = 0, []
    for at in (2, 3, 1, 4, 2, 0):
        proc = subprocess.run(
            [sys.executable, str(tmp / "driver.py"), *args],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "KILL_AT_WRITE": str(at)},
            check=False,
        )
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        else:
            assert proc.returncode == 0, proc.stderr
        adopted += [
            int(ln.split()[1]) for ln in proc.stderr.splitlines() if ln.startswith("adopted ")
        ]
    assert proc.returncode == 0, proc.stderr  # the last run is never killed
    calm = ["run", "-c", str(_spec(tmp, "calm")), "--source", f"file:{tmp / 'events.jsonl'}"]
    run_cli(*calm, "--data-dir", str(tmp / "calm"), "--until-end", "-q")
    return {"tmp": tmp, "events": events, "kills": kills, "adopted": adopted}


def test_the_engine_died_in_the_window_and_found_orphans(runs: dict[str, Any]) -> None:
    assert runs["kills"] == 5
    # Each start after a kill found the killed run's last outbox commit ahead of its state.
    assert len(runs["adopted"]) == 6
    assert runs["adopted"][0] == 0 and all(n > 0 for n in runs["adopted"][1:]), runs["adopted"]


def test_cases_equal_an_uninterrupted_run_once_each(runs: dict[str, Any]) -> None:
    tmp = runs["tmp"]
    killed, calm = _cases(tmp / "killed-cases.jsonl"), _cases(tmp / "calm-cases.jsonl")
    ids = [c["case_id"] for c in killed]
    assert len(ids) == len(set(ids))
    assert len(killed) == len(calm) > 50
    by_id = {c["case_id"]: c for c in calm}
    for c in killed:
        assert c == by_id[c["case_id"]]  # same rule, event and features


def test_burst_cases_equal_brute_force(runs: dict[str, Any]) -> None:
    killed = _cases(runs["tmp"] / "killed-cases.jsonl")
    seen: dict[str, list[int]] = {}
    want = set()
    for e in runs["events"]:
        sec = event_ms(e) // 1000 * 1000
        if e["status"] == "ok":
            seen.setdefault(str(e["card"]), []).append(sec)
        if sum(1 for s in seen.get(str(e["card"]), []) if sec - 60_000 < s <= sec) >= 3:
            want.add(str(e["event_id"]))
    assert {c["event_id"] for c in killed if c["rule"] == "burst"} == want


def test_rule_hits_and_outbox_count_each_case_once(runs: dict[str, Any]) -> None:
    tmp = runs["tmp"]
    killed = _cases(tmp / "killed-cases.jsonl")
    spec = load_spec(_spec(tmp, "killed"))
    store = open_store(spec, tmp / "killed", None)
    try:
        hits = dict(store.select("SELECT rule, hits FROM rule_hits"))
        outbox = store.cases_after(0)
    finally:
        store.close()
    want: dict[str, int] = {}
    for c in killed:
        want[c["rule"]] = want.get(c["rule"], 0) + 1
    assert hits == want
    assert [c.seq for c in outbox] == list(range(1, len(killed) + 1))
    assert [c.case_id for c in outbox] == [c["case_id"] for c in killed]


def test_aggregates_equal_brute_force(runs: dict[str, Any]) -> None:
    tmp, events = runs["tmp"], runs["events"]
    spec = load_spec(_spec(tmp, "killed"))
    store = open_store(spec, tmp / "killed", None)
    try:
        times = [event_ms(e) for e in events]
        lo, hi = min(times) // 1000 * 1000, max(times) + 1000
        for card in sorted({str(e["card"]) for e in events})[:40]:
            got = query_range(spec, store, "card", card, lo, hi)
            vals = [
                float(e["amount"])  # type: ignore[arg-type]
                for e in events
                if e["card"] == card and e["status"] == "ok"
            ]
            assert got["count"] == len(vals)
            assert math.isclose(got["sum"], math.fsum(vals), rel_tol=1e-9, abs_tol=1e-6)
    finally:
        store.close()
