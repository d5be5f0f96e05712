"""Scoring a batch with the spec's models: one feature matrix and one predict call per model.

The engine calls :meth:`ModelSet.apply` on each batch's frame (event fields + feature columns)
before the rules: it adds one ``model.NAME`` column per model (the calibrated probability;
null for a shadow model, so a rule reading it never fires) and remembers every score, for
the score records, the drift monitor and the explanation of the rows that raise a case
(per-feature credits along each row's tree paths, computed only for those rows).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from riskstream.models import quality
from riskstream.models.contrib import PathAttribution
from riskstream.models.registry import (
    MODEL_FILE,
    ModelError,
    StoredModel,
    check_against_spec,
    compile_features,
    read_version,
)
from riskstream.rules import CompiledExpr, FeatureRef, ListValues, model_column
from riskstream.spec.model import PipelineSpec

#: How many contributing features a case lists per model.
TOP_FEATURES = 5
#: Upper bounds (``le``) of the live score histogram on ``/metrics`` (calibrated 0-1 scores).
SCORE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def score_column(entry: str) -> str:
    """The column holding an entry's score even when it is a shadow (never read by rules)."""
    return f"_score.{entry}"


def _booster(stored: StoredModel, entry: str) -> Any:
    try:
        import lightgbm as lgb
    except ImportError:  # pragma: no cover - the models extra is installed by make
        raise ModelError(
            entry, "LightGBM is not installed (pip install 'riskstream[models]')", stored.version
        ) from None
    path = stored.path / MODEL_FILE
    try:
        booster = lgb.Booster(model_file=str(path))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(entry, f"corrupt model file {path}: {first}", stored.version) from None
    if booster.num_feature() != len(stored.features):
        raise ModelError(
            entry,
            f"corrupt model file {path}: {booster.num_feature()} inputs, "
            f"meta.json lists {len(stored.features)} features",
            stored.version,
        )
    return booster


@dataclass
class Drift:
    """Live bin counts of the score and the top features, against the training set's."""

    names: list[str]
    columns: list[int]
    edges: list[npt.NDArray[np.float64]]
    expected: list[npt.NDArray[np.int64]]
    actual: list[npt.NDArray[np.int64]] = field(default_factory=list)
    events: int = 0
    #: live scores per ``SCORE_BUCKETS`` bound (score <= bound, not cumulative) and their sum
    score_buckets: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(len(SCORE_BUCKETS) + 1, dtype=np.int64)
    )
    score_sum: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.actual = [np.zeros_like(e) for e in self.expected]

    @classmethod
    def from_meta(cls, meta: dict[str, Any], features: list[str]) -> Drift:
        """The reference bins train stored (``meta['drift']``); score first, then features."""
        ref = meta.get("drift") or {}
        names: list[str] = []
        columns: list[int] = []
        edges: list[npt.NDArray[np.float64]] = []
        expected: list[npt.NDArray[np.int64]] = []
        parts = [("score", ref.get("score")), *(ref.get("features") or {}).items()]
        for name, bins in parts:
            if not bins:
                continue
            names.append(name)
            columns.append(-1 if name == "score" else features.index(name))
            edges.append(np.asarray(bins["edges"], dtype=np.float64))
            expected.append(np.asarray(bins["counts"], dtype=np.int64))
        return cls(names, columns, edges, expected)

    def observe(self, scores: npt.NDArray[np.float64], x: npt.NDArray[np.float64]) -> None:
        """Add one batch (vectorized: one ``bincount`` per tracked column)."""
        counts = [
            quality.bin_counts(scores if col < 0 else x[:, col], e)
            for col, e in zip(self.columns, self.edges, strict=True)
        ]
        # bucket i holds SCORE_BUCKETS[i-1] < score <= SCORE_BUCKETS[i] (Prometheus ``le``)
        idx = np.searchsorted(np.asarray(SCORE_BUCKETS), scores, side="left")
        buckets = np.bincount(idx, minlength=len(SCORE_BUCKETS) + 1).astype(np.int64)
        total = float(np.nansum(scores))
        with self.lock:
            for acc, c in zip(self.actual, counts, strict=True):
                acc += c
            self.events += len(scores)
            self.score_buckets += buckets
            self.score_sum += total

    def score_distribution(self) -> tuple[list[tuple[float, int]], int, float]:
        """Cumulative counts per ``le`` bound (``+Inf`` last), the event count and the sum."""
        with self.lock:
            cum = np.cumsum(self.score_buckets)
            bounds = [*SCORE_BUCKETS, float("inf")]
            return (
                [(b, int(c)) for b, c in zip(bounds, cum, strict=True)],
                self.events,
                self.score_sum,
            )

    def psi(self) -> dict[str, float]:
        """PSI per tracked column (``score`` and each top feature) since the engine started."""
        with self.lock:
            return {
                n: quality.psi(e, a)
                for n, e, a in zip(self.names, self.expected, self.actual, strict=True)
            }

    def score_histogram(self) -> tuple[list[float], list[int]]:
        """Live score counts per training-decile bin (edges, counts; last = missing)."""
        with self.lock:
            if not self.names or self.names[0] != "score":
                return [], []
            return [float(v) for v in self.edges[0]], [int(v) for v in self.actual[0]]


