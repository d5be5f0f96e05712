"""SIGKILL during archiving: the archive ends up holding every accepted event exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from riskstream.lab.archive import Archive
from riskstream.store.duckdb import Store
from tests.independent_events import write_events

SPEC = """
name: crash-archive
event: {time: ts, id: event_id}
archive: {retention: 30d}
checkpoint: {every: 100ms, events: 4000}
batch_size: 2000
metrics:
  card: {dimension: [card], value: amount, stats: [count, sum]}
rules:
  burst: {when: card.count(60s) >= 4}
"""


def test_sigkill_leaves_each_accepted_event_archived_once(tmp_path: Path) -> None:
    events = write_events(tmp_path / "good.jsonl", 120_000, seed=8, hours=30.0, cards=3000)
    lines = (tmp_path / "good.jsonl").read_bytes().splitlines()
    # Bad lines are quarantined, never archived.
    mixed = [
        x
        for i, line in enumerate(lines)
        for x in ([line, b"not json"] if i % 5000 == 0 else [line])
    ]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(mixed) + b"\n")
    (tmp_path / "spec.yaml").write_text(SPEC)
    cmd = [
        sys.executable, "-m", "riskstream.cli", "run", "-c", str(tmp_path / "spec.yaml"),
        "--source", f"file:{tmp_path / 'events.jsonl'}", "--data-dir", str(tmp_path / "data"),
        "--until-end", "-q",
    ]  # fmt: skip
    rnd = random.Random(3)
    kills = 0
    while True:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < 5:
            time.sleep(rnd.uniform(1.3, 2.6))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
        break
    assert kills >= 4
    meta = Store(tmp_path / "data", read_only=True).meta()
    arch = Archive(tmp_path / "data" / "archive", 30 * 86_400_000)
    # After the clean run every file is committed (orphans were removed at each open).
    assert max(f.seq for f in arch.files()) == int(meta["archive_seq"])
    got = arch.scan(int(meta["archive_seq"])).sort("n").collect()
    assert got["n"].to_list() == list(range(len(events)))
    assert int(meta["archive_next"]) == len(events)
    want = sorted(str(e["event_id"]) for e in events)
    assert sorted(got["event_id"].to_list()) == want
    # Raw bytes as they came, the file's own lines.
    assert set(got["raw"].to_list()) == set(lines)
    assert got.filter(pl.col("raw") == b"not json").height == 0
