"""Issue 12.8: the data dir is 0700 and every file in it 0600 whatever the umask; the lock and
quarantine files are never opened through a symbolic link. Real ``riskstream run`` processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.independent_events import write_events

SPEC = """
name: private
event:
  time: ts
  id: event_id
  max_lateness: 1h
  fields: {{ts: any, event_id: str, card: str, merchant: str, amount: float, status: str, title: str}}
metrics:
  card: {{dimension: [card], value: amount, stats: [count, sum]}}
rules:
  big: {{when: amount > 50, action: review}}
sinks:
  - {{kind: file, path: {cases}}}
"""


def _run(tmp: Path, data: Path, umask: int) -> subprocess.CompletedProcess[str]:
    """``riskstream run`` under ``umask`` (set in the child before it starts)."""
    spec = tmp / "spec.yaml"
    spec.write_text(SPEC.format(cases=tmp / "out" / "cases.jsonl"))
    cmd = [sys.executable, "-m", "riskstream.cli", "run", "-c", str(spec), "--data-dir", str(data)]
    cmd += ["--source", f"file:{tmp / 'events.jsonl'}", "--until-end", "-q"]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=lambda: os.umask(umask),
    )


def _events(tmp: Path) -> None:
    write_events(tmp / "events.jsonl", 3000, seed=5)
    with (tmp / "events.jsonl").open("ab") as f:
        f.write(b"{not json\n")  # one quarantined line


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_data_dir_and_files_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    _events(tmp_path)
    data = tmp_path / "data"
    done = _run(tmp_path, data, umask)
    assert done.returncode == 0, done.stderr
    assert _mode(data) == 0o700
    files = [p for p in data.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"riskstream.duckdb", "quarantine.jsonl", "run.lock"} <= names, names
    wide = {str(p.relative_to(data)): oct(_mode(p)) for p in files if _mode(p) != 0o600}
    assert not wide, wide
    assert b"not json" in (data / "quarantine.jsonl").read_bytes()
    cases = tmp_path / "out" / "cases.jsonl"
    assert cases.stat().st_size > 0 and _mode(cases) == 0o600
    assert _mode(cases.with_name("cases.jsonl.seq")) == 0o600


def test_existing_wide_data_dir_is_narrowed(tmp_path: Path) -> None:
    _events(tmp_path)
    data = tmp_path / "data"
    assert _run(tmp_path, data, 0o022).returncode == 0
    os.chmod(data, 0o755)
    for p in data.iterdir():
        os.chmod(p, 0o644)
    with (tmp_path / "events.jsonl").open("ab") as f:
        f.write(b"[1]\n")
    done = _run(tmp_path, data, 0o000)
    assert done.returncode == 0, done.stderr
    assert _mode(data) == 0o700
    wide = {p.name: oct(_mode(p)) for p in data.iterdir() if p.is_file() and _mode(p) != 0o600}
    assert not wide, wide


@pytest.mark.parametrize("name", ["quarantine.jsonl", "run.lock"])
def test_symlinked_lock_or_quarantine_is_refused(tmp_path: Path, name: str) -> None:
    _events(tmp_path)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    target = tmp_path / "victim.txt"
    target.write_text("precious\n")
    (data / name).symlink_to(target)
    done = _run(tmp_path, data, 0o022)
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "symbolic link" in lines[0] and name in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert target.read_text() == "precious\n"
