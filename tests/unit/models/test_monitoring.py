"""``/metrics`` and ``/v1/models`` of a live engine with a model, against brute force.

The score histogram is recounted from the score records; the PSI of the score and of each top
feature is recomputed from the training set's bins (``meta.json``) and the live values (the
scores on record, the features rebuilt by replaying the same events offline).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from riskstream.lab.replay import source_events
from riskstream.models.records import read_scores
from riskstream.models.registry import models_root, read_version
from riskstream.spec.load import load_spec
from riskstream.training.dataset import build_dataset
from riskstream.training.train import Trained
from tests.unit.models.served import Served, serve_model

EVENTS = 6000


@pytest.fixture(scope="module")
def served(
    trained_root: tuple[Path, Trained], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    system = serve_model(tmp_path_factory.mktemp("served"), trained_root[0], EVENTS)
    yield system
    system.stop()


def _scores(served: Served) -> np.ndarray[Any, np.dtype[np.float64]]:
    root = models_root(served.root / "data")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records = read_scores(root)
        if records.height >= EVENTS:
            return records.sort("event_id")["score"].to_numpy()
        time.sleep(0.2)
    raise AssertionError("score records were not all written")


def _metrics(served: Served) -> dict[str, list[Any]]:
    resp = httpx.get(f"{served.url}/metrics", headers=served.headers, timeout=10)
    assert resp.status_code == 200
    out: dict[str, list[Any]] = {}
    for fam in text_string_to_metric_families(resp.text):
        out.setdefault(fam.name, []).extend(fam.samples)
    return out


def _brute_psi(edges: list[float], expected: list[int], values: list[float]) -> float:
    """PSI by its formula, bins counted one value at a time (NaN in the last bin)."""
    actual = [0] * (len(edges) + 2)
    for v in values:
        actual[len(edges) + 1 if math.isnan(v) else bisect.bisect_right(edges, v)] += 1
    e_tot, a_tot = sum(expected), sum(actual)
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        es, as_ = max(e / e_tot, 1e-4), max(a / a_tot, 1e-4)
        total += (as_ - es) * math.log(as_ / es)
    return total


def test_metrics_expose_the_score_histogram_and_the_drift(served: Served) -> None:
    scores = _scores(served)
    families = _metrics(served)
    buckets = {
        s.labels["le"]: s.value
        for s in families["riskstream_model_score"]
        if s.name.endswith("_bucket") and s.labels["entry"] == "fraud"
    }
    assert buckets["+Inf"] == EVENTS
    for le, value in buckets.items():
        bound = math.inf if le == "+Inf" else float(le)
        assert value == sum(1 for x in scores if x <= bound), le
    total = next(s.value for s in families["riskstream_model_score"] if s.name.endswith("_sum"))
    assert total == pytest.approx(float(scores.sum()), rel=1e-9)
    info = families["riskstream_model_info"]
    assert [(s.labels["entry"], s.labels["version"], s.labels["shadow"]) for s in info] == [
        ("fraud", "1", "false")
    ]

    psi = {s.labels["column"]: s.value for s in families["riskstream_model_psi"]}
    meta = read_version(models_root(served.root / "data"), "fraud", 1).meta
    ref = meta["drift"]
    assert set(psi) == {"score", *ref["features"]} and len(psi) >= 3
    expected = _brute_psi(ref["score"]["edges"], ref["score"]["counts"], list(scores))
    assert psi["score"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # the top features, rebuilt offline from the same events
    spec = load_spec(served.root / "spec.yaml")
    offline = build_dataset(
        spec, source_events(spec, f"generator:?events={EVENTS}&seed=12"), list(ref["features"])
    )
    assert offline.height == EVENTS
    for name, bins in ref["features"].items():
        values = [math.nan if v is None else float(v) for v in offline[name].to_list()]
        want = _brute_psi(bins["edges"], bins["counts"], values)
        assert psi[name] == pytest.approx(want, rel=1e-9, abs=1e-12), name


def test_models_endpoint_has_the_report_numbers_and_the_current_drift(served: Served) -> None:
    _scores(served)
    got = httpx.get(f"{served.url}/v1/models", headers=served.headers, timeout=10).json()
    [entry] = got["models"]
    meta = read_version(models_root(served.root / "data"), "fraud", 1).meta
    assert (entry["entry"], entry["model"], entry["version"], entry["shadow"]) == (
        "fraud",
        "fraud",
        1,
        False,
    )
    assert entry["test"]["auc_pr"] == meta["metrics"]["auc_pr"]
    assert entry["test"]["rules"]["burst"] == meta["metrics"]["rules"]["burst"]
    assert entry["drift"]["events"] == EVENTS
    psi = {s.labels["column"]: s.value for s in _metrics(served)["riskstream_model_psi"]}
    assert entry["drift"]["psi"] == pytest.approx(psi)
    for column, value in entry["drift"]["psi"].items():
        want = "stable" if value < 0.1 else ("drifting" if value < 0.25 else "shifted")
        assert entry["drift"]["status"][column] == want
    assert sum(entry["scores"]["counts"]) == EVENTS


def test_report_files_are_served_to_readers_only(served: Served) -> None:
    vdir = models_root(served.root / "data") / "fraud" / "v1"
    base = f"{served.url}/v1/models/fraud/report"
    html = httpx.get(f"{base}/report.html", headers=served.headers, timeout=10)
    assert html.status_code == 200 and html.content == (vdir / "report.html").read_bytes()
    assert html.headers["content-type"].startswith("text/html")
    png = httpx.get(f"{base}/pr.png", headers=served.headers, timeout=10)
    assert png.content == (vdir / "pr.png").read_bytes() and png.content[:4] == b"\x89PNG"
    assert httpx.get(f"{base}/pr.png", timeout=10).status_code == 401
    bad = httpx.get(f"{base}/meta.json", headers=served.headers, timeout=10)
    assert bad.status_code == 404 and "no report file 'meta.json'" in bad.json()["error"]
    other = httpx.get(f"{served.url}/v1/models/nope/report/pr.png", headers=served.headers)
    assert other.status_code == 404 and other.json()["error"] == "no model entry 'nope' in the spec"
