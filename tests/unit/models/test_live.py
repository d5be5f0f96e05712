"""A model in a running engine: scores agree with the model applied offline; shadow never fires.

The engine runs in-process (:class:`EmbeddedRunner`, real DuckDB store, archive, file sink) on
a generator stream the model was *not* trained on; the offline side rebuilds every feature
from the archive with the training code and applies the stored model to it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pytest

from riskstream.models.records import read_scores
from riskstream.models.registry import models_root, read_version
from riskstream.models.scoring import LoadedModel
from riskstream.runners.embedded import EmbeddedRunner
from riskstream.runners.session import sink_factory
from riskstream.spec.load import load_spec
from riskstream.synthetic.generator import GeneratorSource
from riskstream.training.commands import event_batches
from riskstream.training.dataset import build_dataset
from riskstream.training.train import Trained
from tests.unit.models.conftest import FEATURES, SPEC

EVENTS = 8000
SEED = 12  # not the training stream (seed 11)


def _spec_text(root: Path, models: str, rule: str = "model.fraud > 0.2") -> str:
    return (
        SPEC
        + f'  scored: {{when: "{rule}", score: 90}}\n'
        + "archive: {retention: 30d}\n"
        + f"sinks:\n  - {{kind: file, path: {root / 'cases.jsonl'}}}\n"
        + models
    )


def run_live(root: Path, models: str, rule: str = "model.fraud > 0.2") -> Path:
    """Run the engine on the generator stream with ``models:``; returns its directory."""
    spec_path = root / "spec.yaml"
    spec_path.write_text(_spec_text(root, models, rule))
    spec = load_spec(spec_path)
    data = root / "data"
    source = GeneratorSource(EVENTS, SEED)
    runner = EmbeddedRunner(spec, source, data, sink_factory(spec, data), spec_path=spec_path)
    stats = runner.run(install_signals=False)
    assert stats.events == EVENTS and not stats.quarantined
    return root


def _cases(root: Path) -> list[dict[str, Any]]:
    path = root / "cases.jsonl"
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


def offline_scores(root: Path, model_root: Path, version: int = 1) -> pl.DataFrame:
    """Features recomputed from the run's archive (training code), scored by the stored model."""
    spec = load_spec(root / "spec.yaml")
    batches, _ = event_batches(spec, root / "data", None, FEATURES)
    data = build_dataset(spec, batches, FEATURES)
    model = LoadedModel("fraud", read_version(model_root, "fraud", version), spec)
    x = data.select(FEATURES).to_numpy().astype(np.float64)
    return data.with_columns(pl.Series("offline", model.predict(x)))


@pytest.fixture(scope="module")
def live(trained_root: tuple[Path, Trained], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("live")
    shutil.copytree(trained_root[0], models_root(root / "data"))
    return run_live(root, "models: {fraud: {version: latest}}\n")


def test_score_in_each_case_equals_the_model_on_features_recomputed_from_the_archive(
    live: Path,
) -> None:
    offline = offline_scores(live, models_root(live / "data"))
    assert offline.height == EVENTS
    by_id = {r["event_id"]: r for r in offline.iter_rows(named=True)}
    cases = _cases(live)
    scored = [c for c in cases if c["rule"] == "scored"]
    assert len(scored) >= 20 and any(c["rule"] == "burst" for c in cases)
    for case in cases:
        row = by_id[case["event_id"]]
        explained = case["models"]["fraud"]
        assert explained["version"] == 1
        assert explained["score"] == pytest.approx(row["offline"], abs=1e-12)
        assert set(explained["top_features"]) <= set(FEATURES)
        for name, value in case["features"].items():
            if name in row:
                assert value == pytest.approx(row[name], abs=1e-9), name
    # the model rule fired exactly where the offline score says it should
    expected = {e for e, r in by_id.items() if r["offline"] > 0.2}
    assert {c["event_id"] for c in scored} == expected


def test_every_event_has_one_score_record_equal_to_the_offline_score(live: Path) -> None:
    offline = offline_scores(live, models_root(live / "data"))
    records = read_scores(models_root(live / "data"))
    assert records.height == EVENTS
    both = records.join(offline, on="event_id", how="inner", suffix="_off")
    assert both.height == EVENTS
    assert float((both["score"] - both["offline"]).abs().max() or 0.0) < 1e-12
    # each record carries its own event's label (not one label for the whole batch)
    assert both["label"].to_list() == both["label_off"].to_list()
    assert 0 < float(both["label"].sum()) < EVENTS
    assert set(both["version"].to_list()) == {1} and not any(both["shadow"].to_list())


def test_shadow_model_is_scored_on_every_event_and_never_fires(
    trained_root: tuple[Path, Trained], tmp_path: Path, live: Path
) -> None:
    shutil.copytree(trained_root[0], models_root(tmp_path / "data"))
    # as a live model this rule would fire on every event
    run_live(tmp_path, "models: {fraud: {version: latest, shadow: true}}\n", "model.fraud >= 0")
    cases = _cases(tmp_path)
    assert cases and not [c for c in cases if c["rule"] == "scored"]
    assert all("models" not in c for c in cases)  # a shadow score is not a case's reason
    records = read_scores(models_root(tmp_path / "data"))
    assert records.height == EVENTS and all(records["shadow"].to_list())
    # the same scores as the live run's (same model, same events)
    live_records = read_scores(models_root(live / "data"))
    both = records.join(live_records, on="event_id", suffix="_live")
    assert both.height == EVENTS
    assert float((both["score"] - both["score_live"]).abs().max() or 0.0) == 0.0


def test_run_on_the_generator_source_with_a_model_finishes(
    trained_root: tuple[Path, Trained], tmp_path: Path
) -> None:
    """Regression: every batch of more than one event failed in the score records (one label
    per batch, a ShapeError), so the engine bisected each batch down to single events: a
    20k-event generator run took more than ten minutes and quarantined everything."""
    shutil.copytree(trained_root[0], models_root(tmp_path / "data"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC + "models: {fraud: {version: latest}}\n")
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "riskstream.cli",
            "run",
            "-c",
            str(spec),
            "--source",
            "generator:?events=20000&seed=11",
            "--data-dir",
            str(tmp_path / "data"),
            "--until-end",
            "-q",
            "--summary-json",
            str(summary),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    got = orjson.loads(summary.read_bytes())
    assert got["events"] == 20000 and got["quarantined"] == 0
    assert got["cases_by_rule"]["burst"] > 0
    assert read_scores(models_root(tmp_path / "data")).height == 20000


def test_a_spec_without_labels_scores_whole_batches(model_root: Path) -> None:
    """Regression: without ``labels:`` the label column of the score records was one literal
    row, so every batch of more than one event failed and was bisected to single events."""
    from riskstream.engine.pipeline import Pipeline
    from riskstream.spec.load import parse_spec

    spec = parse_spec(
        SPEC.replace("labels: {field: label}\n", "") + "models: {fraud: {version: latest}}\n"
    )
    assert spec.labels.field is None
    pipe = Pipeline(spec, None, models_dir=model_root)
    batch = GeneratorSource(3000, SEED).read_batch(3000, 0)
    assert batch is not None
    outcome = pipe.process(batch)
    assert outcome.events == 3000 and not outcome.quarantined
    assert pipe.isolated_batches == 0
    records = outcome.model_scores
    assert records is not None and records.height == 3000
    assert records["label"].null_count() == 3000
    assert records["event_id"].to_list() == [f"ev-{i:09d}" for i in range(3000)]
