"""``riskstream demo`` trains a model on its labelled stream and shows it next to the rules."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson


def test_demo_trains_a_model_and_reports_it_next_to_the_rules(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "riskstream.cli",
            "demo",
            "--events",
            "20000",
            "--data-dir",
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    vdir = root / "card-velocity" / "data" / "models" / "fraud" / "v1"
    meta = orjson.loads((vdir / "meta.json").read_bytes())
    for name in ("report.html", "pr.png", "calibration.png", "importance.png", "model.txt"):
        assert (vdir / name).is_file(), name
    m = meta["metrics"]
    assert f"Model fraud v1 ({len(meta['features'])} features, 200 trees" in out
    assert f"({m['events']:,}, {m['fraud']:,} fraud)" in out
    assert f"AUC-PR of the model: {m['auc_pr']:.3f}" in out
    # the rules' detection quality (whole stream) comes first, then the model's report
    assert out.index("Precision per rule") < out.index("Model fraud v1")
    # each rule's row on the held-out events, as the model's meta measured it
    for rule, point in m["rules"].items():
        row = re.search(rf"rule {rule}\s*│\s*(\S+)\s*│\s*(\S+)\s*│\s*(\S+)", out)
        assert row is not None, rule
        precision = f"{point['precision']:.0%}" if point["hits"] else "-"
        assert row.groups() == (precision, f"{point['recall']:.0%}", f"{point['hits']:,}")
    # the model beats the best rule's precision x recall on those events
    best = max(p["precision"] * p["recall"] for p in m["rules"].values())
    assert m["auc_pr"] > best
    assert str(vdir / "report.html") in out.replace("\n", "")
