"""Path attribution: additive like SHAP, equal to LightGBM's SHAP on single-split trees."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from riskstream.models.contrib import PathAttribution
from riskstream.models.registry import MODEL_FILE
from riskstream.training.train import Trained
from tests.unit.models.conftest import FEATURES, TRAINED


def test_credits_add_up_to_the_raw_score(trained_root: tuple[Path, Trained]) -> None:
    booster = lgb.Booster(model_file=str(trained_root[1].path / MODEL_FILE))
    data = TRAINED["data"]
    assert isinstance(data, pl.DataFrame)
    x = data.select(FEATURES).to_numpy().astype(np.float64)[:5000]
    credits = PathAttribution(booster)(x)
    raw = booster.predict(x, raw_score=True)
    assert credits.shape == (len(x), len(FEATURES))
    assert np.abs(credits.sum(axis=1) + PathAttribution(booster).bias - raw).max() < 1e-9
    # the biggest credit is on a feature that matters: the same ranking as SHAP, mostly
    shap = booster.predict(x, pred_contrib=True)[:, :-1]
    same = np.argmax(np.abs(credits), axis=1) == np.argmax(np.abs(shap), axis=1)
    assert same.mean() > 0.8


def test_equal_to_shap_for_single_split_trees() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 4))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take the default branch
    y = (x[:, 0] + 0.5 * np.nan_to_num(x[:, 2]) + rng.normal(scale=0.5, size=2000) > 0).astype(
        float
    )
    params = {"objective": "binary", "num_leaves": 2, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, label=y), num_boost_round=40)
    credits = PathAttribution(booster)(x)
    shap = booster.predict(x, pred_contrib=True)
    assert np.abs(credits - shap[:, :-1]).max() < 1e-9
    assert abs(PathAttribution(booster).bias - shap[0, -1]) < 1e-9
    # a feature no tree splits on gets no credit
    unused = np.flatnonzero(booster.feature_importance(importance_type="split") == 0)
    assert len(unused) and not credits[:, unused].any()
