"""Models on the generator's labelled stream: better than the best rule on the held-out range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from riskstream.models import quality
from riskstream.models.registry import read_version
from riskstream.models.scoring import LoadedModel
from riskstream.training.train import Trained
from tests.unit.models.conftest import FEATURES, TRAINED, unit_spec


def _data() -> pl.DataFrame:
    data = TRAINED["data"]
    assert isinstance(data, pl.DataFrame)
    return data


def test_model_beats_the_best_rule_on_the_held_out_range(
    trained_root: tuple[Path, Trained],
) -> None:
    root, trained = trained_root
    spec = unit_spec()
    model = LoadedModel("fraud", read_version(root, "fraud", 1), spec)
    test_from = trained.meta["test_range"]["from"]
    data = _data().filter(pl.col("label").is_not_null()).sort("event_time")
    t0 = int(np.quantile(data["event_time"].to_numpy(), 0.8, method="lower"))
    test = data.filter(pl.col("event_time") >= t0)
    assert test.height == trained.meta["test_range"]["events"] and test_from
    y = test["label"].to_numpy()
    scores = model.predict(test.select(FEATURES).to_numpy())
    hit = test["rule:burst"].to_numpy()
    rule_precision = float(y[hit].mean())
    rule_recall = float(y[hit].sum() / y.sum())
    assert 0 < rule_recall < 0.9  # the rule catches some fraud, not all of it
    auc_pr = quality.average_precision(scores, y)
    assert auc_pr > rule_precision * rule_recall
    # at 80% precision the model catches more of the fraud than the rule does
    curve = quality.pr_curve(scores, y)
    assert float(curve.recall[curve.precision >= 0.8].max()) > rule_recall
    assert abs(auc_pr - trained.meta["metrics"]["auc_pr"]) < 1e-6
