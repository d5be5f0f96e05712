"""Train a LightGBM model on a training set, split by time, calibrate it, measure it, store it.

The labelled events are split by event time into three consecutive ranges (no event time
in two of them, so nothing of the future leaks into training): the oldest 60% train the
booster, the next 20% fit an isotonic calibration of its output, the newest 20% measure
the calibrated model (AUC-PR, precision at 50/80/95% recall, calibration table) next to
each rule of the spec on the very same events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from riskstream.models import quality
from riskstream.models.registry import (
    MODEL_FILE,
    NotEnoughLabels,
    fingerprint,
    version_dir,
    write_version,
)
from riskstream.spec.model import PipelineSpec
from riskstream.training.dataset import LABEL, RULE_PREFIX, describe_range

#: Share of the labelled time range per part: train, calibration, test.
SPLIT = (0.6, 0.2, 0.2)
#: Fewest fraud (and legitimate) labels in the training part, and in each later part.
MIN_TRAIN_LABELS = 20
MIN_PART_LABELS = 5
RECALLS = (0.5, 0.8, 0.95)
#: Top features (by gain) whose drift the engine tracks.
DRIFT_FEATURES = 5


@dataclass(frozen=True)
class Params:
    """Training knobs (defaults: 200 trees, deterministic).

    One thread by default: LightGBM's OpenMP threads spin-wait, which on a busy 2-core
    machine makes two threads far slower than one (fitting 200k events: 12.9 s with one,
    240 s with two; BENCHMARKS.md); ``--threads 2`` when the machine is idle.
    """

    trees: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    threads: int = 1
    seed: int = 7


@dataclass(frozen=True)
class Trained:
    """A stored model version and what it measured."""

    name: str
    version: int
    path: Path
    meta: dict[str, Any]


def iso(ms: int | float) -> str:
    """Epoch ms as ISO-8601 UTC."""
    return (
        datetime.fromtimestamp(float(ms) / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4]
        + "Z"
    )


def split_times(times: npt.NDArray[np.int64]) -> tuple[int, int]:
    """The two event times where calibration and test start (quantiles of the labelled times)."""
    t_cal = int(np.quantile(times, SPLIT[0], method="lower"))
    t_test = int(np.quantile(times, SPLIT[0] + SPLIT[1], method="lower"))
    if t_test <= t_cal:
        t_test = t_cal + 1
    return t_cal, t_test


def _counts(y: npt.NDArray[np.float64]) -> tuple[int, int]:
    pos = int((y == 1).sum())
    return pos, int(len(y) - pos)


def check_labels(
    name: str, parts: dict[str, npt.NDArray[np.float64]], range_text: str, unlabelled: int
) -> None:
    """Refuse to train on too few labels, with the counts of every part."""
    counts = {k: _counts(v) for k, v in parts.items()}
    pos, neg = sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())
    short = min(counts["train"]) < MIN_TRAIN_LABELS or any(
        min(counts[k]) < MIN_PART_LABELS for k in ("calibration", "test")
    )
    if short:
        detail = ", ".join(f"{k} {c[0]:,} fraud / {c[1]:,} legitimate" for k, c in counts.items())
        raise NotEnoughLabels(
            f"too few labels to train model {name!r}: {pos:,} fraud and {neg:,} legitimate "
            f"labelled events in {range_text} ({unlabelled:,} unlabelled; by time: {detail}); "
            f"need at least {MIN_TRAIN_LABELS} of each to train and {MIN_PART_LABELS} of each "
            f"in the calibration and test parts"
        )


def rule_points(
    data: pl.DataFrame, y: npt.NDArray[np.float64]
) -> dict[str, dict[str, float | int]]:
    """Each rule's precision/recall point on ``data`` (its ``rule:NAME`` flags)."""
    out: dict[str, dict[str, float | int]] = {}
    positives = float((y == 1).sum())
    for col in data.columns:
        if not col.startswith(RULE_PREFIX):
            continue
        hit = data[col].to_numpy().astype(bool)
        tp = float(((y == 1) & hit).sum())
        hits = int(hit.sum())
        out[col[len(RULE_PREFIX) :]] = {
            "hits": hits,
            "true_positives": int(tp),
            "precision": tp / hits if hits else 0.0,
            "recall": tp / positives if positives else 0.0,
        }
    return out


