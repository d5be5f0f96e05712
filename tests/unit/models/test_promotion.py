"""Promotion is a spec change: hot-reloaded, it changes the live scores at the next batch and
leaves the promotion's metrics in the history of every rule that reads the model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest

from riskstream.core.events import RawBatch
from riskstream.models.records import read_scores
from riskstream.models.registry import models_root
from riskstream.runners.embedded import EmbeddedRunner
from riskstream.runners.session import sink_factory
from riskstream.spec.load import load_spec
from riskstream.store.duckdb import Store
from riskstream.synthetic.generator import GeneratorSource
from riskstream.training.train import Params, Trained, train
from tests.unit.models.conftest import FEATURES, TRAINED, unit_spec
from tests.unit.models.test_live import _spec_text, offline_scores

EVENTS = 6000
BATCH = 2000
BEFORE = """batch_size: 2000
checkpoint: {events: 1000}
models:
  fraud: {version: 1}
  challenger: {model: fraud, version: 2, shadow: true}
"""
AFTER = """batch_size: 2000
checkpoint: {events: 1000}
models:
  fraud: {version: 2}
"""


class PromotingSource:
    """The generator stream; right after handing out its first batch, the spec file changes."""

    def __init__(self, spec_path: Path, new_text: str) -> None:
        self.inner = GeneratorSource(EVENTS, 12)
        self.name = self.inner.name
        self.spec_path = spec_path
        self.new_text = new_text
        self.calls = 0

    def seek(self, positions: Mapping[str, int]) -> None:
        self.inner.seek(positions)

    def read_batch(self, max_events: int, timeout_s: float) -> RawBatch | None:
        batch = self.inner.read_batch(max_events, timeout_s)
        self.calls += 1
        if self.calls == 1:
            st = self.spec_path.stat()
            self.spec_path.write_text(self.new_text)
            os.utime(self.spec_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        return batch

    def close(self) -> None:
        self.inner.close()


def test_promotion_changes_scores_at_the_next_batch_and_is_in_the_rule_history(
    trained_root: tuple[Path, Trained], tmp_path: Path
) -> None:
    root = models_root(tmp_path / "data")
    shutil.copytree(trained_root[0], root)
    data = TRAINED["data"]
    assert isinstance(data, pl.DataFrame)
    v2 = train(unit_spec(), data, FEATURES, "fraud", root, params=Params(trees=6, num_leaves=4))
    assert v2.version == 2
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(_spec_text(tmp_path, BEFORE))
    spec = load_spec(spec_path)
    source = PromotingSource(spec_path, _spec_text(tmp_path, AFTER))
    runner = EmbeddedRunner(
        spec, source, tmp_path / "data", sink_factory(spec, tmp_path / "data"), spec_path=spec_path
    )
    stats = runner.run(install_signals=False)
    assert stats.events == EVENTS and stats.reloads == 1 and not stats.reload_errors

    records = read_scores(root)
    live = records.filter(pl.col("entry") == "fraud").sort("event_id")
    assert live.height == EVENTS
    first = {f"ev-{i:09d}" for i in range(BATCH)}
    v1_ids = set(live.filter(pl.col("version") == 1)["event_id"].to_list())
    assert v1_ids == first  # the first batch with v1, every later one with v2
    assert set(live.filter(pl.col("version") == 2)["event_id"].to_list()).isdisjoint(first)
    # the challenger was scored on the first batch only (it is gone after the reload)
    assert set(records.filter(pl.col("entry") == "challenger")["event_id"].to_list()) == first

    # the scores after the promotion are v2's, as applied offline; they differ from v1's
    off1 = offline_scores(tmp_path, root, 1).select("event_id", pl.col("offline").alias("v1"))
    off2 = offline_scores(tmp_path, root, 2).select("event_id", pl.col("offline").alias("v2"))
    after = live.filter(pl.col("version") == 2).join(off1, on="event_id").join(off2, on="event_id")
    assert after.height == EVENTS - BATCH
    assert np.abs(after["score"].to_numpy() - after["v2"].to_numpy()).max() < 1e-12
    assert (np.abs(after["v1"].to_numpy() - after["v2"].to_numpy()) > 1e-3).sum() > 100

    store = Store(tmp_path / "data", read_only=True)
    history = store.rule_versions("scored")
    assert not store.rule_versions("burst")  # it reads no model
    promoted = [v for v in history if v.author == "model promotion"]
    assert len(promoted) == 1 and promoted[0].status == "live"
    assert promoted[0].note == "model.fraud: fraud v1 -> fraud v2"
    assert promoted[0].body["when"] == "model.fraud > 0.2"
    assert promoted[0].summary is not None
    change = promoted[0].summary["model_change"]
    assert (change["before"]["version"], change["after"]["version"]) == (1, 2)
    assert change["before"]["test"]["auc_pr"] == trained_root[1].meta["metrics"]["auc_pr"]
    assert change["after"]["test"]["auc_pr"] == v2.meta["metrics"]["auc_pr"]
    # what v2 scored live before it was promoted: the first batch, as the shadow challenger
    assert change["after"]["live"]["events"] == BATCH
    labels = records.filter(pl.col("entry") == "challenger")["label"]
    assert change["after"]["live"]["fraud"] == int(labels.sum())


def _brute_ap(scores: list[float], labels: list[int]) -> float:
    """Average precision one threshold at a time (score >= t flags)."""
    pos = sum(labels)
    ap, prev = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        flagged = [y for x, y in zip(scores, labels, strict=True) if x >= t]
        recall = sum(flagged) / pos
        ap += (recall - prev) * sum(flagged) / len(flagged)
        prev = recall
    return ap


def test_compare_champion_and_challenger_on_the_same_labelled_events(
    trained_root: tuple[Path, Trained], tmp_path: Path
) -> None:
    root = models_root(tmp_path / "data")
    shutil.copytree(trained_root[0], root)
    data = TRAINED["data"]
    assert isinstance(data, pl.DataFrame)
    train(unit_spec(), data, FEATURES, "fraud", root, params=Params(trees=6, num_leaves=4))
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(_spec_text(tmp_path, BEFORE))
    spec = load_spec(spec_path)
    source = GeneratorSource(EVENTS, 12)
    runner = EmbeddedRunner(
        spec, source, tmp_path / "data", sink_factory(spec, tmp_path / "data"), spec_path=spec_path
    )
    assert runner.run(install_signals=False).events == EVENTS
    proc = subprocess.run(
        [sys.executable, "-m", "riskstream.cli", "models", "compare", "-c", str(spec_path),
         "fraud", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = orjson.loads(proc.stdout)
    assert (got["model"], got["champion"]) == ("fraud", "fraud")
    result = got["challengers"]["challenger"]
    records = read_scores(root)
    labels = {r["event_id"]: int(r["label"]) for r in records.iter_rows(named=True)}
    for side, entry, version in (("champion", "fraud", 1), ("challenger", "challenger", 2)):
        rows = records.filter(pl.col("entry") == entry).sort("event_id")
        scores = rows["score"].to_list()
        ys = [labels[e] for e in rows["event_id"].to_list()]
        q = result[side]
        assert (q["version"], q["events"], q["labelled"]) == ([version], EVENTS, EVENTS)
        assert q["fraud"] == sum(ys) > 0
        assert q["auc_pr"] == pytest.approx(_brute_ap(scores, ys), abs=1e-12)
    assert result["champion"]["auc_pr"] != result["challenger"]["auc_pr"]
