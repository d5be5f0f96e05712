"""A small model trained once per session on the generator's labelled stream."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from riskstream.lab.replay import source_events
from riskstream.spec.load import parse_spec
from riskstream.spec.model import PipelineSpec
from riskstream.training.dataset import build_dataset
from riskstream.training.train import Params, Trained, train

SPEC = """
name: models-unit
event:
  time: event_time
  id: event_id
  fields: {event_id: str, event_time: int, card_id: str, merchant_id: str, amount: float,
           status: str, label: int}
labels: {field: label}
metrics:
  card: {dimension: [card_id], value: amount, stats: [count, sum, avg]}
  merchant: {dimension: [merchant_id], stats: [count]}
rules:
  burst: {when: "card.count(1m) >= 10", score: 80}
"""
FEATURES = ["card.count(1m)", "card.avg(1m)", "card.count(10m)", "merchant.count(1m)", "amount"]
EVENTS = "generator:?events=20000&seed=11"


def unit_spec(extra: str = "") -> PipelineSpec:
    """The unit spec, with extra YAML appended (models:, more rules ...)."""
    return parse_spec(SPEC + extra)


TRAINED: dict[str, object] = {}


@pytest.fixture(scope="session")
def trained_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Trained]:
    """``models/`` with ``fraud`` v1 (30 trees) trained on 20k generated events.

    The training set (features recomputed by replaying the events) is in ``TRAINED["data"]``.
    """
    root = tmp_path_factory.mktemp("models") / "models"
    spec = unit_spec()
    data = build_dataset(spec, source_events(spec, EVENTS), FEATURES)
    trained = train(spec, data, FEATURES, "fraud", root, params=Params(trees=30))
    TRAINED["data"] = data
    return root, trained


@pytest.fixture
def model_root(trained_root: tuple[Path, Trained], tmp_path: Path) -> Iterator[Path]:
    """A private copy of the trained ``models/`` to damage."""
    root = tmp_path / "data" / "models"
    shutil.copytree(trained_root[0], root)
    yield root
