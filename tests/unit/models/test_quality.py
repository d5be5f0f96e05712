"""AUC-PR, precision at recall, isotonic calibration and PSI against brute-force computations."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from riskstream.models import quality

scores_labels = st.integers(min_value=1, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0]), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
    )
)


def _brute_points(s: list[float], y: list[int]) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) for every distinct score, flagging score >= threshold."""
    pos = sum(y)
    out = []
    for t in sorted(set(s), reverse=True):
        flagged = [yy for ss, yy in zip(s, y, strict=True) if ss >= t]
        tp = sum(flagged)
        out.append((t, tp / len(flagged), tp / pos if pos else 0.0))
    return out


@settings(max_examples=200, deadline=None)
@given(scores_labels)
def test_average_precision_and_precision_at_recall_match_brute_force(data: tuple) -> None:
    s, y = data
    points = _brute_points(s, y)
    ap = 0.0
    prev_recall = 0.0
    for _, p, r in points:
        ap += (r - prev_recall) * p
        prev_recall = r
    expected_ap = ap if sum(y) else 0.0
    assert math.isclose(quality.average_precision(s, y), expected_ap, abs_tol=1e-12)
    for target in (0.5, 0.8, 0.95):
        ok = [p for _, p, r in points if r >= target - 1e-12]
        assert math.isclose(
            quality.precision_at_recall(s, y, target), max(ok) if ok else 0.0, abs_tol=1e-12
        )


@settings(max_examples=200, deadline=None)
@given(scores_labels)
def test_isotonic_is_monotone_and_least_squares(data: tuple) -> None:
    raw, y = data
    fit = quality.fit_isotonic(raw, y)
    xs = sorted(set(raw))
    fitted = fit(np.array(xs))
    assert np.all(np.diff(fitted) >= -1e-12)
    assert np.all((fitted >= 0) & (fitted <= 1))
    # least squares: no monotone step function on the distinct raw values does better;
    # brute force over small cases by comparing with every pooling of adjacent groups.
    sse = sum((fit(np.array([r]))[0] - yy) ** 2 for r, yy in zip(raw, y, strict=True))
    if len(xs) <= 6:
        best = _best_monotone_sse(raw, y, xs)
        assert sse <= best + 1e-9


def _best_monotone_sse(raw: list[float], y: list[int], xs: list[float]) -> float:
    """Minimum SSE over monotone fits that are constant on pools of adjacent distinct values."""
    import itertools

    best = math.inf
    k = len(xs)
    for cuts in itertools.product([False, True], repeat=k - 1):
        pools: list[list[float]] = [[xs[0]]]
        for x, cut in zip(xs[1:], cuts, strict=True):
            if cut:
                pools.append([x])
            else:
                pools[-1].append(x)
        means = []
        for pool in pools:
            vals = [yy for r, yy in zip(raw, y, strict=True) if r in pool]
            means.append(sum(vals) / len(vals))
        if any(b < a for a, b in itertools.pairwise(means)):
            continue
        sse = 0.0
        for pool, m in zip(pools, means, strict=True):
            sse += sum((m - yy) ** 2 for r, yy in zip(raw, y, strict=True) if r in pool)
        best = min(best, sse)
    return best


def test_psi_zero_for_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=20_000)
    edges = quality.quantile_edges(ref)
    expected = quality.bin_counts(ref, edges)
    same = quality.bin_counts(rng.normal(size=20_000), edges)
    shifted = quality.bin_counts(rng.normal(loc=1.0, size=20_000), edges)
    assert quality.psi(expected, same) < 0.01
    assert quality.psi(expected, shifted) > 0.25
    # the brute-force formula on the shares
    e = expected / expected.sum()
    a = shifted / shifted.sum()
    m = (e > 0) & (a > 0)
    assert math.isclose(
        quality.psi(expected, shifted),
        float(np.sum((a[m] - e[m]) * np.log(a[m] / e[m]))),
        rel_tol=1e-3,
    )


def test_bin_counts_put_missing_values_in_the_last_bin() -> None:
    counts = quality.bin_counts(np.array([0.0, 1.0, 2.0, np.nan]), np.array([0.5, 1.5]))
    assert counts.tolist() == [1, 1, 1, 1]
