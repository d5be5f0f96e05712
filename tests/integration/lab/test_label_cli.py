"""``riskstream label``: unknown ids and malformed rows are counted and reported, the rest imported."""

from __future__ import annotations

import json
from pathlib import Path

from riskstream.lab.replay import stored_labels
from tests.conftest import run_cli

SPEC = """
name: labels
event: {time: t, id: id}
archive: {retention: 30d}
labels: {field: fraud}
metrics:
  card: {dimension: [card]}
rules:
  any: {when: card.count(1m) >= 1}
"""
T0 = 1_767_600_000_000


def test_label_import_counts_unknown_and_malformed_rows(tmp_path: Path) -> None:
    events = [
        {"id": f"e{i}", "t": T0 + i * 1000, "card": f"c{i % 3}", "fraud": 0} for i in range(50)
    ]
    (tmp_path / "ev.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp_path / "spec.yaml").write_text(SPEC)
    data = tmp_path / "data"
    run_cli(
        "run", "-c", str(tmp_path / "spec.yaml"), "--source", f"file:{tmp_path / 'ev.jsonl'}",
        "--data-dir", str(data), "--until-end", "-q",
    )  # fmt: skip
    (tmp_path / "cb.csv").write_text(
        "event_id,label\ne1,1\ne2,true\ne3,0\nnope,1\ne4,maybe\ne5\n,1\ne6,1,extra\ne7,fraud\n"
    )
    proc = run_cli(
        "label", "-c", str(tmp_path / "spec.yaml"), "--file", str(tmp_path / "cb.csv"),
        "--data-dir", str(data),
    )  # fmt: skip
    assert proc.stdout.startswith(
        "imported 4 labels (3 fraud); 1 unknown event ids, 4 malformed rows"
    )
    assert "line 6: label 'maybe' is not 1/0" in proc.stdout
    assert "unknown event id 'nope'" in proc.stdout
    got = dict(stored_labels(data).iter_rows())
    assert got == {"e1": 1, "e2": 1, "e3": 0, "e7": 1}
    # A backtest reads them: the imported 1s override the events' own fraud=0.
    out = tmp_path / "bt.json"
    run_cli(
        "backtest", "-c", str(tmp_path / "spec.yaml"), "--rule", "any", "--data-dir", str(data),
        "--json", str(out),
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert (result["events"], result["hits"], result["labelled"]) == (50, 50, 50)
    assert (result["true_positives"], result["false_positives"]) == (3, 47)
    missing = run_cli(
        "label", "-c", str(tmp_path / "spec.yaml"), "--file", str(tmp_path / "none.csv"),
        "--data-dir", str(data), check=False,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.startswith("riskstream: cannot read label file")
    assert missing.stderr.count("\n") == 1
