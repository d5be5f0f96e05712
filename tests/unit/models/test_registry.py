"""Loading models: every bad input is refused with one line naming the model and the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from riskstream.engine.pipeline import Pipeline
from riskstream.models.registry import META_FILE, MODEL_FILE, ModelError, NotEnoughLabels
from riskstream.models.scoring import ModelSet
from riskstream.training.train import train
from tests.unit.models.conftest import FEATURES, SPEC, unit_spec

USES = "models: {fraud: {version: latest}}\n"


def _refused(root: Path, extra: str = USES) -> str:
    with pytest.raises(ModelError) as exc:
        ModelSet(unit_spec(extra), root)
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_a_good_model_loads_and_scores_a_batch(model_root: Path) -> None:
    models = ModelSet(unit_spec(USES), model_root)
    assert models.models["fraud"].version == 1
    assert models.models["fraud"].features == FEATURES


def test_missing_model_file(model_root: Path) -> None:
    (model_root / "fraud" / "v1" / MODEL_FILE).unlink()
    msg = _refused(model_root)
    assert msg.startswith("model 'fraud' (v1): missing model file ")


def test_corrupt_model_file_caught_by_checksum(model_root: Path) -> None:
    path = model_root / "fraud" / "v1" / MODEL_FILE
    path.write_bytes(path.read_bytes()[:-200])
    msg = _refused(model_root)
    assert msg.startswith("model 'fraud' (v1): corrupt model file ")
    assert "checksum" in msg


def test_corrupt_model_file_caught_by_lightgbm(model_root: Path) -> None:
    vdir = model_root / "fraud" / "v1"
    meta = orjson.loads((vdir / META_FILE).read_bytes())
    del meta["model_sha256"]
    (vdir / META_FILE).write_bytes(orjson.dumps(meta))
    (vdir / MODEL_FILE).write_bytes(b"tree\nnot a model at all\n")
    assert _refused(model_root).startswith("model 'fraud' (v1): corrupt model file ")


def test_corrupt_meta(model_root: Path) -> None:
    (model_root / "fraud" / "v1" / META_FILE).write_bytes(b"{not json")
    assert _refused(model_root).startswith("model 'fraud' (v1): corrupt ")


def test_features_not_in_the_spec(model_root: Path) -> None:
    spec_text = SPEC.replace("  merchant: {dimension: [merchant_id], stats: [count]}\n", "")
    from riskstream.spec.load import parse_spec

    with pytest.raises(ModelError) as exc:
        ModelSet(parse_spec(spec_text + USES), model_root)
    assert str(exc.value) == (
        "model 'fraud' (v1): feature 'merchant.count(1m)' is not in this spec: "
        "unknown metric 'merchant'"
    )


def test_model_trained_for_another_spec(model_root: Path) -> None:
    from riskstream.spec.load import parse_spec

    other = parse_spec(SPEC.replace("name: models-unit", "name: other") + USES)
    with pytest.raises(ModelError) as exc:
        ModelSet(other, model_root)
    assert str(exc.value).startswith("model 'fraud' (v1): trained for spec 'models-unit'")
    # same name, but a feature now means something else (the metric's filter changed)
    changed = parse_spec(
        SPEC.replace(
            "card: {dimension: [card_id], value: amount, stats: [count, sum, avg]}",
            "card: {dimension: [card_id], value: amount, where: \"status == 'ok'\", stats: [count, sum, avg]}",
        )
        + USES
    )
    with pytest.raises(ModelError) as exc:
        ModelSet(changed, model_root)
    assert "trained for another definition of its features" in str(exc.value)


def test_version_not_found_and_no_model(model_root: Path) -> None:
    assert _refused(model_root, "models: {fraud: {version: 7}}\n") == (
        "model 'fraud' (v7): version 7 not found (have v1)"
    )
    assert _refused(model_root, "models: {other: {version: latest}}\n").startswith(
        "model 'other': no trained version under "
    )


def test_reload_with_a_bad_model_keeps_the_previous_one(model_root: Path) -> None:
    pipe = Pipeline(unit_spec(USES), None, models_dir=model_root)
    before = pipe.models
    with pytest.raises(ModelError):
        pipe.reload(unit_spec("models: {fraud: {version: 3}}\n"))
    assert pipe.models is before and pipe.spec.models["fraud"].version == "latest"


def test_engine_refuses_to_start_with_one_line(model_root: Path, tmp_path: Path) -> None:
    (model_root / "fraud" / "v1" / MODEL_FILE).write_bytes(b"garbage")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC + USES)
    events = tmp_path / "ev.jsonl"
    events.write_text('{"event_id": "a", "event_time": 1767571200000, "card_id": "c"}\n')
    proc = subprocess.run(
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
            str(model_root.parent),
            "--until-end",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "riskstream: model 'fraud' (v1): corrupt model file"
    )


def test_too_few_labels_says_the_counts(tmp_path: Path) -> None:
    import polars as pl

    spec = unit_spec()
    data = pl.DataFrame(
        {
            "event_id": [str(i) for i in range(100)],
            "event_time": list(range(100)),
            "label": [1.0 if i % 25 == 0 else 0.0 for i in range(100)],
            **{f: [float(i) for i in range(100)] for f in FEATURES},
        }
    )
    with pytest.raises(NotEnoughLabels) as exc:
        train(spec, data, FEATURES, "fraud", tmp_path / "models")
    msg = str(exc.value)
    assert msg.startswith(
        "too few labels to train model 'fraud': 4 fraud and 96 legitimate labelled events"
    )
    assert msg == (
        "too few labels to train model 'fraud': 4 fraud and 96 legitimate labelled events in "
        "all the events (0 unlabelled; by time: train 3 fraud / 56 legitimate, calibration "
        "1 fraud / 19 legitimate, test 0 fraud / 21 legitimate); need at least 20 of each to "
        "train and 5 of each in the calibration and test parts"
    )
