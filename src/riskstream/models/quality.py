"""Measures of a score against labels, in NumPy: PR curve, AUC-PR, calibration, drift (PSI).

Kept free of scikit-learn on purpose (one small dependency less); each function is checked
against a brute-force computation in ``tests/unit/models/test_quality.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PRCurve:
    """Precision and recall at every distinct score threshold (score >= threshold flags)."""

    thresholds: Floats
    precision: Floats
    recall: Floats
    positives: int


def pr_curve(scores: npt.ArrayLike, labels: npt.ArrayLike) -> PRCurve:
    """The precision/recall point of every distinct threshold, highest threshold first."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    flagged = np.arange(1, len(s) + 1, dtype=np.float64)
    # the last index of each run of equal scores: a threshold flags the whole run
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if len(s) else np.array([], dtype=int)
    positives = int(y.sum())
    precision = tp[last] / flagged[last]
    recall = tp[last] / positives if positives else np.zeros(len(last))
    return PRCurve(s[last], precision, recall, positives)


def average_precision(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """AUC-PR as average precision: sum over thresholds of (recall step) x precision."""
    c = pr_curve(scores, labels)
    if c.positives == 0:
        return 0.0
    steps = np.diff(np.r_[0.0, c.recall])
    return float(np.sum(steps * c.precision))


def precision_at_recall(scores: npt.ArrayLike, labels: npt.ArrayLike, recall: float) -> float:
    """The best precision among thresholds that reach ``recall`` (0 when none does)."""
    c = pr_curve(scores, labels)
    ok = c.recall >= recall - 1e-12
    return float(c.precision[ok].max()) if ok.any() else 0.0


def threshold_at_recall(scores: npt.ArrayLike, labels: npt.ArrayLike, recall: float) -> float:
    """The highest threshold whose recall reaches ``recall`` (NaN when none does)."""
    c = pr_curve(scores, labels)
    ok = np.flatnonzero(c.recall >= recall - 1e-12)
    return float(c.thresholds[ok[0]]) if len(ok) else float("nan")


@dataclass(frozen=True)
class Isotonic:
    """A non-decreasing map raw score -> probability, linear between its knots (clipped outside)."""

    x: Floats
    y: Floats

    def __call__(self, raw: npt.ArrayLike) -> Floats:
        """Calibrated probabilities for raw scores."""
        return np.interp(np.asarray(raw, dtype=np.float64), self.x, self.y)


def fit_isotonic(raw: npt.ArrayLike, labels: npt.ArrayLike) -> Isotonic:
    """Pool-adjacent-violators on (raw score, 0/1 label): the least-squares monotone fit."""
    r = np.asarray(raw, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    order = np.argsort(r, kind="mergesort")
    r, y = r[order], y[order]
    # one block per distinct raw score first (ties must map to one value)
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    sums = list(np.add.reduceat(y, starts)) if len(r) else []
    counts = list(np.diff(np.r_[starts, len(r)]).astype(np.float64)) if len(r) else []
    xs_lo = list(r[starts]) if len(r) else []
    xs_hi = list(r[np.r_[starts[1:] - 1, len(r) - 1]]) if len(r) else []
    bs: list[float] = []
    bc: list[float] = []
    blo: list[float] = []
    bhi: list[float] = []
    for s, c, lo, hi in zip(sums, counts, xs_lo, xs_hi, strict=True):
        bs.append(float(s))
        bc.append(float(c))
        blo.append(float(lo))
        bhi.append(float(hi))
        while len(bs) > 1 and bs[-2] / bc[-2] >= bs[-1] / bc[-1]:
            s2, c2, hi2 = bs.pop(), bc.pop(), bhi.pop()
            blo.pop()
            bs[-1] += s2
            bc[-1] += c2
            bhi[-1] = hi2
    if not bs:
        return Isotonic(np.array([0.0, 1.0]), np.array([0.0, 0.0]))
    xs: list[float] = []
    ys: list[float] = []
    for s, c, lo, hi in zip(bs, bc, blo, bhi, strict=True):
        xs.extend([lo, hi] if hi > lo else [lo])
        ys.extend([s / c, s / c] if hi > lo else [s / c])
    return Isotonic(np.array(xs), np.array(ys))


def calibration_bins(
    prob: npt.ArrayLike, labels: npt.ArrayLike, bins: int = 10
) -> list[dict[str, float]]:
    """Reliability table: per probability bin, the mean predicted and the observed fraud rate."""
    p = np.asarray(prob, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    out: list[dict[str, float]] = []
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        if n:
            out.append(
                {
                    "lo": b / bins,
                    "hi": (b + 1) / bins,
                    "events": float(n),
                    "predicted": float(p[m].mean()),
                    "observed": float(y[m].mean()),
                }
            )
    return out


def brier(prob: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Mean squared error of probabilities against 0/1 labels."""
    p = np.asarray(prob, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if len(p) else 0.0


def quantile_edges(values: npt.ArrayLike, bins: int = 10) -> Floats:
    """Inner bin edges at the deciles of ``values`` (NaN ignored), deduplicated."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if not len(v):
        return np.array([], dtype=np.float64)
    return np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))


def bin_counts(values: npt.ArrayLike, edges: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Counts per bin of ``edges`` (len(edges)+1 bins) plus a last bin for NaN/missing."""
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(e, v, side="right")
    idx[np.isnan(v)] = len(e) + 1
    return np.bincount(idx, minlength=len(e) + 2).astype(np.int64)


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, eps: float = 1e-4) -> float:
    """Population stability index of two count vectors over the same bins.

    ``sum((a - e) * ln(a / e))`` over bin shares, each share floored at ``eps`` so an empty
    bin does not make it infinite. Below 0.1: stable; 0.1-0.25: drifting; above: shifted.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.sum() <= 0 or a.sum() <= 0:
        return 0.0
    es = np.maximum(e / e.sum(), eps)
    as_ = np.maximum(a / a.sum(), eps)
    return float(np.sum((as_ - es) * np.log(as_ / es)))