def measure(prob: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> dict[str, Any]:
    """AUC-PR, precision (and threshold) at 50/80/95% recall, Brier score, calibration table."""
    return {
        "events": len(y),
        "fraud": int((y == 1).sum()),
        "base_rate": float(y.mean()) if len(y) else 0.0,
        "auc_pr": quality.average_precision(prob, y),
        "precision_at_recall": {
            f"{int(r * 100)}": quality.precision_at_recall(prob, y, r) for r in RECALLS
        },
        "threshold_at_recall": {
            f"{int(r * 100)}": quality.threshold_at_recall(prob, y, r) for r in RECALLS
        },
        "brier": quality.brier(prob, y),
        "calibration": quality.calibration_bins(prob, y),
    }


def train(
    spec: PipelineSpec,
    data: pl.DataFrame,
    features: list[str],
    name: str,
    root: Path,
    *,
    params: Params | None = None,
    source: str = "",
    requested: tuple[int | None, int | None] = (None, None),
) -> Trained:
    """Train, calibrate, measure, write ``root/NAME/vN/`` (model, meta, report); return it."""
    import lightgbm as lgb

    params = params or Params()
    t0 = time.perf_counter()
    labelled = data.filter(pl.col(LABEL).is_not_null()).sort("event_time", maintain_order=True)
    unlabelled = data.height - labelled.height
    range_text = describe_range(*requested)
    if labelled.height < 3:
        raise NotEnoughLabels(
            f"too few labels to train model {name!r}: {labelled.height:,} labelled of "
            f"{data.height:,} events in {range_text}"
        )
    times = labelled["event_time"].to_numpy()
    t_cal, t_test = split_times(times)
    part_of = np.where(times < t_cal, 0, np.where(times < t_test, 1, 2))
    y_all = (labelled[LABEL].to_numpy() >= 0.5).astype(np.float64)
    x_all = labelled.select(features).to_numpy().astype(np.float64)
    parts = {k: y_all[part_of == i] for i, k in enumerate(("train", "calibration", "test"))}
    check_labels(name, parts, range_text, unlabelled)
    tr, ca, te = (part_of == 0), (part_of == 1), (part_of == 2)
    lgb_params = {
        "objective": "binary",
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_data_in_leaf,
        "feature_fraction": 0.9,
        "num_threads": params.threads,
        "seed": params.seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbose": -1,
    }
    dtrain = lgb.Dataset(x_all[tr], label=y_all[tr], feature_name=_safe_names(features))
    booster = lgb.train(lgb_params, dtrain, num_boost_round=params.trees)
    raw_cal = np.asarray(booster.predict(x_all[ca], num_threads=1), dtype=np.float64)
    iso_fit = quality.fit_isotonic(raw_cal, y_all[ca])
    prob_test = iso_fit(np.asarray(booster.predict(x_all[te], num_threads=1), dtype=np.float64))
    prob_train = iso_fit(np.asarray(booster.predict(x_all[tr], num_threads=1), dtype=np.float64))
    gain = booster.feature_importance(importance_type="gain")
    splits = booster.feature_importance(importance_type="split")
    ranked = sorted(
        zip(features, (float(g) for g in gain), (int(s) for s in splits), strict=True),
        key=lambda t: -t[1],
    )
    importance = [{"feature": f, "gain": g, "splits": s} for f, g, s in ranked]
    top = [f for f, g, _ in ranked[:DRIFT_FEATURES] if g > 0]
    drift: dict[str, Any] = {"score": _bins(prob_train), "features": {}}
    for f in top:
        drift["features"][f] = _bins(x_all[tr][:, features.index(f)])
    test_rows = labelled.filter(pl.Series(te))
    metrics = measure(prob_test, y_all[te])
    metrics["rules"] = rule_points(test_rows, y_all[te])
    metrics["importance"] = importance
    model_text = booster.model_to_string().encode()
    import hashlib

    meta: dict[str, Any] = {
        "spec_name": spec.name,
        "fingerprint": fingerprint(spec, features),
        "features": features,
        "trees": params.trees,
        "trained_at": iso(time.time() * 1000),
        "training_seconds": 0.0,
        "source": source,
        "requested_range": {
            "from": iso(requested[0]) if requested[0] is not None else None,
            "to": iso(requested[1]) if requested[1] is not None else None,
        },
        "train_range": _range(times[tr]),
        "calibration_range": _range(times[ca]),
        "test_range": _range(times[te]),
        "labels": {
            k: dict(zip(("fraud", "legitimate"), _counts(v), strict=True)) for k, v in parts.items()
        },
        "unlabelled": unlabelled,
        "calibration": {"x": iso_fit.x.tolist(), "y": iso_fit.y.tolist()},
        "drift": drift,
        "metrics": metrics,
        "model_sha256": hashlib.sha256(model_text).hexdigest(),
    }
    meta["training_seconds"] = round(time.perf_counter() - t0, 3)
    from riskstream.training.report import render

    files = {MODEL_FILE: model_text, **render(name, meta, prob_test, y_all[te])}
    version = write_version(root, name, files, meta)
    meta = {**meta, "name": name, "version": version}
    return Trained(name, version, version_dir(root, name, version), meta)


def _safe_names(features: list[str]) -> list[str]:
    """LightGBM refuses some characters in feature names; the meta keeps the real ones."""
    return [f"f{i}" for i in range(len(features))]


def _range(times: npt.NDArray[np.int64]) -> dict[str, Any]:
    if not len(times):
        return {"from": None, "to": None, "events": 0}
    return {"from": iso(int(times.min())), "to": iso(int(times.max())), "events": len(times)}


def _bins(values: npt.NDArray[np.float64]) -> dict[str, list[float] | list[int]]:
    edges = quality.quantile_edges(values)
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in quality.bin_counts(values, edges)],
    }
