"""``riskstream train`` refuses bad input with one line and exit 2 (never a traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from riskstream.synthetic.generator import write_jsonl
from tests.unit.models.conftest import SPEC


def _train(tmp_path: Path, *extra: str) -> tuple[int, list[str]]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    proc = subprocess.run(
        [sys.executable, "-m", "riskstream.cli", "train", "-c", str(spec), "--model", "fraud",
         "--data-dir", str(tmp_path / "data"), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    return proc.returncode, proc.stderr.strip().splitlines()


def test_too_few_labels_says_the_counts(tmp_path: Path) -> None:
    events = tmp_path / "few.jsonl"
    write_jsonl(events, 300, 3)
    labels = [int(b'"label":1' in line) for line in events.read_bytes().splitlines()]
    code, lines = _train(tmp_path, "--source", f"file:{events}")
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(
        f"riskstream: too few labels to train model 'fraud': {sum(labels)} fraud and "
        f"{len(labels) - sum(labels)} legitimate labelled events in all the events"
    )
    assert "need at least 20 of each to train" in lines[0]
    assert not (tmp_path / "data" / "models" / "fraud").exists()


def test_a_feature_the_spec_cannot_compute(tmp_path: Path) -> None:
    code, lines = _train(
        tmp_path, "--source", "generator:?events=10", "--features", "amount,nope.count(1m)"
    )
    assert (code, lines) == (
        2,
        [
            "riskstream: --features: feature 'nope.count(1m)' is not in this spec: "
            "unknown metric 'nope'"
        ],
    )


def test_no_archive_to_train_on(tmp_path: Path) -> None:
    code, lines = _train(tmp_path)
    assert (code, lines) == (
        2,
        ["riskstream: the spec has no archive (add 'archive: {retention: 30d}')"],
    )