class LoadedModel:
    """One version ready to score: booster, compiled features, calibration, drift monitor."""

    def __init__(self, entry: str, stored: StoredModel, spec: PipelineSpec) -> None:
        check_against_spec(stored, spec, entry)
        self.entry = entry
        self.stored = stored
        self.exprs: list[CompiledExpr] = compile_features(spec, stored.features)
        self.booster = _booster(stored, entry)
        self._attribution: PathAttribution | None = None
        cal = stored.meta.get("calibration") or {}
        try:
            self.calibration = quality.Isotonic(
                np.asarray(cal["x"], dtype=np.float64), np.asarray(cal["y"], dtype=np.float64)
            )
        except (KeyError, TypeError, ValueError):
            raise ModelError(entry, "meta.json has no calibration", stored.version) from None
        self.drift = Drift.from_meta(stored.meta, stored.features)

    @property
    def attribution(self) -> PathAttribution:
        """The per-leaf credit table, built when the first case needs an explanation."""
        if self._attribution is None:
            self._attribution = PathAttribution(self.booster)
        return self._attribution

    @property
    def name(self) -> str:
        """The model's name in the registry."""
        return self.stored.name

    @property
    def version(self) -> int:
        """The version scored with."""
        return self.stored.version

    @property
    def features(self) -> list[str]:
        """Feature expressions, in the booster's column order."""
        return self.stored.features

    def matrix(self, frame: pl.DataFrame, lists: ListValues) -> npt.NDArray[np.float64]:
        """The feature matrix of ``frame`` (nulls as NaN, which LightGBM reads as missing)."""
        cols = [
            e.expr(lists).cast(pl.Float64, strict=False).alias(f"__x{i}")
            for i, e in enumerate(self.exprs)
        ]
        # row-major: LightGBM reads rows, and copies a column-major matrix first (~20% slower)
        return np.ascontiguousarray(frame.select(cols).to_numpy(), dtype=np.float64)

    def raw(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Uncalibrated booster probabilities (one predict call)."""
        out: npt.NDArray[np.float64] = np.asarray(
            self.booster.predict(x, num_threads=1), dtype=np.float64
        )
        return out

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Calibrated probabilities 0-1 for the rows of ``x``."""
        if not len(x):
            return np.zeros(0, dtype=np.float64)
        return self.calibration(self.raw(x))

    def explain(self, x: npt.NDArray[np.float64], k: int = TOP_FEATURES) -> list[dict[str, float]]:
        """Per row, the ``k`` features that pushed its score most (path attribution, raw-score
        units: see :mod:`riskstream.models.contrib`)."""
        if not len(x):
            return []
        contrib = self.attribution(x)
        out: list[dict[str, float]] = []
        for row in contrib:
            top = np.argsort(-np.abs(row), kind="mergesort")[:k]
            out.append({self.features[i]: round(float(row[i]), 6) for i in top})
        return out


@dataclass
class BatchScores:
    """What the models made of one batch: per entry its scores and feature matrix."""

    scores: dict[str, npt.NDArray[np.float64]]
    matrices: dict[str, npt.NDArray[np.float64]]


class ModelSet:
    """The spec's ``models:`` entries, loaded; reused across reloads when nothing changed."""

    def __init__(
        self, spec: PipelineSpec, root: Path | None, previous: ModelSet | None = None
    ) -> None:
        self.models: dict[str, LoadedModel] = {}
        self.shadow: dict[str, bool] = {}
        old = previous.models if previous is not None else {}
        for entry, es in spec.models.items():
            name = es.model or entry
            if root is None:
                raise ModelError(entry, "no model store: give the engine a --data-dir")
            stored = read_version(root, name, es.version)
            prev = old.get(entry)
            if (
                prev is not None
                and prev.name == name
                and prev.version == stored.version
                and prev.stored.meta.get("model_sha256") == stored.meta.get("model_sha256")
            ):
                check_against_spec(prev.stored, spec, entry)
                self.models[entry] = prev
            else:
                self.models[entry] = LoadedModel(entry, stored, spec)
            self.shadow[entry] = es.shadow

    def __bool__(self) -> bool:
        return bool(self.models)

    @property
    def feature_refs(self) -> list[FeatureRef]:
        """Sliding features the models read (the engine computes them with the rules')."""
        seen: dict[FeatureRef, None] = {}
        for m in self.models.values():
            for e in m.exprs:
                seen.update(dict.fromkeys(e.features))
        return list(seen)

    @property
    def fields(self) -> list[str]:
        """Event fields the models read."""
        seen: dict[str, None] = {}
        for m in self.models.values():
            for e in m.exprs:
                seen.update(dict.fromkeys(e.fields))
        return list(seen)

    def apply(
        self, frame: pl.DataFrame, lists: ListValues, *, observe: bool = True
    ) -> tuple[pl.DataFrame, BatchScores]:
        """``frame`` with ``model.NAME`` (what rules read) and ``_score.NAME`` per entry.

        ``model.NAME`` is null for a shadow entry, ``_score.NAME`` always holds the score.
        ``observe`` adds the batch to the drift monitor (the live stream, not decide calls).
        """
        scores: dict[str, npt.NDArray[np.float64]] = {}
        matrices: dict[str, npt.NDArray[np.float64]] = {}
        cols: list[pl.Series] = []
        for entry, model in self.models.items():
            x = model.matrix(frame, lists)
            p = model.predict(x)
            if observe:
                model.drift.observe(p, x)
            scores[entry] = p
            matrices[entry] = x
            cols.append(pl.Series(score_column(entry), p, dtype=pl.Float64))
            if self.shadow[entry]:
                cols.append(pl.Series(model_column(entry), [None] * len(p), dtype=pl.Float64))
            else:
                cols.append(pl.Series(model_column(entry), p, dtype=pl.Float64))
        return (frame.with_columns(cols) if cols else frame), BatchScores(scores, matrices)

    def describe(self) -> dict[str, dict[str, Any]]:
        """Per entry: model, version, shadow flag, training metrics and current drift."""
        out: dict[str, dict[str, Any]] = {}
        for entry, m in self.models.items():
            meta = m.stored.meta
            out[entry] = {
                "model": m.name,
                "version": m.version,
                "shadow": self.shadow[entry],
                "features": m.features,
                "trained": meta.get("trained_at"),
                "train_range": meta.get("train_range"),
                "test_range": meta.get("test_range"),
                "metrics": meta.get("metrics", {}),
                "drift": drift_view(m.drift),
                "scores": score_view(m.drift),
                "report": str(m.stored.path / "report.html"),
            }
        return out


def psi_status(value: float) -> str:
    """The usual reading of a PSI: ``stable`` below 0.1, ``drifting`` to 0.25, else ``shifted``."""
    return "stable" if value < 0.1 else ("drifting" if value < 0.25 else "shifted")


def drift_view(drift: Drift) -> dict[str, Any]:
    """PSI of the score and the top features against the training set, since the model loaded.

    ``psi`` is empty until the engine has scored an event with this model.
    """
    values = drift.psi() if drift.events else {}
    return {
        "events": drift.events,
        "psi": values,
        "status": {k: psi_status(v) for k, v in values.items()},
    }


def score_view(drift: Drift) -> dict[str, Any]:
    """The live score distribution: events per ``SCORE_BUCKETS`` bin (not cumulative) and mean."""
    cumulative, events, total = drift.score_distribution()
    per_bin = np.diff(np.r_[0, [c for _, c in cumulative]]).tolist()
    return {
        "bounds": list(SCORE_BUCKETS),
        "counts": per_bin[: len(SCORE_BUCKETS)],
        "events": events,
        "mean": total / events if events else None,
    }
