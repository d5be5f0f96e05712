"""The Models page in headless Debian chromium: the model's report and its current drift.

A model is trained on the generator's labelled stream, a live engine scores another stream
with it behind the real API; the page must show the report's numbers, the three plots and
the PSI of the score and the top features as ``/v1/models`` reports them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from riskstream.lab.replay import source_events
from riskstream.training.dataset import build_dataset
from riskstream.training.train import Params, train
from tests.integration.api.test_browser import browser, shots  # noqa: F401  (fixtures)
from tests.unit.models.conftest import EVENTS, FEATURES, unit_spec
from tests.unit.models.served import KEY, Served, serve_model


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("models-ui")
    spec = unit_spec()
    data = build_dataset(spec, source_events(spec, EVENTS), FEATURES)
    train(spec, data, FEATURES, "fraud", root / "trained", params=Params(trees=30))
    system = serve_model(root / "live", root / "trained", 4000, server=http_server)
    yield system
    system.stop()


def test_models_page_shows_the_report_and_the_drift(
    browser: Any,  # noqa: F811  (the fixture imported from test_browser)
    served: Served,
    shots: Path,  # noqa: F811
) -> None:
    model = httpx.get(f"{served.url}/v1/models", headers=served.headers, timeout=10).json()
    [m] = model["models"]
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(served.url + "/#/models")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("heading", name="Models", exact=True).wait_for()
    card = page.locator("section.card.model")
    assert "model.fraud" in card.locator("h2").inner_text()
    assert "live" in card.locator("h2 .badge").inner_text()
    tiles = card.locator(".tiles").inner_text()
    assert f"{m['test']['auc_pr']:.3f}" in tiles
    # the rule on the same test events
    burst = m["test"]["rules"]["burst"]
    row = card.get_by_role("row", name="rule burst")
    assert row.inner_text().split()[-3:-1] == [
        f"{burst['precision']:.3f}",
        f"{burst['recall']:.3f}",
    ]
    # the three plots, loaded with the API key (data: URLs)
    imgs = card.locator("img.plot")
    assert imgs.count() == 3
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.plot')].every(i => i.complete && i.naturalWidth > 0)"
    )
    # the drift: one row per tracked input, PSI as the API says
    drift = card.locator("table.drift tbody tr")
    assert drift.count() == len(m["drift"]["psi"]) >= 2
    shown = {
        drift.nth(i).locator("th").inner_text(): drift.nth(i).locator("td").first.inner_text()
        for i in range(drift.count())
    }
    now = httpx.get(f"{served.url}/v1/models", headers=served.headers, timeout=10).json()
    psi = now["models"][0]["drift"]["psi"]
    assert shown == {k: f"{v:.4f}" for k, v in psi.items()}
    assert card.locator("svg.chart.scores rect.bar").count() == len(m["scores"]["bounds"])
    page.screenshot(path=str(shots / "models.png"), full_page=True)
    assert errors == []
    page.close()
